"""Training and diagnostic figures (result figures are in `workbench.plots`): what notebooks
02_pretraining, 03_collapse and 04_umap call.

00_corpus: a track's score as a piano roll (`plot_score`).
01_augmentations: named clips as waveform, log-mel and audio player (`preview`).
02_pretraining: loss curves of several runs redrawn while they train (`LiveLossPlot`).

03_collapse: the deliberate collapses beside their healthy twins (`config.collapse_configs`), a fixed
held-out batch (`held_out_views`), the singular values of a run's checkpoint (`run_spectra`,
`plot_spectra`) and the diagnostics rows of ``metrics.jsonl`` with their collapse warnings
(`plot_training_diagnostics`). 04_umap: UMAP maps coloured by a tag family (`umap_coordinates`,
`family_labels`, `plot_maps`), nearest neighbours by cosine (`nearest_neighbours`) and the
similarity of two segments of one track against their distance in time
(`segment_similarity_by_distance`).

The figures themselves and the collapse monitor are in `workbench.diagnostics`.
"""

from __future__ import annotations

import base64
import io
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import umap
from IPython.display import HTML, Audio, display
from torch import Tensor, nn

from workbench.audio import MelFrontend
from workbench.config import DiagnosticsConfig
from workbench.data.datasets import open_dataset
from workbench.data.synth import INSTRUMENT_TAGS
from workbench.diagnostics import CollapseMonitor, held_out_batch, read_warnings, singular_values
from workbench.runs import load_run, read_metrics

__all__ = [
    "plot_score", "preview", "LiveLossPlot", "held_out_views", "run_spectra", "plot_training_diagnostics",
    "plot_spectra", "segment_similarity_by_distance", "family_labels", "umap_coordinates", "plot_maps",
    "nearest_neighbours",
]


# ----------------------------------------------------------------------------------- 03_collapse
def held_out_views(cfg: Any, store: Any, batch: int | None = None) -> list[Tensor]:
    """A fixed batch of mel views (V tensors (B, 1, F, T)) of validation tracks (pretraining
    tracks when the store has none), seeded as the trainer's held-out batch."""
    views = held_out_batch(cfg, store, batch).views
    frontend = MelFrontend.from_config(cfg.audio)
    with torch.no_grad():
        return [frontend(w) for w in views]


def run_spectra(run_dir: str | Path, store: Any = None, center: bool = True) -> dict[str, np.ndarray]:
    """Singular values (descending) of the backbone embedding and projector output of a run's
    latest checkpoint on the held-out batch: {"embed": (min(N, E),), "proj": (min(N, D),)}.
    Centred by default (the spectrum of the covariance, as in Jing et al. 2022)."""
    cfg, method = load_run(run_dir)
    views = held_out_views(cfg, store if store is not None else open_dataset(cfg))
    mel = torch.cat(views)
    for m in method.modules():  # batch statistics, as compute_diagnostics; this copy is thrown away
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.train()
    with torch.no_grad():
        return {"embed": singular_values(method.embed(mel), center),
                "proj": singular_values(method.project(mel), center)}


def _warning_marks(run_dir: Path, stat: str) -> list[tuple[int, float]]:
    base = stat.removesuffix("_ratio")
    return [(w["step"], w["value"]) for w in read_warnings(run_dir) if w.get("stat") in (stat, base)]


