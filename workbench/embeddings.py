"""Frozen embeddings of a split, for probing (`workbench.evaluate`).

An encoder source is a run folder (`workbench.runs.load_encoder`), a released checkpoint
``.pt`` of the paper (`workbench.encoder.load_released`, with the release's front end, f_max
11025 Hz) or an nn.Module (baselines). Each track is cut into non-overlapping chunks of the
pretraining duration (4 s): the last partial chunk is dropped (``EvalConfig.last_chunk =
"drop"``; ``"pad"`` zero-pads it) and a track shorter than one chunk gives one zero-padded chunk
(`workbench.data.views.chunk_track`). Chunks go in batches through the front end and the frozen
encoder (eval mode, on the device) and are mean-pooled per track. Results are cached under
``data_dir()/cache/embeddings/`` (npz, written atomically), keyed by the checkpoint's bytes
(sha256; the state dict for a module), the store, the split and the front end, so re-probing
takes seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from workbench import runs
from workbench.audio import MelFrontend
from workbench.config import AudioConfig, RunConfig, config_hash, data_dir, to_dict
from workbench.data.store import AudioStore
from workbench.data.views import chunk_track, gather_segments, random_starts
from workbench.encoder import RELEASE_NAMES, load_released
from workbench.files import save_npz
from workbench.heads import head_parameters


def sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def sha_module(module: nn.Module) -> str:
    h = hashlib.sha256(type(module).__name__.encode())
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class EncoderSource:
    """A frozen encoder and what identifies it in tables and caches."""

    name: str  # method or baseline name (METHOD_ORDER in workbench.plots)
    fidelity: str
    encoder: nn.Module  # (B, 1, F, T) -> (B, E)
    audio: AudioConfig  # its front end
    checkpoint: str  # file or description
    checkpoint_hash: str
    config_hash: str
    variant: str = ""  # a run's deliberate departure (method.variant), shown in its label
    seed: int | None = None  # a run's pretraining seed (train.seed)
    head_params: int | None = None  # a run's pretraining heads: trainable parameters outside the encoder


def resolve_source(source, cfg: RunConfig, name: str | None = None) -> EncoderSource:
    """A run folder, a released checkpoint ``.pt``, an `EncoderSource` or an nn.Module -> `EncoderSource`."""
    if isinstance(source, EncoderSource):
        return source
    if isinstance(source, nn.Module):
        return EncoderSource(name or getattr(source, "name", type(source).__name__.lower()), "n/a",
                             source.eval(), cfg.audio, "in-memory module", sha_module(source), config_hash(cfg))
    path = Path(source)
    if path.is_dir():
        run_cfg, method = runs.load_run(path)
        ckpt = path / "checkpoint.pt"
        return EncoderSource(name or run_cfg.method.name, run_cfg.method.fidelity, method.encoder.eval(), run_cfg.audio,
                             str(ckpt), sha_file(ckpt), config_hash(run_cfg), run_cfg.method.variant,
                             run_cfg.train.seed, head_parameters(method))
    if path.suffix == ".pt" and path.exists():

        method = RELEASE_NAMES.get(path.stem, path.stem)
        encoder, _info = load_released(path, method)
        # the release's front end: f_max 11025 at 16 kHz (docs/paper.md departure 6), 4 s at 16 kHz
        audio = dataclasses.replace(AudioConfig(), f_max=11025.0)
        return EncoderSource(name or method, "released", encoder.eval(), audio, str(path), sha_file(path),
                             config_hash(audio))
    raise FileNotFoundError(f"{source}: neither a run folder nor a released checkpoint (.pt)")


@dataclass
class Embeddings:
    """Track embeddings (N, E) of a split, the store indices (N,), and optionally chunk
    embeddings (M, E) with the position (M,) of their track in ``indices``."""

    track: np.ndarray
    indices: np.ndarray
    chunks: np.ndarray | None = None
    chunk_track: np.ndarray | None = None
    key: str = ""


def store_id(store: AudioStore) -> str:
    return f"{Path(store.root).name}-{len(store)}"


def _cache_path(kind: str, src: EncoderSource, store: AudioStore, split: str, extra: dict) -> Path:
    blob = json.dumps({"ckpt": src.checkpoint_hash, "store": store_id(store), "split": split,
                       "audio": to_dict(src.audio), **extra}, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return data_dir() / "cache" / "embeddings" / f"{kind}-{src.name}-{split}-{key}.npz"


def _embed_batches(src: EncoderSource, audio: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """(M, S) waveforms -> (M, E) embeddings through the source's front end and encoder."""
    front = MelFrontend.from_config(src.audio).to(device)
    encoder = src.encoder.to(device).eval()
    out = []
    with torch.inference_mode():
        for lo in range(0, len(audio), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(audio[lo:lo + batch_size])).to(device)
            out.append(encoder(front(x)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def extract_embeddings(source, store: AudioStore, split: str, cfg: RunConfig, keep_chunks: bool = False,
                       progress: bool = True) -> Embeddings:
    """Frozen track embeddings of a split (cached; see the module docstring for chunking)."""
    src = resolve_source(source, cfg)
    seg = src.audio.segment_samples
    path = _cache_path("track", src, store, split, {"last": cfg.eval.last_chunk, "chunks": keep_chunks})
    if path.exists():
        z = np.load(path)
        return Embeddings(z["track"], z["indices"], z["chunks"] if keep_chunks else None,
                          z["chunk_track"] if keep_chunks else None, path.stem)
    idx = store.indices(split)
    device = runs.device(cfg)
    chunks, owner, buf, buf_owner = [], [], [], []
    bs = cfg.eval.batch_size

    def flush() -> None:
        if buf:
            chunks.append(_embed_batches(src, np.concatenate(buf), bs, device))
            owner.append(np.concatenate(buf_owner))
            buf.clear()
            buf_owner.clear()


    n_buf = 0
    for pos, i in enumerate(tqdm(idx, desc=f"embed {src.name} {split}", disable=not progress, leave=False)):
        c = chunk_track(store.audio(int(i)), seg, cfg.eval.last_chunk)
        buf.append(c)
        buf_owner.append(np.full(len(c), pos))
        n_buf += len(c)
        if n_buf >= 4 * bs:
            flush()
            n_buf = 0
    flush()
    if not chunks:
        raise ValueError(f"the {split} split of {store.root} is empty: nothing to embed")
    chunk_emb = np.concatenate(chunks).astype(np.float32)
    chunk_owner = np.concatenate(owner)
    counts = np.bincount(chunk_owner, minlength=len(idx))
    track = np.zeros((len(idx), chunk_emb.shape[1]), np.float32)
    np.add.at(track, chunk_owner, chunk_emb)
    track /= counts[:, None]
    arrays = dict(track=track, indices=idx)
    if keep_chunks:
        arrays.update(chunks=chunk_emb, chunk_track=chunk_owner)
    save_npz(path, **arrays)
    return Embeddings(track, idx, chunk_emb if keep_chunks else None, chunk_owner if keep_chunks else None, path.stem)


def extract_segments(source, store: AudioStore, split: str, cfg: RunConfig,
                     progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Paper-code protocol training set: embeddings (M, E) of up to ``probe.segments_per_track``
    random segments a track (seeded; segments below ``views.silence_db`` dBFS dropped) and the
    position (M,) of their track in ``store.indices(split)``. Cached like track embeddings."""
    src = resolve_source(source, cfg)
    seg, n_per = src.audio.segment_samples, cfg.probe.segments_per_track
    path = _cache_path("segments", src, store, split, {"n": n_per, "seed": cfg.probe.seed,
                                                        "silence": cfg.views.silence_db})
    if path.exists():
        z = np.load(path)
        return z["emb"], z["track"]
    idx = store.indices(split)
    rng = np.random.default_rng(cfg.probe.seed)
    lengths = np.asarray(store.lengths)[idx]
    owner = np.repeat(np.arange(len(idx)), n_per)
    starts = random_starts(lengths[owner], seg, rng)
    embs, kept = [], []
    block = 16 * cfg.eval.batch_size  # bounds memory: (block, S) waveforms at a time
    for lo in tqdm(range(0, len(owner), block), desc=f"segments {src.name} {split}", disable=not progress,
                   leave=False):
        o = owner[lo:lo + block]
        audio = gather_segments(store, idx[o], starts[lo:lo + block], seg)
        rms_db = 20 * np.log10(np.maximum(np.sqrt(np.mean(np.square(audio, dtype=np.float64), -1)), 1e-12))
        keep = rms_db >= cfg.views.silence_db
        if keep.any():
            embs.append(_embed_batches(src, audio[keep], cfg.eval.batch_size, runs.device(cfg)))
            kept.append(o[keep])
    if not embs:
        raise ValueError(f"every segment of the {split} split is silent (below {cfg.views.silence_db} dBFS)")
    emb, owner = np.concatenate(embs), np.concatenate(kept)
    save_npz(path, emb=emb, track=owner)
    return emb, owner
