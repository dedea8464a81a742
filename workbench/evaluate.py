"""Downstream evaluation: frozen embeddings, probes, paired bootstrap, limited data, baselines.

One harness treats every encoder the same way: the five SSL runs, a released checkpoint, and
three baselines (`workbench.baselines`: a randomly initialised encoder with calibrated BatchNorm, hand-crafted log-mel statistics, a supervised
encoder trained end to end on the train labels: in the limited-data curves, on the labels of
the draw only). Metrics and the bootstrap live in
`workbench.metrics`, probes in `workbench.probe`, figures in `workbench.plots`.

Embeddings (`workbench.embeddings`, re-exported here): non-overlapping 4 s chunks, last
partial chunk dropped by default, mean-pooled per track, cached on disk by checkpoint hash,
store and split.

Limited data: subsets of the train split are nested within a draw (draw d of 5 % contains draw
d of 1 %): each draw is one seeded ordering of the train tracks and the fraction f takes its first
max(ceil(f N), 2) tracks. ``eval.subset_rule``: "uniform" (the paper: tracks drawn uniformly at
random) or "coverage" (one random positive track of every tag first, tags in random order, then
the rest at random; this over-represents rare-tag tracks at small fractions). Validation and
test stay whole. The interval of a fraction with several draws covers both sources of
variation: each bootstrap resample of the test set is paired with one draw picked at random
(seeded), so draw-to-draw variance widens it (``draw_std`` reports that spread alone).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.config import RunConfig, for_method, config_hash, data_dir, to_dict
from workbench.data.store import AudioStore
from workbench.baselines import BASELINES, baseline_source, supervised_encoder
from workbench.embeddings import (Embeddings, EncoderSource, store_id,
                                  extract_embeddings, extract_segments, resolve_source)
from workbench.methods import METHODS
from workbench.metrics import bootstrap
from workbench.probe import targets, task_of, train_probe
from workbench.runs import device as run_device, ensure_runs, save_npz, save_text

__all__ = ["Embeddings", "EncoderSource", "extract_embeddings", "extract_segments", "resolve_source",
           "limited_data_subsets", "save_subsets", "load_subsets", "baseline_source", "BASELINES",
           "probe_scores", "run_evaluation"]

SPLITS = ("train", "valid", "test")
# ---------------------------------------------------------------------------------------------
# Limited data


SUBSET_RULES = ("uniform", "coverage")


def limited_data_subsets(labels: np.ndarray, fractions: tuple[float, ...], draws: int,
                         seed: int = 0, rule: str = "uniform") -> dict[float, list[np.ndarray]]:
    """Nested, seeded subsets of the train split, as positions into it.

    labels (N, K) multi-label (or (N,) class ids). Returns {fraction: [positions of draw d]};
    fraction 1.0 has one draw (everything). See the module docstring for the two rules.
    """
    if rule not in SUBSET_RULES:
        raise ValueError(f"eval.subset_rule is {rule!r}; expected one of {', '.join(SUBSET_RULES)}")
    labels = np.asarray(labels)
    onehot = labels if labels.ndim == 2 else np.eye(int(labels.max()) + 1, dtype=np.uint8)[labels]
    n = len(onehot)
    orders = []
    for d in range(draws):
        rng = np.random.default_rng([seed, d])
        if rule == "uniform":
            orders.append(rng.permutation(n))
            continue
        first: list[int] = []
        taken = np.zeros(n, bool)
        for k in rng.permutation(onehot.shape[1]):
            cand = np.flatnonzero((onehot[:, k] > 0) & ~taken)
            if cand.size and not onehot[taken, k].any():
                j = int(rng.choice(cand))
                first.append(j)
                taken[j] = True
        orders.append(np.concatenate([np.array(first, np.int64), rng.permutation(np.flatnonzero(~taken))]))
    out: dict[float, list[np.ndarray]] = {}
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"limited-data fraction {f} is not in (0, 1]")
        size = min(n, max(math.ceil(f * n - 1e-9), 2))
        out[float(f)] = [np.arange(n)] if f == 1.0 else [np.sort(o[:size]) for o in orders]
    return out


def draws_and_resamples(per_draw: list[np.ndarray], pick: np.ndarray) -> np.ndarray:
    """(R,) values whose spread covers draws and test resampling: resample r of draw pick[r].

    per_draw: D arrays (R,) of one method's bootstrap values, one per limited-data draw (the same
    test resamples for every draw); pick (R,) draw indices in [0, D)."""
    stacked = np.stack(per_draw)  # (D, R)
    return stacked[pick % len(per_draw), np.arange(stacked.shape[1])]


def save_subsets(path: Path, subsets: dict[float, list[np.ndarray]], train_indices: np.ndarray, **meta) -> Path:
    """Write subsets as JSON: store indices per fraction and draw, with the seed and rule."""
    blob = {"nested": True, "rule": "one seeded ordering per draw; fraction f = first max(ceil(fN), 2)",
            **meta, "subsets": {str(f): [train_indices[p].tolist() for p in ps] for f, ps in subsets.items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_text(path, json.dumps(blob))
    return path


def load_subsets(path: Path) -> dict[float, list[np.ndarray]]:
    """Store indices {fraction: [draw arrays]} as written by `save_subsets`."""
    blob = json.loads(Path(path).read_text())
    return {float(f): [np.asarray(d, np.int64) for d in ds] for f, ds in blob["subsets"].items()}


# ---------------------------------------------------------------------------------------------
# The comparison


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
    """`probe_scores` of each source, in order: `runs.side_by_side` on CPU (each source in a
    spawned process of ``train.threads`` threads, which reopens the store), else one after another."""
    from workbench.locks import worker_results
    from workbench.runs import side_by_side

    workers = side_by_side(cfg, len(sources))
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
    from workbench.data import open_dataset

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


def _labels(sources: list[EncoderSource], seed: int = 0) -> list[str]:
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


def run_evaluation(cfg: RunConfig, runs: list[Path], out_dir: Path | None = None, progress: bool = True) -> Path:
    """Probe, bootstrap and compare every run and baseline; write the report folder.

    ``runs``: run folders or released checkpoints; empty = the five methods of ``cfg`` via
    `workbench.runs.ensure_run`. Writes into ``out_dir`` (default
    ``data_dir()/reports/<dataset>-<profile>/``): results.csv/.md (one row per method, fraction and
    metric), pairs.csv (paired differences on the full train set), limited.csv (per draw),
    bootstrap.npz (per-resample values, keys ``<fraction>|<metric>|<method>``), subsets.json,
    figures (PNG) and report.md with seeds and stage timings.
    """
    from workbench import plots
    from workbench.data import open_dataset

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    store = open_dataset(cfg)
    dataset = cfg.data.dataset
    variant = cfg.data.variant or store.meta.get("variant") or "default"
    out = Path(out_dir) if out_dir else default_report_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    timings["open dataset"] = time.perf_counter() - t0

    t = time.perf_counter()
    if not runs:
        runs = ensure_runs(seed_configs(cfg))
    sources = [resolve_source(r, cfg) for r in runs]
    timings["runs"] = time.perf_counter() - t
    t = time.perf_counter()
    sources += [baseline_source(b, cfg, store) for b in cfg.eval.baselines]
    timings["baselines"] = time.perf_counter() - t
    labels = _labels(sources, cfg.train.seed)

    task = task_of(store)
    train_idx, y_train = store.split_labels("train")
    fractions = tuple(sorted(set(cfg.eval.fractions) | {1.0}))
    subsets = limited_data_subsets(targets(y_train, task), fractions, cfg.eval.draws, cfg.eval.subset_seed,
                                   cfg.eval.subset_rule)
    save_subsets(out / "subsets.json", subsets, train_idx, seed=cfg.eval.subset_seed, draws=cfg.eval.draws,
                 store=store_id(store), subset_rule=cfg.eval.subset_rule)

    t = time.perf_counter()
    scores = dict(zip(labels, all_probe_scores(sources, store, cfg, subsets, progress)))
    timings["embeddings + probes"] = time.perf_counter() - t

    t = time.perf_counter()
    _, y_test = store.split_labels("test")
    y_test = targets(y_test, task)
    rows, limited, arrays = [], [], {}
    for f, draws in subsets.items():
        per_draw = [bootstrap(y_test, {lab: scores[lab][(f, d)] for lab in labels},
                              cfg.eval.bootstrap_resamples, cfg.eval.bootstrap_seed) for d in range(len(draws))]
        if f == 1.0:
            per_draw[0].pairs().to_csv(out / "pairs.csv", index=False)
        pick = np.random.default_rng([cfg.eval.bootstrap_seed, 1]).integers(0, len(draws), cfg.eval.bootstrap_resamples)
        for metric in per_draw[0].metrics:
            for lab, src in zip(labels, sources):
                points = np.array([b.point[metric][lab] for b in per_draw])
                res = draws_and_resamples([b.resamples[metric][lab] for b in per_draw], pick)
                arrays[f"{f}|{metric}|{lab}"] = res
                limited += [dict(method=lab, fraction=f, draw=d, metric=metric, value=v) for d, v in enumerate(points)]
                rows.append(dict(dataset=dataset, variant=variant, split="test", method=lab, fidelity=src.fidelity,
                                 protocol=cfg.probe.protocol, fraction=f, metric=metric, point=points.mean(),
                                 mean=float(np.nanmean(res)), ci_low=float(np.nanpercentile(res, 2.5)),
                                 ci_high=float(np.nanpercentile(res, 97.5)),
                                 n_undefined_tags=per_draw[0].n_undefined_point, draws=len(draws),
                                 draw_std=float(points.std()), checkpoint=src.checkpoint,
                                 checkpoint_hash=src.checkpoint_hash, config_hash=src.config_hash,
                                 probe_hash=config_hash(cfg.probe)))
    table = pd.DataFrame(rows)
    table.to_csv(out / "results.csv", index=False)
    seeds = seed_spread(table)
    if seeds is not None:
        seeds.to_csv(out / "seeds.csv", index=False)
    clean = _clean_label_scores(store, {lab: scores[lab][(1.0, 0)] for lab in labels}, cfg)
    if clean is not None:
        clean.to_csv(out / "results_clean.csv", index=False)
    pd.DataFrame(limited).to_csv(out / "limited.csv", index=False)
    save_npz(out / "bootstrap.npz", **arrays)
    timings["bootstrap"] = time.perf_counter() - t

    t = time.perf_counter()
    figures = {"fig1_dots.png": plots.dot_plot(out), "fig2_limited.png": plots.limited_data_plot(out),
               "paired_differences.png": plots.paired_difference_plot(out)}
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=120, bbox_inches="tight")
        plots.plt.close(fig)
    timings["figures"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    _write_report(out, cfg, table, timings, store)
    return out


def transfer_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` evaluating on the transfer set (`workbench.data.transfer`): full train labels only
    (no limited-data draws, which the embedded corpus's report covers), same probe and bootstrap."""
    from workbench.config import with_dataset

    return dataclasses.replace(with_dataset(cfg, "transfer"), eval=dataclasses.replace(cfg.eval, fractions=(1.0,)))


