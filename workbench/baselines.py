"""The baselines every comparison carries, as strong as they honestly can be.

- ``random``: the encoder at its random initialisation (``eval.baseline_seed``), its BatchNorm
  running statistics CALIBRATED on pretraining audio (`calibrate_batchnorm`: the exact mean and
  variance of each BatchNorm's input over ``eval.calibration_batches`` batches of views of the
  pretraining tracks), then frozen in eval mode. Left at their initial values (mean 0, variance
  1) on log-mel inputs around -40 dB, the BatchNorm layers would do nothing and whole channels
  could sit dead: a floor made weaker than it is.
- ``handcrafted``: `LogMelStats`, per-band mean and standard deviation of the log-mel.
- ``supervised``: the same encoder trained end to end on the train labels (of the draw only, in
  the limited-data curves), the best validation epoch kept.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from workbench.audio import MelFrontend
from workbench.config import RunConfig, config_hash, data_dir, to_dict, with_dataset
from workbench.data.datasets import open_dataset, pretrain_indices
from workbench.data.store import AudioStore
from workbench.data.views import ViewSampler, gather_segments, random_starts
from workbench.embeddings import EncoderSource, sha_file, sha_module, store_id
from workbench.encoder import build_encoder
from workbench.files import read_checkpoint, save_torch
from workbench.probe import check_split, targets, task_of, validation_score
from workbench.runs import device as run_device


class LogMelStats(nn.Module):
    """Hand-crafted baseline: per-band mean and standard deviation of the log-mel, (B,1,F,T) -> (B, 2F)."""

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        assert mel.ndim == 4 and mel.shape[1] == 1, f"LogMelStats expects (B, 1, F, T), got {tuple(mel.shape)}"
        return torch.cat([mel.mean(-1), mel.std(-1)], -1).flatten(1)


def calibrate_batchnorm(encoder: nn.Module, batches: list[torch.Tensor]) -> nn.Module:
    """Set every BatchNorm's running statistics to the exact mean and (unbiased) variance of its
    input over ``batches`` (mel (B, 1, F, T) each; cumulative average, ``momentum=None``), no
    weight changed; returns the encoder in eval mode."""
    norms = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    encoder.train()
    with torch.no_grad():
        for x in batches:
            encoder(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return encoder.eval()


def _random_encoder(cfg: RunConfig, store: AudioStore) -> EncoderSource:
    """The random-init encoder with BatchNorm statistics calibrated as the SSL encoders' were: on
    pretraining views of the pretraining dataset (``eval.pretrain_dataset`` when the evaluated set
    is another one, as the transfer set is; else the evaluated store's own pretraining tracks)."""
    source = open_dataset(with_dataset(cfg, cfg.eval.pretrain_dataset)) if cfg.eval.pretrain_dataset else store
    return _calibrated_random("random", cfg, source, "pretraining views")


def _random_target(cfg: RunConfig, store: AudioStore) -> EncoderSource:
    """The same random-init encoder with BatchNorm recalibrated on the evaluated set's own
    pretraining tracks (its train audio): a domain adaptation no SSL encoder gets, reported
    beside `_random_encoder` so that a comparison can be read both ways."""
    return _calibrated_random("random-target", cfg, store, f"views of the evaluated set ({cfg.data.dataset})")


def _calibrated_random(name: str, cfg: RunConfig, store: AudioStore, where: str) -> EncoderSource:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.eval.baseline_seed)
        enc = build_encoder(cfg.encoder, cfg.audio)
    sampler = ViewSampler.from_config(store, pretrain_indices(store, cfg), cfg, seed=cfg.eval.baseline_seed)
    frontend = MelFrontend.from_config(cfg.audio)
    with torch.no_grad():
        batches = [frontend(torch.cat(sampler.sample(cfg.eval.batch_size).views))
                   for _ in range(cfg.eval.calibration_batches)]
    enc = calibrate_batchnorm(enc, batches)
    return EncoderSource(name, "n/a", enc, cfg.audio,
                         f"random init seed {cfg.eval.baseline_seed}, BatchNorm calibrated on "
                         f"{cfg.eval.calibration_batches} x {cfg.eval.batch_size} x {cfg.views.n_views} {where}",
                         sha_module(enc), config_hash(cfg.encoder))


