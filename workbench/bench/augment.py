"""``python -m workbench.bench augment``: our batched chain against two peers, side by side.

The chain is gain, polarity inversion, white noise at a random SNR, high-pass and low-pass,
each applied to every example (p = 1, the most work) with the same ranges in all three:

- ours: `workbench.augment` on the whole batch, one call per transform;
- torch-audiomentations 0.12 (``Compose`` of Gain, PolarityInversion, AddColoredNoise,
  HighPassFilter, LowPassFilter, all ``per_example``);
- CLMR's way: a per-example CPU loop over torchaudio-augmentations 0.2.4 modules wrapped in
  ``RandomApply``, as its dataset ``__getitem__`` runs them. That package no longer imports on
  torchaudio >= 2.9 (it imports ``torchaudio.sox_effects`` through its pitch/reverb modules),
  so its pure-torch modules are loaded one by one from their files.

Prints clips per second and our speed-up over each peer, on CPU and, when present, on CUDA
(the CLMR loop stays on the CPU, where its data loader runs it).
"""

from __future__ import annotations

import argparse
import importlib.util
import site
import statistics
import sys
import sysconfig
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch

from workbench import augment as A

GAIN_DB = (-20.0, -1.0)  # torchaudio-augmentations Gain defaults
SNR_DB = (40.0, 80.0)  # torchaudio-augmentations Noise: std ratio 1e-4..1e-2
HIGHPASS = (200.0, 1200.0)  # torchaudio-augmentations HighPassFilter defaults
LOWPASS = (2200.0, 4000.0)  # torchaudio-augmentations LowPassFilter defaults


def ours(sample_rate: int) -> Callable:
    chain = A.Chain(wave=[
        A.Gain(*GAIN_DB), A.PolarityInversion(), A.Noise(*SNR_DB),
        A.HighPass(sample_rate, *HIGHPASS), A.LowPass(sample_rate, *LOWPASS),
    ])
    return lambda x, g: chain.wave(x, g)


def torch_audiomentations(sample_rate: int) -> Callable:
    import torch_audiomentations as T

    kw = dict(p=1.0, mode="per_example", sample_rate=sample_rate, output_type="dict")
    compose = T.Compose([
        T.Gain(min_gain_in_db=GAIN_DB[0], max_gain_in_db=GAIN_DB[1], **kw),
        T.PolarityInversion(**kw),
        T.AddColoredNoise(min_snr_in_db=SNR_DB[0], max_snr_in_db=SNR_DB[1], min_f_decay=0.0, max_f_decay=0.0, **kw),
        T.HighPassFilter(min_cutoff_freq=HIGHPASS[0], max_cutoff_freq=HIGHPASS[1], **kw),
        T.LowPassFilter(min_cutoff_freq=LOWPASS[0], max_cutoff_freq=LOWPASS[1], **kw),
    ], output_type="dict")
    return lambda x, g: compose(x.unsqueeze(1), sample_rate=sample_rate).samples.squeeze(1)