def plot_training_diagnostics(runs: dict[str, str | Path] | list[str | Path],
                              stats: tuple[str, ...] = ("proj_std_ratio", "proj_rank", "embed_std_ratio",
                                                          "embed_rank"),
                              diag_cfg: DiagnosticsConfig | None = None, ncols: int = 4, logy: tuple[str, ...] = ()):
    """One panel per statistic (rows "kind": "diagnostics" of each run's metrics.jsonl), one line
    per run; collapse warnings of that statistic are red crosses. Reference lines: where the
    monitor fires ("monitor fires": `CollapseMonitor.threshold_lines`, the function the monitor's
    own check reads, on the run's last row), 1 (healthy spread) for ``*_std_ratio``, ln(K) for
    DINO's entropies and the cross-entropy. Returns the Figure."""
    diag_cfg = diag_cfg or DiagnosticsConfig()
    runs = runs if isinstance(runs, dict) else {Path(r).name: r for r in runs}
    frames = {label: read_metrics(d) for label, d in runs.items()}
    frames = {k: (df[df["kind"] == "diagnostics"] if len(df) else df) for k, df in frames.items()}
    nrows = math.ceil(len(stats) / ncols)
    fig, axes = plt.subplots(nrows, min(ncols, len(stats)), figsize=(3.4 * min(ncols, len(stats)), 2.8 * nrows),
                             squeeze=False)
    for ax, name in zip(axes.flat, stats):
        refs: dict[str, float] = {}
        for label, df in frames.items():
            if name not in df:
                continue
            line, = ax.plot(df["step"], df[name], marker=".", label=label)
            prefix = name.split("_")[0]
            marks = _warning_marks(Path(runs[label]), name)
            if marks:  # a std warning carries the std; the panel shows std * sqrt(D)
                scale = float(df[f"{prefix}_dim"].iloc[-1]) ** 0.5 if name.endswith("_std_ratio") else 1.0
                ax.plot([s for s, _ in marks], [v * scale for _, v in marks], "x", color="red", ms=8)
            monitor = CollapseMonitor(diag_cfg).threshold_lines(df.iloc[-1].dropna().to_dict())
            refs = {"monitor fires": monitor[name]} if name in monitor else {}
            if name.endswith("_std_ratio"):
                refs["healthy 1/sqrt(D)"] = 1.0
            elif name in ("dino_teacher_entropy", "dino_teacher_batch_entropy", "dino_student_entropy",
                          "dino_ce") and "dino_ln_k" in df:
                refs["ln(K)"] = float(df["dino_ln_k"].iloc[-1])
        for text, y in refs.items():
            ax.axhline(y, ls="--", lw=0.8, color="grey")
            ax.annotate(text, (0, y), xycoords=("axes fraction", "data"), fontsize=7, color="grey", va="bottom")
        if name in logy:
            ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(stats):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8,
                   bbox_to_anchor=(0.5, -0.02 * nrows - 0.04))
    fig.tight_layout()
    return fig


def dino_collapse_table(runs: dict[str, str | Path]) -> pd.DataFrame:
    """One row per DINO run, read from its metrics.jsonl and warnings.jsonl: at the last
    diagnostics step the entropy of the teacher's targets per sample and of their batch mean as
    shares of ln K (uniform collapse: both near 1; one prototype: the batch's near 0), the
    KL(teacher || student) at the end and at its lowest, the prototypes in use, and the first
    step at which the monitor flagged each statistic ("" when never)."""
    rows = {}
    for label, run in runs.items():
        df = read_metrics(run)
        df = df[df["kind"] == "diagnostics"]
        last, ln_k = df.iloc[-1], float(df["dino_ln_k"].iloc[-1])
        first: dict[str, int] = {}
        for w in read_warnings(run):
            first.setdefault(w["stat"], int(w["step"]))
        rows[label] = {"step": int(last["step"]), "target entropy / ln K": last["dino_teacher_entropy"] / ln_k,
                       "batch entropy / ln K": last["dino_teacher_batch_entropy"] / ln_k,
                       "KL": float(last["dino_kl"]), "lowest KL": float(df["dino_kl"].min()),
                       "prototypes used": int(last["dino_teacher_prototypes_used"]),
                       "first flagged": ", ".join(f"{k} at {v}" for k, v in sorted(first.items(),
                                                                                  key=lambda kv: kv[1]))}
    return pd.DataFrame.from_dict(rows, orient="index")


