"""Run configuration: frozen dataclasses composed into one `RunConfig`, and three profiles.

Defaults are the paper's values (Meseguer-Brocal et al., ICASSP 2024, "An Experimental
Comparison of Multi-view Self-supervised Methods for Music Tagging", and its public release
deezer/multi-view-ssl-benchmark) or the original method papers where the study is silent; each
default names its source. Profiles only change sizes:

- ``smoke``: the test suite; every notebook well under a minute on 2 CPU cores.
- ``demo``: a laptop CPU; the whole ``make demo`` in at most 15 minutes on 2 cores.
- ``paper``: a GPU; the paper's model and training sizes.

Vary a run with ``dataclasses.replace`` (notebooks) or ``--set section.key=value`` (CLI,
``apply_overrides``). The config is saved into every run folder and checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_PROFILE = "demo"
# One home for the names the CLI, losses, methods, heads and reports share.
FIDELITIES = ("reference", "paper-code")  # the method papers | the released code (docs/paper.md)
PRECISIONS = ("fp32", "bf16", "fp16")
CLIP_RULES = ("auto", "none", "global", "per-parameter")
REPO_ROOT = Path(__file__).resolve().parent.parent
LABEL_TASKS = ("multi_label", "single_label")  # what a probe learns; a store may also declare "none" (unlabeled)

# Offsets that give each random stream of a run its own seed, so that no stream repeats another's
# draws: training batches use ``train.seed`` itself, and the streams below must not follow them.
HELD_OUT_SEED_OFFSET = 12_345  # the collapse monitor's fixed held-out batch (`diagnostics.held_out_batch`)
PROBE_TRACKS_SEED_OFFSET = 54_321  # the online probe's labeled tracks (`diagnostics.probe_batch`)
# the on-device augmentation generator of rank r: train.seed + AUGMENT_SEED_STRIDE * (r + 1), a
# prime stride so that ranks never share a seed with each other or with the batches
AUGMENT_SEED_STRIDE = 7_919


def data_dir() -> Path:
    """Where corpora, stores, runs, caches and reports live: ``$WORKBENCH_DATA`` or ``<repo>/data``."""
    return Path(os.environ.get("WORKBENCH_DATA", REPO_ROOT / "data")).resolve()


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 16_000  # paper: mono 16 kHz
    segment_seconds: float = 4.0  # paper: 4 s segments
    n_fft: int = 1024  # paper code MelSpectrogram
    hop_length: int = 512  # paper code: about 126 frames for 4 s
    n_mels: int = 128  # paper code
    f_min: float = 0.0
    # None = Nyquist (sample_rate / 2). The released code uses 11025 at 16 kHz, which leaves
    # 11 of 128 Slaney filters all-zero (docs/paper.md departure 6); set 11025.0 to reproduce it.
    f_max: float | None = None
    top_db: float = 100.0  # paper code AmplitudeToDB(top_db=100)
    # Mel filter normalisation. The release passes no `norm` to torchaudio's MelSpectrogram, so
    # its Slaney-scale triangles have peak 1 (None); "slaney" gives unit-area filters (librosa).
    mel_norm: str | None = None

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """Frames of one segment with a centred STFT (126 for 4 s at hop 512)."""
        return self.segment_samples // self.hop_length + 1


@dataclass(frozen=True)
class CorpusConfig:
    """The embedded, procedurally generated corpus (`workbench.data.synth`)."""

    seed: int = 0
    n_pool: int = 400  # unlabeled pretraining tracks
    n_train: int = 300
    n_valid: int = 100
    n_test: int = 200
    min_seconds: float = 20.0
    max_seconds: float = 30.0
    label_dropout: float = 0.1  # share of true positive tags dropped (weak labels, as MTAT)
    sample_rate: int = 16_000
    # "sampled": the scores played from FluidR3_GM's recorded instruments; "synth": from the
    # physical models of workbench.data.synth_instruments (the corpus before; no SoundFont needed)
    renderer: str = "sampled"
    # the splits whose audio self-supervised pretraining reads (never their labels), and the random
    # floor's BatchNorm with it; not a generation parameter (the corpus's name ignores it)
    pretrain_splits: tuple[str, ...] = ("pool",)


@dataclass(frozen=True)
class TransferConfig:
    """The transfer set (`workbench.data.transfer`): General MIDI SoundFont performances, its own seeds."""

    seed: int = 2024
    n_train: int = 300
    n_valid: int = 100
    n_test: int = 200
    seconds: float = 20.0
    sample_rate: int = 16_000
    solo_share: float = 0.25  # clips with one instrument alone


@dataclass(frozen=True)
class DataConfig:
    """Which dataset a run reads. ``synth`` is the embedded corpus; others are ingested stores."""

    dataset: str = "synth"  # synth | transfer | mtat | jamendo | gtzan | folder | csv
    root: str | None = None  # local copy of a real dataset
    variant: str | None = None  # mtat: A | A-sota | B; jamendo: top50 | genre | instrument | moodtheme | all
    max_seconds: float | None = 120.0  # cap on how much of a long track is read (Jamendo)


@dataclass(frozen=True)
class ViewConfig:
    n_views: int = 2  # paper: two (or more) segments of the same track
    min_gap: float = 4.0  # seconds between views; paper: "at least about 4 s apart"
    reject_silence: bool = True
    silence_db: float = -50.0  # a segment whose RMS is below this (dBFS) is redrawn
    augment: str = "paper"  # named chain in workbench.augment.CHAINS; paper = segment sampling only
    # where a view's log-mel comes from: "samples" (its own waveform segment, any start; the
    # release) or "frames" (cut from its track's log-mel, computed once when training starts, with
    # starts on the hop grid: no STFT per step; workbench.audio.TrackMels). "frames" needs a chain
    # without waveform augmentations.
    crop: str = "samples"


@dataclass(frozen=True)
class EncoderConfig:
    width: int = 16  # paper: CLIP-style modified ResNet, width 16
    layers: tuple[int, ...] = (3, 4, 6, 3)  # paper: bottleneck blocks 3-4-6-3
    output_dim: int = 1024  # paper: 1024-d embedding
    heads: int = 8  # attention pooling heads (paper code)


@dataclass(frozen=True)
class MethodConfig:
    name: str = "simclr"  # simclr | byol | dino | vicreg | barlow_twins
    # "reference": the original method papers; "paper-code": the released code's behaviour
    # (docs/paper.md departures 1-5 and 9). Each loss docstring documents the difference.
    fidelity: str = "reference"
    # BatchNorm statistics over the views of a step: "joint" (all views in one batch) or "per-view"
    # (each view its own, as separate passes; ghost batches keep one pass). None = the fidelity's:
    # paper-code per view (the release); reference as each method's reference code (BYOL, VICReg,
    # Barlow Twins per view; SimCLR, DINO joint).
    batchnorm: str | None = None
    # A deliberate departure from the method (notebook 03's collapse runs): a word that goes
    # into the run name, so such a run never reads like the method's own. "" = the method.
    variant: str = ""
    # Layer widths after the encoder output, as the release's Head(1024, [1024, 1024, 2048]):
    # 1024 -> 1024 -> 1024 -> 2048 (Linear without bias, BatchNorm, ReLU between layers).
    projector_dims: tuple[int, ...] = (1024, 1024, 2048)
    # SimCLR (Chen et al. 2020); paper: temperature 0.1
    temperature: float = 0.1
    # BYOL (Grill et al. 2020); EMA 0.996 rising towards 1. Predictor hidden width: None = the
    # fidelity's: reference = the projector's hidden width (the BYOL paper's rule: projector and
    # predictor both 4096 wide; every method's heads then scale with projector_dims alone),
    # paper-code 256 (the release's bottleneck 2048 -> 256 -> 2048)
    predictor_hidden: int | None = None
    ema_momentum: float = 0.996
    # "cosine": base -> 1 over the run (BYOL, DINO); "constant": the base value throughout
    # (momentum 0 = teacher is the student, SimSiam's setting, notebook 03)
    ema_schedule: str = "cosine"
    use_predictor: bool = True  # False = a deliberate collapse (notebook 03)
    # DINO (Caron et al. 2021); release head Head(1024, [1024, 1024, 256, 4096]): hidden widths
    # after the encoder output, then the bottleneck and the prototypes
    dino_hidden_dims: tuple[int, ...] = (1024, 1024)
    dino_bottleneck: int = 256
    n_prototypes: int = 4096
    student_temp: float = 0.1
    # None = the fidelity's values: reference 0.04 -> 0.07 (DINO paper, Caron et al. 2021,
    # Sec. 4 / App.), paper-code 0.02 -> 0.04 (the study's values)
    teacher_temp: float | None = None
    warmup_teacher_temp: float | None = None
    # DINO's stabilisers as shares of the run, so that a short run keeps the paper's proportions
    # whatever its epoch length: the teacher temperature is warmed up over the first 10 % (the study:
    # 10 of its 100 epochs; DINO: 30 of 300), and the last (prototype) layer is kept frozen for the
    # first 1 % (main_dino.py freeze_last_layer=1 of its default 100 epochs); None = the fidelity's
    # value: reference 0.01, paper-code 0 (the release has no trainer)
    warmup_teacher_temp_fraction: float = 0.1
    freeze_last_layer_fraction: float | None = None
    center_momentum: float = 0.9
    use_centering: bool = True  # False = a deliberate collapse (notebook 03)
    # Remedies against collapse (the study's future work), off by default: Sinkhorn-Knopp
    # iterations instead of the EMA center (SwAV, Caron et al. 2020; DINOv2, Oquab et al. 2023: 3)
    # and the KoLeo spreading term's weight (Sablayrolles et al. 2019; DINOv2: 0.1)
    sinkhorn_iterations: int = 0
    koleo_weight: float = 0.0
    n_local_crops: int = 0
    local_crop_seconds: float = 1.0
    # VICReg (Bardes et al. 2022): 25 / 25 / 1; None = the fidelity's values (paper-code: 1 / 1 / 1)
    inv_coeff: float | None = None
    var_coeff: float | None = None
    cov_coeff: float | None = None
    # Barlow Twins (Zbontar et al. 2021): lambda 5e-3; None = the fidelity's value (paper-code: 1.0 on means)
    lambd: float | None = None


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 256
    steps: int = 100_000
    steps_per_epoch: int = 1_000  # converts the papers' epoch schedules (DINO temperature) to steps
    optimizer: str = "adamw"  # adamw | lars
    lr: float = 1e-3
    weight_decay: float = 1e-5  # matrices only
    warmup_steps: int = 1_000
    grad_clip: float = 3.0
    # How grad_clip applies. "auto": each method's paper under fidelity reference (DINO clips
    # each parameter's gradient to norm 3.0, its utils.clip_gradients; SimCLR, BYOL, VICReg and
    # Barlow Twins do not clip) and a global norm of grad_clip for every method under
    # paper-code (the study's behaviour); or force "none" | "global" | "per-parameter".
    clip: str = "auto"
    precision: str = "bf16"  # fp32 | bf16 (autocast, CPU or CUDA) | fp16 (autocast + GradScaler, CUDA only)
    channels_last: bool = True
    compile: bool = False
    log_every: int = 50
    checkpoint_every: int = 1_000
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # the data path (workbench.data.prefetch), which never changes a batch: batches sampled ahead
    # in a background thread (0 = on the training thread); where views are gathered: "device" (the
    # store's samples on the GPU), "host", or "auto" (device on CUDA when the samples take under a
    # quarter of the free GPU memory); threads gathering on the host (0 = auto: one on CPU, every
    # core but two up to 8 on a GPU host)
    prefetch: int = 2
    gather_on: str = "auto"
    data_workers: int = 0
    # CPU threads of a run (torch.set_num_threads; 0 = torch's default, one per core). Weights
    # depend on it at float rounding (the order of parallel sums), so a profile that fixes it
    # gives the same weights on any number of cores. With it set, `jobs.ensure_runs` trains
    # cores // threads runs side by side on CPU: on 2 cores two 1-thread runs take 1.8x the
    # steps of one 2-thread run (python -m workbench.bench parallel).
    threads: int = 0
    deterministic: bool = False
    # a step whose loss or gradient is not finite: "stop" the run (named step, last good checkpoint
    # kept) or "skip" it as torch.amp.GradScaler does (no optimiser step, counted in metrics as
    # ``skipped``; one host read per step). "skip" reproduces how a release trained under a
    # GradScaler survives DINO's paper-code NaN rows (docs/paper.md 4).
    nonfinite: str = "stop"


@dataclass(frozen=True)
class DiagnosticsConfig:
    every: int = 500  # steps between diagnostics on the held-out batch
    held_out_batch: int = 256
    probe_tracks: int = 128  # online k-NN probe: train tracks (and half as many valid ones); 0 = off
    stop_on_collapse: bool = False
    # per-dim std of L2-normalised embeddings below 0.15 / sqrt(D): whatever D, about a mean
    # cosine of 0.98 between different tracks (the summed variance is 1 - |mean|^2)
    std_ratio_min: float = 0.15
    rank_fraction_min: float = 0.02  # effective rank under 2 % of min(N, D) (RankMe <= min(N, D))
    rank_min: float = 1.5  # ... and never a threshold below 1.5: one direction has RankMe 1 whatever D
    dino_loss_margin: float = 0.02  # DINO loss within 2 % of ln(K)
    entropy_margin: float = 0.02  # teacher entropy within 2 % of 0 or of ln(K)
    # KL(teacher || student) below 0.05 nats: both DINO collapse modes drive it to 0 (Caron et
    # al. 2021, Fig. 7); a sharpened teacher (0.04) against a student at 0.1 keeps it well above
    dino_kl_min: float = 0.05
    monitor_prefixes: tuple[str, ...] = ("embed", "proj")  # std / rank checked on backbone and projector
    # notebook 03's deliberate collapses and their healthy twins (`collapse_configs` below):
    # training steps (0 = train.steps), learning rate (None = train.lr) and batch (0 = train.batch_size)
    collapse_steps: int = 0
    collapse_lr: float | None = None
    collapse_batch: int = 0  # 0: the profile's train.batch_size
    # the DINO trio's constant teacher momentum: fast enough for both collapse modes to show within
    # collapse_steps, slow enough for the twin with centering and sharpening to stay healthy; it
    # depends on the input and the model (the profiles set it: demo 0.9, smoke 0.95; 0.7 on the
    # paper's input with the demo's model, where 0.9 left the sharpened teacher on 3 prototypes)
    collapse_dino_momentum: float = 0.7


@dataclass(frozen=True)
class ProbeConfig:
    protocol: str = "mlp"  # mlp | linear | paper-code
    hidden: int = 512  # MARBLE: MLP [512]
    dropout: float = 0.2
    lr: float = 1e-3  # Adam
    weight_decay: float = 0.0
    batch_size: int = 64
    max_epochs: int = 100
    patience: int = 10  # early stopping on validation macro ROC-AUC
    segments_per_track: int = 25  # paper-code protocol: up to 25 random 4 s segments a track
    seed: int = 0


@dataclass(frozen=True)
class EvalConfig:
    bootstrap_resamples: int = 1000
    bootstrap_seed: int = 0
    fractions: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 1.0)
    seeds: int = 1  # pretraining seeds per method (train.seed, train.seed + 1, ...); --seeds N
    draws: int = 4  # random draws per fraction below 1
    subset_seed: int = 0
    subset_rule: str = "uniform"  # the paper: uniform at random | "coverage": one positive per tag first
    last_chunk: str = "drop"  # drop | pad: the last partial 4 s chunk of a track
    baselines: tuple[str, ...] = ("random", "handcrafted", "supervised")
    batch_size: int = 64
    baseline_seed: int = 0  # random-init encoder and supervised baseline
    calibration_batches: int = 4  # random-init encoder: batches of pretraining views for its BatchNorm statistics
    # the dataset the SSL encoders were pretrained on, when the evaluated one is another (the transfer
    # set's evaluation sets it): the "random" floor's BatchNorm is calibrated there, as theirs was
    pretrain_dataset: str = ""
    supervised_epochs: int = 20  # supervised baseline: passes of one random 4 s segment per train track


@dataclass(frozen=True)
class RunConfig:
    profile: str = DEFAULT_PROFILE
    audio: AudioConfig = field(default_factory=AudioConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    data: DataConfig = field(default_factory=DataConfig)
    views: ViewConfig = field(default_factory=ViewConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# Profiles change sizes only: {profile: {section: {field: value}}} over the paper's defaults.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {},
    "demo": {
        # a demo-scale input, chosen on the valid split (docs/results.md "The demo's input"): 2 s
        # views of 64 mel bins (63 frames), cut from each track's log-mel computed once: 4.4x the
        # clips/s of 4 s x 128 bins from each view's waveform, on one core (python -m workbench.bench
        # train, docs/benchmarks.md); pretraining reads the pool's and the train split's audio
        # (never a label)
        "audio": dict(n_mels=64, segment_seconds=2.0),
        # each view with its own random level and spectral tilt (augment.LevelTilt, 6 dB): on the
        # valid split it raised every method (seed 0, 800 steps, valid MLP: SimCLR 0.770 -> 0.781,
        # BYOL 0.740 -> 0.748, DINO 0.737 -> 0.745, VICReg 0.755 -> 0.777, Barlow Twins 0.752 ->
        # 0.772); at 12 dB SimCLR gained more (0.789) and VICReg lost (0.733)
        "views": dict(crop="frames", augment="level-tilt"),
        "corpus": dict(n_pool=300, n_train=200, n_valid=60, n_test=120, pretrain_splits=("pool", "train")),
        # sized for five methods in about 5 minutes on 2 CPU cores (python -m workbench.bench train)
        "encoder": dict(width=8, layers=(1, 1, 1, 1), output_dim=256),
        # BYOL's predictor keeps the fidelity's width (reference 4096): on the valid split it beat
        # the release's bottleneck scaled down to 128 (README "BYOL's predictor")
        "method": dict(projector_dims=(512, 512), n_prototypes=512,
                       dino_hidden_dims=(512,), dino_bottleneck=128),
        "train": dict(batch_size=32, steps=800, steps_per_epoch=160, warmup_steps=80, lr=1e-3,
                      log_every=20, checkpoint_every=200, precision="fp32", threads=1),
        # notebook 03's five collapse runs: 60 steps of batch 16 each (about 12 s a run, two at a
        # time). DINO's trio at teacher momentum 0.95 on this input and chain: centering only uniform
        # from step 10 (0.997 ln K, KL 0.004), sharpening only on 1 prototype (batch entropy 0, KL
        # 0.009), both healthy (KL >= 0.168, no flag); at 0.85 the twin with both is flagged at step
        # 10 (KL 0.017), at 0.9 its loss at step 60 (dino_ce); without the chain 0.9 was the one.
        # (On 4 s x 128 bins 0.7: there 0.9 left the sharpened teacher on 3 prototypes.)
        "diagnostics": dict(every=100, held_out_batch=64, collapse_steps=60, collapse_batch=16,
                            collapse_dino_momentum=0.95),
        "probe": dict(max_epochs=60, patience=8),
        # 2 draws per fraction below 100 %: the limited-data curves' band from two seeded subsets;
        # no 1 % point: 1 % of the 200 train tracks is 2 tracks, which carry few of the 39 tags
        "eval": dict(bootstrap_resamples=1000, supervised_epochs=115,  # 115 x 7 steps: the SSL runs' 800-step budget
                     draws=2, fractions=(0.05, 0.1, 0.2, 1.0)),
    },
    "smoke": {
        "corpus": dict(n_pool=16, n_train=24, n_valid=12, n_test=12),
        "transfer": dict(n_train=24, n_valid=12, n_test=16, seconds=14.0),  # >= 12 s: two 4 s views 4 s apart
        "encoder": dict(width=4, layers=(1, 1, 1, 1), output_dim=64, heads=2),
        "method": dict(projector_dims=(64, 64), predictor_hidden=32, n_prototypes=64,
                       dino_hidden_dims=(64,), dino_bottleneck=32),
        "train": dict(batch_size=8, steps=4, steps_per_epoch=2, warmup_steps=1, log_every=1,
                      checkpoint_every=2, precision="fp32"),
        # the tiny model's DINO trio: of teacher momenta 0.8/0.9/0.95, lr 1e-2/3e-3 and batch 8/16, only
        # 0.95, 1e-2, 16 gives all three signatures (tests/test_diagnostics.py) and no flag on the twin
        "diagnostics": dict(every=2, held_out_batch=16, collapse_steps=30, collapse_lr=1e-2, collapse_batch=16,
                            collapse_dino_momentum=0.95),
        "probe": dict(max_epochs=5, patience=3, batch_size=16, segments_per_track=4),
        "eval": dict(bootstrap_resamples=100, draws=2, fractions=(0.2, 0.5, 1.0), supervised_epochs=1),
    },
}


# ``laptop``: the demo's corpus, input, model and evaluation (the same test split, so the two
# compare directly), five times the pretraining steps (warm-up the same 10 % of them) and the
# supervised baseline's budget with them: about 30 minutes on 2 cores. Diagnostics, with the
# online k-NN probe on valid tracks, every 400 steps: the curve that says whether the steps pay.
_DEMO = PROFILES["demo"]
PROFILES["laptop"] = {**_DEMO,
                      "train": {**_DEMO["train"], "steps": 5 * _DEMO["train"]["steps"],
                                "warmup_steps": 5 * _DEMO["train"]["warmup_steps"], "checkpoint_every": 1000},
                      "diagnostics": {**_DEMO["diagnostics"], "every": 400},
                      "eval": {**_DEMO["eval"], "supervised_epochs": 5 * _DEMO["eval"]["supervised_epochs"]}}


def load_profile(profile: str | None = None) -> RunConfig:
    """The run config of a profile: the argument, else ``$WORKBENCH_PROFILE``, else ``demo``."""
    profile = profile or os.environ.get("WORKBENCH_PROFILE") or DEFAULT_PROFILE
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    cfg = RunConfig(profile=profile)
    for section, values in PROFILES[profile].items():
        cfg = replace(cfg, **{section: replace(getattr(cfg, section), **values)})
    return cfg


# Settings chosen per method on the valid split (`workbench.tuning`, python -m workbench tune:
# the same grid and seeds for every method; results/tuning-<profile>/chosen.csv holds the figures
# that chose them): {profile: {method: overrides}}, applied by `for_method`.
TUNED: dict[str, dict[str, tuple[str, ...]]] = {
    "demo": {"simclr": ("train.lr=3e-4",), "byol": ("train.lr=1e-3",), "dino": ("train.lr=1e-3",),
             "vicreg": ("train.lr=1e-3",), "barlow_twins": ("train.lr=1e-3",)},
}
TUNED["laptop"] = TUNED["demo"]  # the demo's choices, made at its 800 steps (not re-tuned at 4000)


def for_method(cfg: RunConfig, name: str, tuned: bool = True, **changes: Any) -> RunConfig:
    """``cfg`` training method ``name``, with the settings the profile's tuning chose for it
    (`TUNED`; ``tuned=False``: without) and ``changes`` to the method section (notebooks:
    ``for_method(cfg, "byol", use_predictor=False)``)."""
    cfg = replace(cfg, method=replace(cfg.method, name=name, **changes))
    return apply_overrides(cfg, list(TUNED.get(cfg.profile, {}).get(name, ()))) if tuned else cfg


def with_dataset(cfg: RunConfig, dataset: str | None = None, root: str | os.PathLike | None = None,
                 variant: str | None = None) -> RunConfig:
    """``cfg`` reading another dataset (the CLI's --dataset/--root/--variant, a notebook's config
    cell); every argument None keeps what ``cfg`` has (the embedded corpus by default)."""
    data = cfg.data
    if dataset:
        data = replace(data, dataset=dataset)
    if root:
        data = replace(data, root=str(Path(root).expanduser()))
    if variant:
        data = replace(data, variant=variant)
    return replace(cfg, data=data)


def announce(cfg: RunConfig, what: str = "") -> None:
    """Print the line at the top of every notebook and CLI run (and return nothing, so that a
    notebook cell ending with it shows the line once)."""
    dataset = "" if cfg.data.dataset == "synth" else \
        f" | dataset: {cfg.data.dataset}{'-' + cfg.data.variant if cfg.data.variant else ''} ({cfg.data.root})"
    line = (f"[workbench] profile: {cfg.profile}" + (f" | {what}" if what else "") + dataset
            + f" | views: {cfg.audio.segment_seconds:g} s x {cfg.audio.n_mels} mel bins | data: {data_dir()}")
    print(line, flush=True)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict (tuples become lists) of a config or of a dict."""
    return json.loads(json.dumps(cfg if isinstance(cfg, dict) else dataclasses.asdict(cfg)))