def _load_file(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torchaudio_augmentations_dir() -> Path:
    """The installed package folder, found by path (importing it fails on torchaudio >= 2.9)."""
    roots = [sysconfig.get_paths()["purelib"], *site.getsitepackages(), *sys.path]
    for root in roots:
        folder = Path(root) / "torchaudio_augmentations"
        if (folder / "augmentations").is_dir():
            return folder
    raise ModuleNotFoundError("torchaudio-augmentations is not installed (pip install 'workbench[bench]')")


def clmr_loop(sample_rate: int) -> Callable:
    folder = _torchaudio_augmentations_dir()
    aug = {n: _load_file(folder / "augmentations" / f"{n}.py", f"_taa_{n}")
           for n in ("gain", "noise", "polarity_inversion", "filter")}
    random_apply = _load_file(folder / "apply.py", "_taa_apply").RandomApply
    transforms = [
        random_apply([aug["gain"].Gain(*GAIN_DB)], p=1.0),
        random_apply([aug["polarity_inversion"].PolarityInversion()], p=1.0),
        random_apply([aug["noise"].Noise(min_snr=1e-4, max_snr=1e-2)], p=1.0),
        random_apply([aug["filter"].HighPassFilter(sample_rate, *HIGHPASS)], p=1.0),
        random_apply([aug["filter"].LowPassFilter(sample_rate, *LOWPASS)], p=1.0),
    ]

    def run(x: torch.Tensor, g) -> torch.Tensor:
        out = []
        for clip in x.cpu():  # CLMR: one (1, S) clip per __getitem__
            clip = clip.unsqueeze(0)
            for t in transforms:
                clip = t(clip)
            out.append(clip)
        return torch.cat(out)

    return run


def _timed(fn: Callable, x: torch.Tensor, generator) -> float:
    """Seconds for one batch (synchronised on CUDA)."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn(x, generator)
    sync()
    return time.perf_counter() - start


PEERS: dict[str, Callable[[int], Callable]] = {
    "ours (workbench.augment)": ours, "torch-audiomentations": torch_audiomentations,
    "CLMR loop (torchaudio-augmentations 0.2.4)": clmr_loop}
OURS = "ours (workbench.augment)"


def compare(device: str, batch: int, seconds: float = 4.0, sample_rate: int = 16_000, repeats: int = 10,
            warmup: int = 2, peers: tuple[str, ...] = tuple(PEERS)) -> dict[str, dict]:
    """{peer: {clips_per_s (median over rounds), best_clips_per_s, where}} on one random batch of
    ``batch`` clips, or {peer: {error}} for a peer that cannot be built (a missing package must
    not hide our own figure). Rounds are interleaved, so a busy moment hits every peer alike."""
    torch.manual_seed(0)
    x = (0.3 * torch.randn(batch, int(seconds * sample_rate))).to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    fns: dict[str, Callable] = {}
    out: dict[str, dict] = {}
    for name in peers:
        try:
            fns[name] = PEERS[name](sample_rate)
        except Exception as err:
            out[name] = {"error": f"{type(err).__name__}: {err}"}
    inputs = {n: (x.cpu() if n.startswith("CLMR") else x) for n in fns}  # CLMR's loop runs on the CPU
    gens = {n: (generator if inputs[n].device == x.device else None) for n in fns}
    times: dict[str, list[float]] = {n: [] for n in fns}
    with torch.no_grad():
        for _ in range(warmup):
            for n, fn in fns.items():
                _timed(fn, inputs[n], gens[n])
        for _ in range(repeats):
            for n, fn in fns.items():
                times[n].append(_timed(fn, inputs[n], gens[n]))
    for n, t in times.items():
        out[n] = {"clips_per_s": batch / statistics.median(t), "best_clips_per_s": batch / min(t),
                  "where": str(inputs[n].device.type)}
    return {n: out[n] for n in peers}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench augment", description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--sample-rate", type=int, default=16_000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", action="append", help="cpu and/or cuda (default: cpu, plus cuda when present)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"[bench augment] batch {args.batch} x {args.seconds:g} s at {args.sample_rate} Hz, {args.repeats} "
          f"interleaved rounds after {args.warmup} warm-up, torch {torch.__version__}, {torch.get_num_threads()} "
          f"CPU threads", flush=True)
    print("chain: gain, polarity, white noise (SNR), high-pass, low-pass; p = 1 for each transform; "
          "figures: median over rounds (best in brackets)")
    for device in devices:
        rows = compare(device, args.batch, args.seconds, args.sample_rate, args.repeats, args.warmup)
        for n, r in rows.items():
            if "error" in r:
                print(f"  {device:5s} {n:45s} unavailable: {r['error']}")
                continue
            ratio = (f"  ours {rows[OURS]['clips_per_s'] / r['clips_per_s']:5.1f}x faster"
                     if n != OURS and "clips_per_s" in rows.get(OURS, {}) else "")
            print(f"  {device:5s} {n:45s} ({r['where']}) {r['clips_per_s']:8.1f} clips/s "
                  f"({r['best_clips_per_s']:7.1f}){ratio}", flush=True)


if __name__ == "__main__":
    main()