def plot_spectra(spectra: dict[str, np.ndarray], ax=None, title: str = "singular values (normalised)"):
    """Singular values divided by the largest, on a log axis, one line per label. Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3))
    for label, s in spectra.items():
        s = np.asarray(s, dtype=np.float64)
        ax.semilogy(np.arange(1, len(s) + 1), np.maximum(s / max(s[0], 1e-30), 1e-12), marker=".", label=label)
    ax.set_xlabel("index")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return ax


# ----------------------------------------------------------------------------------- 04_umap
def segment_similarity_by_distance(chunks: np.ndarray, chunk_track: np.ndarray, chunk_seconds: float):
    """chunks (M, E) chunk embeddings in time order within each track, chunk_track (M,) their
    track. Cosine similarity between two chunks of one track against their distance in time
    (start to start, seconds): a DataFrame (distance_s, mean, std, pairs)."""
    u = np.asarray(chunks, dtype=np.float64)
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
    owner = np.asarray(chunk_track)
    rows = []
    for t in np.unique(owner):
        pos = np.flatnonzero(owner == t)
        if len(pos) < 2:
            continue
        sim = u[pos] @ u[pos].T
        i, j = np.triu_indices(len(pos), k=1)
        rows.append(pd.DataFrame({"distance_s": (j - i) * chunk_seconds, "cosine": sim[i, j]}))
    if not rows:
        return pd.DataFrame(columns=["distance_s", "mean", "std", "pairs"])
    df = pd.concat(rows)
    out = df.groupby("distance_s")["cosine"].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"count": "pairs"})


def family_labels(labels: np.ndarray, tag_names: list[str], family_tags: list[str]) -> np.ndarray:
    """labels (N, K) multi-hot, the tags of one family -> (N,) one name per track for colouring:
    its family tag when it has exactly one, "several" when more, "none" when none."""
    cols = [tag_names.index(t) for t in family_tags if t in tag_names]
    sub = np.asarray(labels)[:, cols] > 0
    names = np.array([family_tags[c] for c in range(len(cols))] if cols else [], dtype=object)
    out = np.full(len(sub), "none", dtype=object)
    count = sub.sum(axis=1)
    out[count == 1] = names[sub[count == 1].argmax(axis=1)] if (count == 1).any() else []
    out[count > 1] = "several"
    return out


def umap_coordinates(x: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """(N, E) -> (N, 2) UMAP (McInnes et al. 2018, umap-learn) of the L2-normalised rows.

    Euclidean distance on the sphere ranks neighbours as the cosine does, and umap-learn's
    euclidean kernels are compiled once and cached by numba, while its cosine path recompiles in
    every new process (about 8 s on 2 cores). Random initialisation: the spectral one compiles
    more and fails on tiny or degenerate (collapsed) sets. n_neighbors is capped below N so the
    smoke splits work."""
    x = np.asarray(x, dtype=np.float64)
    x = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    k = max(2, min(n_neighbors, len(x) - 1))
    return umap.UMAP(n_neighbors=k, metric="euclidean", random_state=seed, n_jobs=1, init="random").fit_transform(x)


MAP_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def map_styles(categories: list[str]) -> dict[str, tuple[tuple[float, ...], str]]:
    """{category: (colour, marker)} for a scatter of many classes: seaborn's colour-blind palette
    (10 colours) crossed with 7 markers, so neighbouring classes differ in both and no two of the
    first 70 share a pair; "none" is light grey and "several" black, whatever their position."""
    palette = sns.color_palette("colorblind", 10)
    named = [c for c in categories if c not in ("none", "several")]
    styles = {c: (tuple(palette[i % 10]), MAP_MARKERS[i % len(MAP_MARKERS)]) for i, c in enumerate(named)}
    styles.update({"none": ((0.8, 0.8, 0.8), ".")} if "none" in categories else {})
    styles.update({"several": ((0.0, 0.0, 0.0), "x")} if "several" in categories else {})
    return styles


def plot_maps(coords: dict[str, np.ndarray], colour: np.ndarray, title: str = ""):
    """Side-by-side scatter plots of 2-d maps {label: (N, 2)}, one category per point (N,) drawn
    with its own colour and marker (`map_styles`). Returns the Figure."""
    styles = map_styles(sorted(set(colour.tolist())))
    fig, axes = plt.subplots(1, len(coords), figsize=(3.2 * len(coords), 3.2), squeeze=False)
    for ax, (label, xy) in zip(axes[0], coords.items()):
        for cat, (rgb, marker) in styles.items():
            m = colour == cat
            ax.scatter(xy[m, 0], xy[m, 1], s=14, color=rgb, marker=marker, label=cat, linewidths=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def nearest_neighbours(x: np.ndarray, query: int, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """x (N, E): the k rows nearest to row ``query`` by cosine similarity (itself excluded),
    as (positions (k,), similarities (k,)), most similar first."""
    u = np.asarray(x, dtype=np.float64)
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
    sim = u @ u[query]
    sim[query] = -np.inf
    order = np.argsort(-sim)[:k]
    return order, sim[order]


# ----------------------------------------------------------------------------------- 00_corpus
def tag_cooccurrence(labels: np.ndarray) -> np.ndarray:
    """(K, K) cosine-normalised co-occurrence of 0/1 tags (N, K): tracks sharing two tags over the
    geometric mean of their counts, 1 on the diagonal of every tag that occurs. Counted in float:
    the stores' uint8 labels would wrap past 255 in a matrix product."""
    y = np.asarray(labels, dtype=np.float64)
    co = y.T @ y
    norm = np.sqrt(np.outer(np.diag(co), np.diag(co)))
    return np.divide(co, norm, out=np.zeros_like(co), where=norm > 0)


