"""Downstream evaluation: every encoder probed the same way, compared by a paired bootstrap.

One harness treats every encoder alike: the SSL runs, a released checkpoint, and three
baselines (`workbench.baselines`: a randomly initialised encoder with calibrated BatchNorm,
hand-crafted log-mel statistics, a supervised encoder trained end to end on the train labels:
in the limited-data curves, on the labels of the draw only). Embeddings come from
`workbench.embeddings` (non-overlapping 4 s chunks mean-pooled per track, cached), probes from
`workbench.probe`, the limited-data draws from `workbench.subsets`, metrics and the bootstrap
from `workbench.metrics`, figures from `workbench.plots`, the report text from `workbench.report`.

`run_evaluation(cfg, runs)` is a list of stages: open the dataset, resolve the encoders, draw
the subsets, probe every encoder (side by side on CPU), compare (`compare`: bootstrap, results
tables), draw the figures, write the report. It never trains a run: `workbench.jobs.ensure_runs`
makes missing runs before it is called.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench import plots
from workbench.baselines import baseline_source, supervised_encoder
from workbench.config import RunConfig, config_hash, data_dir, for_method, to_dict, with_dataset
from workbench.data.corpus import clean_labels
from workbench.data.datasets import open_dataset
from workbench.data.store import AudioStore
from workbench.embeddings import EncoderSource, extract_embeddings, extract_segments, resolve_source, store_id
from workbench.encoder import count_parameters
from workbench.files import save_npz
from workbench.methods import METHODS
from workbench.metrics import bootstrap, percentile_interval, two_level_resamples
from workbench.probe import targets, task_of, train_probe
from workbench.report import StageTimes, write_report
from workbench.runs import cpu_jobs, device as run_device
from workbench.subsets import limited_data_subsets, save_subsets
from workbench.workers import worker_results

SPLITS = ("train", "valid", "test")
FIGURES = {"fig1_dots.png": plots.dot_plot, "fig2_limited.png": plots.limited_data_plot,
           "paired_differences.png": plots.paired_difference_plot}


# ----------------------------------------------------------------------------------- the stages
def run_evaluation(cfg: RunConfig, runs: list[Path], out_dir: Path | None = None, progress: bool = True) -> Path:
    """Probe, bootstrap and compare every run and baseline; write the report folder.

    ``runs``: run folders or released checkpoints (`workbench.jobs.ensure_runs` makes missing
    runs). Writes into ``out_dir`` (default ``data_dir()/reports/<dataset>-<profile>/``):
    results.csv/.md (one row per method, fraction and metric), pairs.csv (paired differences on
    the full train set), limited.csv (per draw), bootstrap.npz (per-resample values, keys
    ``<fraction>|<metric>|<method>``), subsets.json, figures (PNG) and report.md with seeds and
    stage timings.
    """
    times = StageTimes()
    with times("open dataset"):
        store = open_dataset(cfg)
        out = Path(out_dir) if out_dir else default_report_dir(cfg)
        out.mkdir(parents=True, exist_ok=True)
    with times("runs"):
        sources = [resolve_source(r, cfg) for r in runs]
    with times("baselines"):
        sources += [baseline_source(b, cfg, store) for b in cfg.eval.baselines]
    labels = source_labels(sources, cfg.train.seed)
    subsets = draw_subsets(cfg, store, out)
    with times("embeddings + probes"):
        scores = dict(zip(labels, all_probe_scores(sources, store, cfg, subsets, progress)))
    with times("bootstrap"):
        table = compare(cfg, store, sources, labels, scores, subsets, out)
    with times("figures"):
        draw_figures(out)
    write_report(out, cfg, table, times.total(), store)
    return out


def draw_subsets(cfg: RunConfig, store: AudioStore, out: Path) -> dict[float, list[np.ndarray]]:
    """The limited-data draws of the train split (`workbench.subsets`), saved as subsets.json."""
    train_idx, y_train = store.split_labels("train")
    fractions = tuple(sorted(set(cfg.eval.fractions) | {1.0}))
    subsets = limited_data_subsets(targets(y_train, task_of(store)), fractions, cfg.eval.draws, cfg.eval.subset_seed,
                                   cfg.eval.subset_rule)
    save_subsets(out / "subsets.json", subsets, train_idx, seed=cfg.eval.subset_seed, draws=cfg.eval.draws,
                 store=store_id(store), subset_rule=cfg.eval.subset_rule)
    return subsets


def compare(cfg: RunConfig, store: AudioStore, sources: list[EncoderSource], labels: list[str],
            scores: dict[str, dict[tuple[float, int], np.ndarray]], subsets: dict[float, list[np.ndarray]],
            out: Path) -> pd.DataFrame:
    """The paired bootstrap of every encoder's test scores, per fraction and draw; writes
    results.csv, pairs.csv, seeds.csv, results_clean.csv, families.csv, limited.csv and
    bootstrap.npz and returns the results table."""
    dataset = cfg.data.dataset
    variant = cfg.data.variant or store.meta.get("variant") or "default"
    _, y_test = store.split_labels("test")
    y_test = targets(y_test, task_of(store))
    rows, limited, arrays = [], [], {}
    for f, draws in subsets.items():
        per_draw = [bootstrap(y_test, {lab: scores[lab][(f, d)] for lab in labels},
                              cfg.eval.bootstrap_resamples, cfg.eval.bootstrap_seed) for d in range(len(draws))]
        if f == 1.0:
            per_draw[0].pairs().to_csv(out / "pairs.csv", index=False)
        for metric in per_draw[0].metrics:
            for lab, src in zip(labels, sources):
                points = np.array([b.point[metric][lab] for b in per_draw])
                # the mean over draws, tracks and draws resampled; every encoder draws the same draws
                res = two_level_resamples(np.stack([b.resamples[metric][lab] for b in per_draw]),
                                          [cfg.eval.bootstrap_seed, 1])
                arrays[f"{f}|{metric}|{lab}"] = res
                limited += [dict(method=lab, fraction=f, draw=d, metric=metric, value=v) for d, v in enumerate(points)]
                low, high = percentile_interval(res)
                rows.append(dict(dataset=dataset, variant=variant, split="test", method=lab, fidelity=src.fidelity,
                                 protocol=cfg.probe.protocol, fraction=f, metric=metric, point=points.mean(),
                                 mean=float(np.nanmean(res)), ci_low=low, ci_high=high,
                                 n_undefined_tags=per_draw[0].n_undefined_point, draws=len(draws),
                                 draw_std=float(points.std()), checkpoint=src.checkpoint,
                                 checkpoint_hash=src.checkpoint_hash, config_hash=src.config_hash,
                                 probe_hash=config_hash(cfg.probe), encoder_params=count_parameters(src.encoder),
                                 head_params=src.head_params))
    table = pd.DataFrame(rows)
    table.to_csv(out / "results.csv", index=False)
    seeds = seed_spread(table, arrays, cfg.eval.bootstrap_seed)
    if seeds is not None:
        seeds.to_csv(out / "seeds.csv", index=False)
    full = {lab: scores[lab][(1.0, 0)] for lab in labels}
    clean = clean_label_scores(store, full, cfg)
    if clean is not None:
        clean.to_csv(out / "results_clean.csv", index=False)
    families = family_table(store, y_test, full, cfg)
    if families is not None:
        families.to_csv(out / "families.csv", index=False)
    pd.DataFrame(limited).to_csv(out / "limited.csv", index=False)
    save_npz(out / "bootstrap.npz", **arrays)
    return table


def draw_figures(out: Path) -> None:
    """The report's figures (`FIGURES`), drawn from its files and saved beside them."""
    for name, draw in FIGURES.items():
        fig = draw(out)
        fig.savefig(out / name, dpi=120, bbox_inches="tight")
        plots.plt.close(fig)