def _handcrafted(cfg: RunConfig, store: AudioStore) -> EncoderSource:
    return EncoderSource("handcrafted", "n/a", LogMelStats(), cfg.audio, "log-mel mean+std",
                         "handcrafted-" + config_hash(cfg.audio), config_hash(cfg.audio))


def supervised_encoder(cfg: RunConfig, store: AudioStore, progress: bool = True,
                subset: np.ndarray | None = None) -> EncoderSource:
    """The same encoder trained end to end with BCE on random 4 s segments of the train tracks
    (each carrying its track's labels); ``eval.supervised_epochs`` passes of one segment a track,
    keeping the epoch with the best validation score (macro ROC-AUC, or accuracy for a
    single-label task, on one fixed random segment per valid track), as the probes do.

    ``subset``: positions into the train split (a limited-data draw); the encoder then sees only
    those tracks' labels, like every probe of that draw, so the upper bound stays honest in the
    limited-data curves. The checkpoint is cached under ``data_dir()/cache/supervised/``, keyed
    by the configuration and the subset."""
    sub = None if subset is None else hashlib.sha256(np.asarray(subset, np.int64).tobytes()).hexdigest()[:12]
    blob = json.dumps({"enc": to_dict(cfg.encoder), "audio": to_dict(cfg.audio), "store": store_id(store),
                       "epochs": cfg.eval.supervised_epochs, "seed": cfg.eval.baseline_seed,
                       "batch": cfg.train.batch_size, "lr": cfg.train.lr, "subset": sub,
                       "selection": "best valid epoch"}, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:10]
    path = data_dir() / "cache" / "supervised" / f"supervised-{key}.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.eval.baseline_seed)
        enc = build_encoder(cfg.encoder, cfg.audio)
        head = nn.Linear(cfg.encoder.output_dim, store.labels.shape[1])
    if path.exists():
        enc.load_state_dict(read_checkpoint(path)["encoder"])
    else:
        device = run_device(cfg)
        idx, y = store.split_labels("train")
        if subset is not None:
            idx, y = idx[subset], y[subset]
        check_split(y, "train (supervised baseline)")
        model = nn.Sequential(MelFrontend.from_config(cfg.audio), enc, head).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        rng = np.random.default_rng(cfg.eval.baseline_seed)
        seg = cfg.audio.segment_samples
        lengths = np.asarray(store.lengths)
        # validation: one fixed random segment per valid track, scored after every epoch
        v_idx, v_y = store.split_labels("valid")
        v_starts = random_starts(lengths[v_idx], seg, rng)
        v_x = torch.from_numpy(gather_segments(store, v_idx, v_starts, seg))
        task = task_of(store)
        bs = max(2, min(cfg.train.batch_size, len(idx)))
        best, best_state = -math.inf, None
        for _ in tqdm(range(cfg.eval.supervised_epochs), desc="supervised baseline", disable=not progress, leave=False):
            model.train()
            perm = rng.permutation(len(idx))
            for lo in range(0, len(idx), bs):
                p = perm[lo:lo + bs]
                if len(p) < 2:
                    continue
                starts = random_starts(lengths[idx[p]], seg, rng)
                x = torch.from_numpy(gather_segments(store, idx[p], starts, seg)).to(device)
                loss = nn.functional.binary_cross_entropy_with_logits(
                    model(x), torch.from_numpy(y[p].astype(np.float32)).to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                scores = torch.cat([model(v_x[i:i + bs].to(device)).float().cpu()
                                    for i in range(0, len(v_x), bs)]).numpy()
            score = validation_score(task, targets(v_y, task), scores)
            if score > best:
                best, best_state = score, {k: v.detach().cpu().clone() for k, v in enc.state_dict().items()}
        enc.load_state_dict(best_state)
        enc = enc.cpu().eval()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_torch({"encoder": enc.state_dict(), "config": to_dict(cfg)}, path)
    return EncoderSource("supervised", "n/a", enc.eval(), cfg.audio, str(path), sha_file(path), key)


BASELINES = {"random": _random_encoder, "random-target": _random_target, "handcrafted": _handcrafted,
             "supervised": supervised_encoder}


def baseline_source(name: str, cfg: RunConfig, store: AudioStore) -> EncoderSource:
    """One of `BASELINES` as an `EncoderSource`; a wrong name lists the valid ones."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    return BASELINES[name](cfg, store)