def _coerce(tp: Any, value: Any) -> Any:
    """Convert a JSON value (or a CLI string parsed as JSON) to the annotated field type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        return None
    if origin is tuple:
        return tuple(_coerce(args[0], v) for v in value)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return _coerce(non_none[0], value) if len(non_none) == 1 else value
    if tp is float:
        return float(value)
    if tp is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return int(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        words = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
                 "off": False}
        if str(value).lower() not in words:
            raise ValueError(f"expected true or false, got {value!r}")
        return words[str(value).lower()]
    if tp is str:
        return str(value)
    return value


def from_dict(d: dict[str, Any]) -> RunConfig:
    """Rebuild a `RunConfig` saved with `to_dict`; unknown keys raise with their name."""
    hints = typing.get_type_hints(RunConfig)
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        if key not in hints:
            raise KeyError(f"unknown config section {key!r}; expected one of {sorted(hints)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            sub = typing.get_type_hints(tp)
            unknown = set(value) - set(sub)
            if unknown:
                raise KeyError(f"unknown keys {sorted(unknown)} in config section {key!r}")
            kwargs[key] = tp(**{k: _coerce(sub[k], v) for k, v in value.items()})
        else:
            kwargs[key] = value
    return RunConfig(**kwargs)


def apply_overrides(cfg: RunConfig, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """Apply ``section.key=value`` strings (value parsed as JSON when it can be, else a string).

    >>> apply_overrides(load_profile("smoke"), ["train.lr=0.01", "method.name=byol"]).train.lr
    0.01
    """
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"override {item!r} is not of the form section.key=value")
        path, raw = item.split("=", 1)
        section, key = path.split(".", 1)
        if not hasattr(cfg, section) or not dataclasses.is_dataclass(getattr(cfg, section)):
            sections = [f.name for f in fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))]
            raise ValueError(f"override {item!r}: unknown section {section!r}; expected one of {sections}")
        sub = getattr(cfg, section)
        hints = typing.get_type_hints(type(sub))
        if key not in hints:
            raise ValueError(f"override {item!r}: unknown key {key!r} in {section}; expected one of {sorted(hints)}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw.split(",") if typing.get_origin(hints[key]) is tuple else raw
        if typing.get_origin(hints[key]) is tuple and not isinstance(value, (list, tuple)):
            value = [value]
        try:
            value = _coerce(hints[key], value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"override {item!r}: {err}") from None
        cfg = replace(cfg, **{section: replace(sub, **{key: value})})
    return cfg


def config_hash(cfg: Any, length: int = 10) -> str:
    """A short, stable hash of a (sub)config, used to name caches and runs."""
    blob = json.dumps(to_dict(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def collapse_configs(cfg: RunConfig) -> dict[str, RunConfig]:
    """The deliberate collapses of notebook 03, each beside a healthy twin trained the same way.

    DINO's two modes as in Caron et al. 2021, section 5.3 and Fig. 7: the teacher's targets need
    both centering (which spreads them towards uniform) and sharpening (a teacher temperature
    below the student's 0.1, which pulls them towards one-hot); either alone collapses.
    - ``dino``: centering and sharpening (teacher temperature 0.04 from the first step): healthy.
    - ``dino-centering-only``: teacher temperature 0.1, the student's: no sharpening; the targets
      go uniform (teacher entropy to ln K) and the student copies them (KL to 0).
    - ``dino-sharpening-only``: ``use_centering=False``, teacher temperature 0.04: every track on
      one prototype (batch entropy of the targets to 0) and the KL to 0.
    The three share a constant teacher momentum ``diagnostics.collapse_dino_momentum`` (0.7; the
    method's 0.996 needs thousands of steps to show either mode) and everything else.
    - ``byol-no-predictor``: BYOL with ``use_predictor=False``; twin ``byol``. Both with a
      CONSTANT EMA momentum of 0 (``ema_schedule="constant"``: the teacher is the student
      at every step, SimSiam's setting, Chen & He 2021, Table 1), so the collapse shows within
      tens of steps instead of thousands.
    All train ``diagnostics.collapse_steps`` steps (0: the profile's) of batch
    ``diagnostics.collapse_batch`` (0: the profile's) at learning rate
    ``diagnostics.collapse_lr`` (None: the profile's), with diagnostics about six times a run and
    no online k-NN probe (the notebook reads only the collapse figures; the probe embeds 1.5x
    ``probe_tracks`` tracks at every diagnostic).
    Each variant's ``method.variant`` names what differs, so its run folder says so.
    """
    d = cfg.diagnostics
    steps = d.collapse_steps or cfg.train.steps
    # one thread a run, side by side in fresh processes: a collapse is chaotic, and the float
    # rounding of another thread count (the caller's, when runs train in-process) changes its course
    train = replace(cfg.train, steps=steps, lr=d.collapse_lr or cfg.train.lr, threads=1,
                    batch_size=d.collapse_batch or cfg.train.batch_size,
                    warmup_steps=min(cfg.train.warmup_steps, steps // 10 or 1),
                    checkpoint_every=steps, log_every=max(1, steps // 6))
    diag = replace(d, every=max(1, min(d.every, steps // 6)), probe_tracks=0)

    def variant(name: str, tag: str = "", **method: Any) -> RunConfig:
        return replace(cfg, method=replace(cfg.method, name=name, variant=tag, **method), train=train, diagnostics=diag)

    ema0 = dict(ema_momentum=0.0, ema_schedule="constant")
    m = d.collapse_dino_momentum
    dino = dict(ema_momentum=m, ema_schedule="constant", warmup_teacher_temp=0.04, teacher_temp=0.04)
    return {"dino": variant("dino", f"ema{m:g}-temp0.04", **dino),
            "dino-centering-only": variant("dino", f"ema{m:g}-temp0.1", **(dino | dict(teacher_temp=0.1,
                                                                                   warmup_teacher_temp=0.1))),
            "dino-sharpening-only": variant("dino", f"ema{m:g}-temp0.04-nocenter", use_centering=False, **dino),
            "byol": variant("byol", "ema0", **ema0),
            "byol-no-predictor": variant("byol", "ema0-nopredictor", use_predictor=False, **ema0)}