# ----------------------------------------------------------------------------------- probing
def probe_scores(src: EncoderSource, store: AudioStore, cfg: RunConfig,
                 subsets: dict[float, list[np.ndarray]], progress: bool = True) -> dict[tuple[float, int], np.ndarray]:
    """Train one probe per (fraction, draw) on the subset of the train split, score the test
    split; returns {(fraction, draw): test scores (N_test, K)}.

    The supervised baseline is the one encoder that sees labels: for a draw below 100 % it is
    retrained on that draw's tracks only (`supervised_encoder` with ``subset``) before its probe.
    """
    if _retrains(src):
        out = {}
        for f, draws in subsets.items():
            for d, pos in enumerate(draws):
                sub_src = src if f == 1.0 else supervised_encoder(cfg, store, progress, subset=pos)
                out[(f, d)] = _probe_scores(sub_src, store, cfg, {f: [pos]}, progress)[(f, 0)]
        return out
    return _probe_scores(src, store, cfg, subsets, progress)


def all_probe_scores(sources: list[EncoderSource], store: AudioStore, cfg: RunConfig,
                     subsets: dict[float, list[np.ndarray]], progress: bool = True) -> list[dict]:
    """`probe_scores` of each source, in order: side by side on CPU (`runs.cpu_jobs`) (each source in a
    spawned process of ``train.threads`` threads, which reopens the store), else one after another."""
    workers = cpu_jobs(cfg, len(sources))
    if workers <= 1:
        threads = torch.get_num_threads()
        if cfg.train.threads and run_device(cfg).type == "cpu":  # the same threads as side by side
            torch.set_num_threads(cfg.train.threads)
        try:
            return [probe_scores(src, store, cfg, subsets, progress) for src in sources]
        finally:
            torch.set_num_threads(threads)
    print(f"[workbench] probing {len(sources)} encoders, {workers} at a time ({cfg.train.threads} thread each)",
          flush=True)
    # longest first: the supervised baseline retrains its encoder for every limited-data draw,
    # so started last it would train alone while the other process idles
    order = sorted(range(len(sources)), key=lambda i: not _retrains(sources[i]))
    with worker_results(_probe_worker, [(sources[i], cfg, subsets) for i in order], workers, min_items=2,
                        start="spawn") as results:
        done = dict(zip(order, results))
    return [done[i] for i in range(len(sources))]