def plot_score(score: dict[str, Any], ax=None, seconds: float | None = None):
    """Piano roll of a track's score, one lane per instrument (its pitch range stretched to the
    lane, drums by GM number), so no part hides another: parts that share a register (organ,
    guitar and brass) would cover each other on one pitch axis. Returns the Axes."""
    ax = ax or plt.gca()
    colours = dict(zip(INSTRUMENT_TAGS, plt.cm.tab20.colors))
    lanes = [inst for inst in score["instruments"]
             if any(e[3] == inst and (seconds is None or e[0] < seconds) for e in score["events"])]
    for k, inst in enumerate(lanes):
        ev = np.array([e[:3] for e in score["events"] if e[3] == inst and (seconds is None or e[0] < seconds)], float)
        low, high = ev[:, 2].min(), max(ev[:, 2].max(), ev[:, 2].min() + 11)
        y = k + 0.05 + 0.85 * (ev[:, 2] - low) / (high - low)
        ax.barh(y, ev[:, 1], left=ev[:, 0], height=0.06, color=colours[inst], align="edge")
        ax.axhline(k, color="grey", lw=0.3)
    key = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")[score["key"] % 12]
    ax.set_yticks([k + 0.5 for k in range(len(lanes))], lanes)
    ax.set_ylim(0, max(len(lanes), 1))
    ax.set(xlabel="time (s)", ylabel="instrument (pitch rises within its lane)",
           title=f"{score['style']}, {score['tempo']:.0f} bpm, {key} {score['mode']}")
    return ax


# ----------------------------------------------------------------------------------- 01_augmentations
def preview(clips: dict[str, Tensor], sample_rate: int, frontend: nn.Module | None = None,
            players: bool = True) -> None:
    """Show named clips one row each: waveform and log-mel side by side, one colour scale for all
    rows (levels compare), and with ``players`` each waveform's audio player beside its row.

    A value is a waveform (S,) (its mel comes from ``frontend``) or a mel (1, F, T) / (F, T)
    (spectrogram augmentations: no waveform, no player). With players the rows are one HTML
    table (a PNG and a player per row), so a player sits next to what it plays in JupyterLab and
    in the HTML copies alike.
    """
    clips = {name: clip.detach().float().cpu() for name, clip in clips.items()}
    with torch.no_grad():
        mels = {name: (c if c.dim() > 1 else frontend(c[None])[0] if frontend is not None else None)
                for name, c in clips.items()}
    shown = [m for m in mels.values() if m is not None]
    top = max(m.max().item() for m in shown) if shown else 0.0
    has_wave = any(c.dim() == 1 for c in clips.values())
    if not (players and has_wave):
        fig = _clip_rows(clips, mels, sample_rate, top, has_wave)
        display(fig)
        plt.close(fig)
        return
    rows = []
    for name, clip in clips.items():
        fig = _clip_rows({name: clip}, {name: mels[name]}, sample_rate, top, has_wave, height=1.6)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        image = base64.b64encode(buf.getvalue()).decode("ascii")
        player = ""
        if clip.dim() == 1:  # keep loudness audible (gain); rescale only what would clip
            wave = clip.numpy()
            player = Audio(wave, rate=sample_rate, normalize=bool(abs(wave).max() > 1))._repr_html_()
        rows.append(f'<tr><td style="padding:0"><img src="data:image/png;base64,{image}"/></td>'
                    f'<td style="vertical-align:middle;text-align:left">{player}</td></tr>')
    display(HTML("<table>" + "".join(rows) + "</table>"))