def existing_report(cfg: RunConfig, runs: list[Path], out_dir: Path | None = None) -> Path | None:
    """The report folder of ``run_evaluation(cfg, runs, out_dir)`` when it is already on disk and
    current (the same config, every run's checkpoint scored, none newer than the report), else
    None. Notebooks read the demo's report through it instead of evaluating a second time."""
    out = Path(out_dir) if out_dir else default_report_dir(cfg)
    results, saved = out / "results.csv", out / "config.json"
    if not (results.is_file() and saved.is_file()) or json.loads(saved.read_text()) != json.loads(json.dumps(to_dict(cfg))):
        return None
    scored = set(pd.read_csv(results, usecols=["checkpoint"]).checkpoint.astype(str))
    for run in runs:
        ckpt = Path(run) / "checkpoint.pt" if Path(run).is_dir() else Path(run)
        if str(ckpt) not in scored or ckpt.stat().st_mtime > results.stat().st_mtime:
            return None
    return out


def evaluation(cfg: RunConfig, runs: list[Path], out_dir: Path | None = None, progress: bool = True) -> Path:
    """`existing_report` when current, else `run_evaluation`."""
    return existing_report(cfg, runs, out_dir) or run_evaluation(cfg, runs, out_dir, progress)


def validation_table(cfg: RunConfig, runs: list[Path], progress: bool = True) -> pd.DataFrame:
    """Model selection without the test split (``python -m workbench validate``): one row per run
    in ``runs`` and per baseline of ``eval.baselines`` but the supervised one, with the macro
    ROC-AUC on the VALID split of the MLP probe trained on the full train split (its best epoch,
    the probe's own early-stopping score: ``valid_mlp``) and of the k-NN probe (k = 10, cosine) of
    the track embeddings (``valid_knn``); for the embedded corpus the same two on the transfer
    set's valid split (``transfer_valid_mlp``, ``transfer_valid_knn``). Test embeddings are never
    computed, so a setting chosen on this table has not seen the test tracks. A single-label
    dataset reports the probe's accuracy and no k-NN figure (NaN)."""
    from workbench.data import open_dataset
    from workbench.probe import knn_probe_auc

    sets = [("", cfg)] + ([("transfer_", transfer_config(cfg))] if cfg.data.dataset == "synth" else [])
    sources = [resolve_source(r, cfg) for r in runs]
    names = [Path(r).name if isinstance(r, (str, Path)) else src.checkpoint for r, src in zip(runs, sources)]
    columns: dict[str, list[float]] = {}
    for prefix, c in sets:
        store = open_dataset(c)
        task = task_of(store)
        here = sources + [baseline_source(b, c, store) for b in c.eval.baselines if b != "supervised"]
        for src in here:
            emb = {s: extract_embeddings(src, store, s, c, progress=progress) for s in ("train", "valid")}
            y = {s: targets(store.labels[emb[s].indices], task) for s in emb}
            probe = train_probe(emb["train"].track, y["train"], emb["valid"].track, y["valid"], c.probe,
                                task=task, n_outputs=store.labels.shape[1], device=run_device(c))
            columns.setdefault(prefix + "valid_mlp", []).append(probe.best_valid)
            columns.setdefault(prefix + "valid_knn", []).append(
                knn_probe_auc(torch.from_numpy(emb["train"].track), y["train"],
                              torch.from_numpy(emb["valid"].track), y["valid"]) if task == "multi_label" else math.nan)
        labels = _labels(here, cfg.train.seed)
    return pd.DataFrame({"encoder": labels, "run": names + [""] * (len(labels) - len(names)), **columns})