def _retrains(src: EncoderSource) -> bool:
    """Whether `probe_scores` retrains ``src`` for each limited-data draw (the supervised baseline)."""
    return src.name == "supervised" and src.fidelity == "n/a"


def _probe_worker(item: tuple) -> dict:

    src, cfg, subsets = item
    torch.set_num_threads(cfg.train.threads)
    return probe_scores(src, open_dataset(cfg), cfg, subsets, progress=False)


def _probe_scores(src: EncoderSource, store: AudioStore, cfg: RunConfig,
                  subsets: dict[float, list[np.ndarray]], progress: bool = True) -> dict[tuple[float, int], np.ndarray]:
    task = task_of(store)
    emb = {s: extract_embeddings(src, store, s, cfg, progress=progress) for s in SPLITS}
    y = {s: targets(store.labels[emb[s].indices], task) for s in SPLITS}
    if cfg.probe.protocol == "paper-code":
        seg_emb, seg_owner = extract_segments(src, store, "train", cfg, progress=progress)
    out = {}
    for f, draws in subsets.items():
        for d, pos in enumerate(draws):
            if cfg.probe.protocol == "paper-code":
                sel = np.isin(seg_owner, pos)
                x_train, y_train = seg_emb[sel], y["train"][seg_owner[sel]]
            else:
                x_train, y_train = emb["train"].track[pos], y["train"][pos]
            probe = train_probe(x_train, y_train, emb["valid"].track, y["valid"], cfg.probe, task=task,
                                n_outputs=store.labels.shape[1], device=run_device(cfg))
            out[(f, d)] = probe.predict(emb["test"].track)
    return out