def _clip_rows(clips: dict[str, Tensor], mels: dict[str, Tensor | None], sample_rate: int, top: float,
               has_wave: bool, height: float = 1.9):
    """The figure of `preview`: one row per clip, waveform (when any) and log-mel from ``top``
    down 80 dB."""
    fig, axes = plt.subplots(len(clips), 2 if has_wave else 1, figsize=(9 if has_wave else 6.5, height * len(clips)),
                             squeeze=False, gridspec_kw={"width_ratios": [1, 1.3]} if has_wave else None)
    for (name, clip), row in zip(clips.items(), axes):
        ax_mel = row[-1]
        if has_wave and clip.dim() == 1:
            t = torch.arange(clip.numel()) / sample_rate
            peak = max(clip.abs().max().item(), 1e-3)
            row[0].plot(t.numpy(), clip.numpy(), lw=0.3)
            row[0].set_xlim(0, t[-1].item())
            row[0].set_ylim(-1.05 * peak, 1.05 * peak)
            row[0].set_xlabel("seconds", fontsize=8)
        elif has_wave:
            row[0].axis("off")
        row[0].set_title(name, fontsize=9, loc="left")
        if mels[name] is not None:
            ax_mel.imshow(mels[name].reshape(-1, mels[name].shape[-1]).numpy(), origin="lower", aspect="auto",
                          cmap="magma", vmin=top - 80.0, vmax=top)
        ax_mel.set_xticks([])
        ax_mel.set_yticks([])
        ax_mel.set_xlabel("log-mel: time →, frequency ↑ (one colour scale for every row)", fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------- 02_pretraining
class LiveLossPlot:
    """Loss-vs-step curves of several runs in one matplotlib figure, redrawn while they train; each
    run's loss divided by the magnitude of its first logged value, so methods whose losses live on
    different scales share one axis and their shapes compare.

    ``live.callback(label)`` is a ``pretrain`` callback; ``live.show(label, run_dir)`` draws a
    finished (or reused) run from its metrics.jsonl. Redraws at most every ``every_s`` seconds.
    """

    def __init__(self, every_s: float = 2.0):

        self.fig, self.ax = plt.subplots(figsize=(7, 3.5))
        plt.close(self.fig)  # shown through the display handle only
        self.curves: dict[str, tuple[list[int], list[float]]] = {}
        self.every_s, self.last, self.handle = every_s, 0.0, None

    def callback(self, label: str) -> Callable[[dict], None]:
        def add(row: dict) -> None:
            steps, losses = self.curves.setdefault(label, ([], []))
            steps.append(row["step"])
            losses.append(row["loss"])
            if time.time() - self.last > self.every_s:
                self.draw()
        return add

    def show(self, label: str, run_dir: str | os.PathLike) -> None:

        df = read_metrics(run_dir)
        df = df[df["kind"] == "train"]
        self.curves[label] = (list(df["step"]), list(df["loss"]))
        self.draw()

    def draw(self) -> None:

        self.ax.clear()
        for label, (steps, losses) in self.curves.items():
            first = abs(losses[0]) if losses and losses[0] else 1.0
            self.ax.plot(steps, [v / first for v in losses], label=label)
        self.ax.set(xlabel="step", ylabel="loss / |first logged loss|",
                    title="pretraining loss, each method divided by its first value")
        if self.curves:
            self.ax.legend(loc="upper right", fontsize=8)
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)
        self.last = time.time()