def default_report_dir(cfg: RunConfig) -> Path:
    """``data_dir()/reports/<dataset>[-<variant>]-<profile>``."""
    return data_dir() / "reports" / f"{cfg.data.dataset}{'-' + cfg.data.variant if cfg.data.variant else ''}-{cfg.profile}"


def _markdown(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (floats to 4 decimals), without the optional tabulate dependency."""
    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, (float, np.floating)) else str(v)
    head = "| " + " | ".join(map(str, df.columns)) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "\n".join("| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False))


def seed_configs(cfg: RunConfig) -> list[RunConfig]:
    """The runs a comparison needs: every method, ``eval.seeds`` pretraining seeds each
    (``train.seed``, ``train.seed + 1``, ...), in method order then seed order."""
    return [dataclasses.replace(c, train=dataclasses.replace(c.train, seed=cfg.train.seed + k))
            for c in (for_method(cfg, m) for m in METHODS) for k in range(cfg.eval.seeds)]


def seed_spread(table: pd.DataFrame) -> pd.DataFrame | None:
    """Full-data rows of methods with several pretraining seeds (labels ``m``, ``m@s1``, ...):
    per method and metric the mean over seeds, their standard deviation and range, beside the
    first seed's bootstrap interval, so a method difference can be told from seed noise. None
    when every method has one seed."""
    full = table[table.fraction == 1.0].assign(base=lambda d: d.method.str.replace(r"@s\d+$", "", regex=True))
    rows = []
    for (base, metric), g in full.groupby(["base", "metric"], sort=False):
        if len(g) < 2:
            continue
        first = g[g.method == base]
        rows.append(dict(method=base, metric=metric, seeds=len(g), mean_over_seeds=g.point.mean(),
                         seed_std=g.point.std(ddof=1), seed_min=g.point.min(), seed_max=g.point.max(),
                         bootstrap_ci_low=float(first.ci_low.iloc[0]) if len(first) else float("nan"),
                         bootstrap_ci_high=float(first.ci_high.iloc[0]) if len(first) else float("nan")))
    return pd.DataFrame(rows) if rows else None


def _clean_label_scores(store: AudioStore, scores: dict[str, np.ndarray], cfg: RunConfig) -> pd.DataFrame | None:
    """Full-data test scores against the CLEAN tags (the embedded corpus keeps the tags before
    label dropout in ``tags_clean``): what the encoders know, beside the weak-label (MTAT-like)
    scores of results.csv. None for a store without clean tags."""
    if "tags_clean" not in store.tracks.columns:
        return None
    from workbench.data.corpus import clean_labels

    test_idx, _ = store.split_labels("test")
    b = bootstrap(clean_labels(store)[test_idx], scores, cfg.eval.bootstrap_resamples, cfg.eval.bootstrap_seed)
    return pd.DataFrame([dict(method=m, labels="clean", metric=k, point=b.point[k][m],
                              ci_low=float(np.nanpercentile(b.resamples[k][m], 2.5)),
                              ci_high=float(np.nanpercentile(b.resamples[k][m], 97.5)))
                         for k in b.metrics for m in scores])


def _csv_section(out: Path, name: str, title: str) -> str:
    """A report section with the table of ``out/name``; empty when the file was not written."""
    path = out / name
    return f"## {title}\n\n{_markdown(pd.read_csv(path))}\n\n" if path.exists() else ""


def _write_report(out: Path, cfg: RunConfig, table: pd.DataFrame, timings: dict[str, float], store) -> None:
    full = table[table.fraction == 1.0]
    cols = ["method", "fidelity", "metric", "point", "mean", "ci_low", "ci_high", "n_undefined_tags"]
    md_full = _markdown(full[cols])
    lim = table.pivot_table(index=["metric", "method"], columns="fraction", values="point").round(4)
    pairs = pd.read_csv(out / "pairs.csv")
    best = {m: g.loc[g["mean"].idxmax(), "method"] for m, g in full.groupby("metric")}
    pairs = pairs[[best.get(m) == b for m, b in zip(pairs.metric, pairs.method_b)]]
    text = f"""# Downstream comparison: {cfg.data.dataset} ({cfg.profile} profile)

Store: `{store.root}` ({len(store.indices('train'))} train / {len(store.indices('valid'))} valid /
{len(store.indices('test'))} test tracks, {store.labels.shape[1]} tags). Probe protocol: `{cfg.probe.protocol}`
(hidden {cfg.probe.hidden}, dropout {cfg.probe.dropout}, Adam lr {cfg.probe.lr}, up to {cfg.probe.max_epochs}
epochs, patience {cfg.probe.patience}). Bootstrap: {cfg.eval.bootstrap_resamples} paired resamples of the test
tracks; interval = 2.5/97.5 percentiles.

Seeds: corpus {cfg.corpus.seed}, pretraining {cfg.train.seed}, probe {cfg.probe.seed}, bootstrap
{cfg.eval.bootstrap_seed}, limited-data subsets {cfg.eval.subset_seed}, baselines {cfg.eval.baseline_seed}.

## Full training data

{md_full}

![dot plot](fig1_dots.png)

![paired differences](paired_differences.png)

{_csv_section(out, "results_clean.csv", "Full training data, scored against the clean tags (before label dropout)")}\
{_csv_section(out, "seeds.csv", "Pretraining seeds (full data): spread over seeds beside the first seed's bootstrap interval")}\
## Limited data (point estimate, mean over draws)

{_markdown(lim.reset_index())}

![limited data](fig2_limited.png)

## Paired differences to the best method (full data; p_a_better = share of resamples where a beats b)

All ordered pairs are in pairs.csv.

{_markdown(pairs)}

## Stage timings (s)

{_markdown(pd.Series(timings).round(1).rename('seconds').rename_axis('stage').reset_index())}

Files: results.csv/.md, pairs.csv, limited.csv, bootstrap.npz, subsets.json, figures.
Config hash {config_hash(cfg)}; full config in config.json.
"""
    (out / "results.md").write_text(_markdown(table))
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    (out / "report.md").write_text(text)