def source_labels(sources: list[EncoderSource], seed: int = 0) -> list[str]:
    """Unique table labels: the method name, with ``[variant]`` for a deliberate departure, the
    fidelity when it is not the default, and ``@s<seed>`` for a pretraining seed other than
    ``seed`` (the config's): ``byol[ema0-nopredictor]``, ``dino/paper-code``, ``simclr@s1``."""
    labels = [s.name + (f"[{s.variant}]" if s.variant else "")
              + ("" if s.fidelity in ("reference", "n/a") else f"/{s.fidelity}")
              + ("" if s.seed is None or s.seed == seed else f"@s{s.seed}") for s in sources]
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):
        seen[lab] = seen.get(lab, 0) + 1
        if seen[lab] > 1:
            labels[i] = f"{lab}#{seen[lab]}"
    return labels


# ----------------------------------------------------------------------------------- reports on disk
def transfer_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` evaluating on the transfer set (`workbench.data.transfer`): full train labels only
    (no limited-data draws, which the embedded corpus's report covers), same probe and bootstrap.
    The random floor is reported both ways: ``random`` calibrated on the pretraining corpus, as the
    SSL encoders' BatchNorm was, and ``random-target`` recalibrated on the transfer set's audio."""
    floors = cfg.eval.baselines + (("random-target",) if "random" in cfg.eval.baselines else ())
    return dataclasses.replace(with_dataset(cfg, "transfer"), eval=dataclasses.replace(
        cfg.eval, fractions=(1.0,), pretrain_dataset=cfg.data.dataset, baselines=floors))


def existing_report(cfg: RunConfig, runs: list[Path], out_dir: Path | None = None) -> Path | None:
    """The report folder of ``run_evaluation(cfg, runs, out_dir)`` when it is already on disk and
    current (the same config, every run's checkpoint scored, none newer than the report), else
    None. Notebooks read the demo's report through it instead of evaluating a second time."""
    out = Path(out_dir) if out_dir else default_report_dir(cfg)
    results, saved = out / "results.csv", out / "config.json"
    if (not (results.is_file() and saved.is_file())
            or json.loads(saved.read_text()) != json.loads(json.dumps(to_dict(cfg)))):
        return None
    scored = set(pd.read_csv(results, usecols=["checkpoint"]).checkpoint.astype(str))
    for run in runs:
        ckpt = Path(run) / "checkpoint.pt" if Path(run).is_dir() else Path(run)
        if str(ckpt) not in scored or ckpt.stat().st_mtime > results.stat().st_mtime:
            return None
    return out


def reuse_or_evaluate(cfg: RunConfig, runs: list[Path], out_dir: Path | None = None, progress: bool = True) -> Path:
    """`existing_report` when current, else `run_evaluation`."""
    return existing_report(cfg, runs, out_dir) or run_evaluation(cfg, runs, out_dir, progress)


def default_report_dir(cfg: RunConfig) -> Path:
    """``data_dir()/reports/<dataset>[-<variant>]-<profile>``."""
    return (data_dir() / "reports"
            / f"{cfg.data.dataset}{'-' + cfg.data.variant if cfg.data.variant else ''}-{cfg.profile}")


# ----------------------------------------------------------------------------------- seeds, clean tags
def seed_configs(cfg: RunConfig) -> list[RunConfig]:
    """The runs a comparison needs: every method, ``eval.seeds`` pretraining seeds each
    (``train.seed``, ``train.seed + 1``, ...), in method order then seed order."""
    return [dataclasses.replace(c, train=dataclasses.replace(c.train, seed=cfg.train.seed + k))
            for c in (for_method(cfg, m) for m in METHODS) for k in range(cfg.eval.seeds)]


def seed_spread(table: pd.DataFrame, arrays: dict[str, np.ndarray], seed: int = 0) -> pd.DataFrame | None:
    """Full-data rows of methods with several pretraining seeds (labels ``m``, ``m@s1``, ...):
    per method and metric the mean over seeds with its two-level bootstrap interval (test tracks
    and seeds resampled, `metrics.two_level_resamples`: it narrows as seeds are added), the seeds'
    standard deviation and range, and the first seed's own interval for comparison. ``arrays``:
    the per-resample values of bootstrap.npz. None when every method has one seed."""
    full = table[table.fraction == 1.0].assign(base=lambda d: d.method.str.replace(r"@s\d+$", "", regex=True))
    rows = []
    for i, ((base, metric), g) in enumerate(full.groupby(["base", "metric"], sort=False)):
        if len(g) < 2:
            continue
        values = np.stack([arrays[f"1.0|{metric}|{lab}"] for lab in g.method])  # (seeds, R)
        low, high = percentile_interval(two_level_resamples(values, [seed, 2, i]))
        first = g[g.method == base]
        rows.append(dict(method=base, metric=metric, seeds=len(g), mean_over_seeds=g.point.mean(),
                         ci_low=low, ci_high=high, interval="test tracks and seeds resampled",
                         seed_std=g.point.std(ddof=1), seed_min=g.point.min(), seed_max=g.point.max(),
                         first_seed_ci_low=float(first.ci_low.iloc[0]) if len(first) else float("nan"),
                         first_seed_ci_high=float(first.ci_high.iloc[0]) if len(first) else float("nan")))
    return pd.DataFrame(rows) if rows else None


FLOORS = ("handcrafted", "random", "random-target")  # what every encoder is compared with, by family


def family_table(store: AudioStore, y_test: np.ndarray, scores: dict[str, np.ndarray],
                 cfg: RunConfig) -> pd.DataFrame | None:
    """Results by tag family (``store.tag_families``: style, instrument, mood, tempo, ...): per
    family, encoder and metric, the macro metric over the family's tags of the full-data probe's
    test scores with its bootstrap interval, and the paired difference to each floor of `FLOORS`
    that was evaluated (the same resamples: ``diff_<floor>`` with ``diff_<floor>_ci_low/high``).
    y_test (N, K) weak labels, scores {label: (N, K)}. None for a store without families or a
    single-label task."""
    if y_test.ndim != 2 or not store.tag_families:
        return None
    floors = [f for f in FLOORS if f in scores]
    rows = []
    for family, tags in store.tag_families.items():
        idx = [store.tag_names.index(t) for t in tags if t in store.tag_names]
        if not idx:
            continue
        b = bootstrap(y_test[:, idx], {lab: s[:, idx] for lab, s in scores.items()}, cfg.eval.bootstrap_resamples,
                      cfg.eval.bootstrap_seed)
        for metric in b.metrics:
            for lab in scores:
                low, high = percentile_interval(b.resamples[metric][lab])
                row = dict(family=family, tags=len(idx), method=lab, metric=metric, point=b.point[metric][lab],
                           ci_low=low, ci_high=high, n_undefined_tags=b.n_undefined_point)
                for floor in floors:
                    d = b.resamples[metric][lab] - b.resamples[metric][floor]
                    row[f"diff_{floor}"] = b.point[metric][lab] - b.point[metric][floor]
                    row[f"diff_{floor}_ci_low"], row[f"diff_{floor}_ci_high"] = percentile_interval(d)
                rows.append(row)
    return pd.DataFrame(rows) if rows else None


def clean_label_scores(store: AudioStore, scores: dict[str, np.ndarray], cfg: RunConfig) -> pd.DataFrame | None:
    """Full-data test scores against the CLEAN tags (the embedded corpus keeps the tags before
    label dropout in ``tags_clean``): what the encoders know, beside the weak-label (MTAT-like)
    scores of results.csv. None for a store without clean tags."""
    if "tags_clean" not in store.tracks.columns:
        return None

    test_idx, _ = store.split_labels("test")
    b = bootstrap(clean_labels(store)[test_idx], scores, cfg.eval.bootstrap_resamples, cfg.eval.bootstrap_seed)
    return pd.DataFrame([dict(method=m, labels="clean", metric=k, point=b.point[k][m],
                              **dict(zip(("ci_low", "ci_high"), percentile_interval(b.resamples[k][m]))))
                         for k in b.metrics for m in scores])
