"""The demo job, ``make demo`` (and ``make notebooks``): a short list of named stages.

`run_demo(cfg)`: build the corpus, pretrain the five methods (side by side on CPU cores), then
evaluate them on the embedded test split and, beside it in a second process, on the transfer
set; record the stage times and the machine; publish the figures and the stamped tables the
README reads (`workbench.results`). With
``notebooks`` (``make notebooks``): notebook 03's collapse runs join the training queue and
every notebook is executed into HTML; that job records its own times.
"""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import torch

from workbench.baselines import supervised_encoder
from workbench.config import RunConfig, collapse_configs, to_dict
from workbench.data.datasets import open_dataset
from workbench.evaluate import (
    default_report_dir,
    existing_report,
    reuse_or_evaluate,
    run_evaluation,
    seed_configs,
    transfer_config,
)
from workbench.files import save_text
from workbench.jobs import ensure_runs
from workbench.notebooks import execute_notebooks, notebook_paths
from workbench.report import StageTimes
from workbench.results import README_FIGURES, RESULTS_DIR, in_repository, machine, publish, write_documents
from workbench.runs import cpu_jobs
from workbench.study import published_dir as study_published_dir, report_dir as study_report_dir
from workbench.workers import beside

TIMINGS = {False: "demo_timings.json", True: "notebooks_timings.json"}  # make demo | make notebooks


def run_demo(cfg: RunConfig, notebooks: bool = False) -> Path:
    """``make demo``: the corpus, the five methods, the comparison report on the embedded test
    split and on the transfer set (``data/reports/transfer-<profile>``). With ``notebooks``
    (``make notebooks``) also notebook 03's collapse runs, in the same training queue, and every
    notebook executed into ``<report>/notebooks/<name>.html``.

    Every stage reuses what an earlier run already made (corpus, finished runs, cached
    embeddings, a current report), so a second ``make demo`` only re-renders. Stage times go
    into ``demo_timings.json`` beside the report (``notebooks_timings.json`` for ``make
    notebooks``, so the demo's record is kept), and the report's figures are copied into
    ``data/readme/`` (tracked) for the README.
    """
    times = StageTimes()
    with times("corpus"):
        print(open_dataset(cfg), flush=True)
    with times("pretrain"):
        runs = pretrain_all(cfg, notebooks)
    with times("evaluate"):
        out = evaluate_both(cfg, runs, times)
    if notebooks:
        with times("notebooks"):
            times.update(render_notebooks(cfg, out))
    write_timings(cfg, out / TIMINGS[notebooks], times.total(), runs)
    publish_for_readme(cfg, out)
    print("[workbench] stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.total().items()), flush=True)
    return out


def pretrain_all(cfg: RunConfig, notebooks: bool) -> list[Path]:
    """Every method, ``eval.seeds`` seeds each (`evaluate.seed_configs`); with ``notebooks``
    notebook 03's collapse runs join the same queue, so on CPU no core idles while the last of
    the five methods trains. Then, on the core the last run leaves idle: the supervised baseline
    and the transfer set, which the evaluations would otherwise make first (cached; reused there)."""
    configs = seed_configs(cfg)
    extra = list(collapse_configs(cfg).values()) if notebooks else []
    then = [partial(cache_supervised, cfg)] if "supervised" in cfg.eval.baselines else []
    if cfg.data.dataset == "synth":
        then.append(partial(cache_dataset, transfer_config(cfg)))
    return ensure_runs(configs + extra, then=then)[:len(configs)]


def evaluate_both(cfg: RunConfig, runs: list[Path], times: StageTimes) -> Path:
    """The report of the embedded test split and, for the embedded corpus, the transfer set's.

    On CPU with ``train.threads`` set the transfer set is evaluated in its own process beside
    the embedded split's, whose one-process stages (baselines, bootstrap, figures) would
    otherwise leave a core idle; both processes then run ``train.threads`` threads (two 2-thread
    jobs on 2 cores each step 5-10x slower than alone: OpenMP threads spinning against each
    other). A report already current for these runs and this config is reused
    (`evaluate.reuse_or_evaluate`), so ``make notebooks`` after ``make demo`` evaluates nothing."""
    job = None
    if cfg.data.dataset == "synth":
        job = (transfer_config(cfg), runs, default_report_dir(cfg).parent / f"transfer-{cfg.profile}")
        job = None if existing_report(*job) else job
    transfer, threads = None, torch.get_num_threads()
    if job and cpu_jobs(cfg, 2) > 1:
        transfer = beside(_evaluate_quietly, job)
        torch.set_num_threads(cfg.train.threads)
    try:
        out = reuse_or_evaluate(cfg, runs, out_dir=None)
        if job is None:
            return out
        with times("evaluate:transfer"):
            if transfer is None:
                run_evaluation(*job)
            else:
                transfer.join()
                if transfer.exitcode != 0:
                    raise RuntimeError(f"the transfer set's evaluation failed (exit code {transfer.exitcode}, "
                                       f"its error above); make demo again reuses every finished run")
        return out
    finally:
        torch.set_num_threads(threads)
        if transfer is not None and transfer.is_alive():
            transfer.kill()


def render_notebooks(cfg: RunConfig, out: Path) -> dict[str, float]:
    """Every notebook executed into ``<out>/notebooks/<name>.html``, side by side like the runs
    (a notebook is mostly one thread of Python: kernel start, plotting; notebook 04's UMAP alone
    is a third of the stage). Notebook 07 reads the clustering study, this machine's or the one
    published in results/: skipped when neither exists (the demo's budget leaves the study out)."""
    paths = notebook_paths()
    if not any((d / "arms.csv").exists() for d in (study_report_dir(cfg), study_published_dir(cfg))):
        print("[workbench] 07_clustering.ipynb skipped: it reads the clustering study, which the demo's "
              "budget leaves out (make study, about 20 min on 2 cores, then make notebooks renders it)", flush=True)
        paths = [p for p in paths if p.stem != "07_clustering"]
    workers = cpu_jobs(cfg, len(paths))
    seconds = execute_notebooks(paths, cfg.profile, Path(out) / "notebooks", workers,
                                threads=cfg.train.threads if workers > 1 else 0)
    return {f"notebook:{stem}": s for stem, s in seconds.items()}


def publish_for_readme(cfg: RunConfig, out: Path) -> None:
    """When the data folder is the repository's: the report's figures into ``data/readme/`` and its
    tables into ``results/<profile>[-transfer]/`` (`results.publish`, stamped), both tracked; for
    the demo profile also the README's result tables rewritten from those files. Another
    profile's figures are prefixed with its name."""
    if cfg.data.dataset != "synth" or not in_repository():
        return
    README_FIGURES.mkdir(parents=True, exist_ok=True)
    prefix = "" if cfg.profile == "demo" else f"{cfg.profile}_"
    for png in Path(out).glob("*.png"):
        shutil.copy2(png, README_FIGURES / f"{prefix}{png.name}")
    transfer = Path(out).parent / f"transfer-{cfg.profile}"
    for name in ("fig1_dots.png", "paired_differences.png"):  # full labels only: no limited-data curve
        if (transfer / name).is_file():
            shutil.copy2(transfer / name, README_FIGURES / f"{prefix}transfer_{name}")
    command = "make demo" if cfg.profile == "demo" else f"WORKBENCH_PROFILE={cfg.profile} make demo"
    publish(out, cfg.profile, cfg.profile, command)
    if (transfer / "results.csv").is_file():
        publish(transfer, f"{cfg.profile}-transfer", cfg.profile, command)
    if cfg.profile == "demo" and (RESULTS_DIR / "tuning-demo" / "chosen.csv").is_file():
        write_documents()
        print("[workbench] README.md and docs/results.md tables rewritten from results/ (git diff)", flush=True)


def write_timings(cfg: RunConfig, path: Path, timings: dict[str, float], runs: list[Path]) -> None:
    """The job's stage times, seeds, runs, config and the machine that ran it (CPU model, cores,
    torch threads): training figures differ in the third decimal from one CPU type to another."""
    summary = {"profile": cfg.profile, "machine": machine(),
               "seeds": {"corpus": cfg.corpus.seed, "train": cfg.train.seed, "probe": cfg.probe.seed,
                         "bootstrap": cfg.eval.bootstrap_seed, "subsets": cfg.eval.subset_seed},
               "timings_s": {k: round(v, 1) for k, v in timings.items()}, "runs": [str(r) for r in runs],
               "config": to_dict(cfg)}
    save_text(path, json.dumps(summary, indent=2))


# ----------------------------------------------------------------------------------- queued jobs
def cache_supervised(cfg: RunConfig) -> str:
    """A `jobs.ensure_runs` job: ``cfg``'s dataset opened (made the first time) and its supervised
    baseline trained into the cache (`baselines.supervised_encoder`) at ``train.threads`` threads,
    where `run_evaluation` then finds it. Returns its name for the log."""
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    supervised_encoder(cfg, open_dataset(cfg), progress=False)
    return f"supervised baseline ({cfg.data.dataset})"


def cache_dataset(cfg: RunConfig) -> str:
    """A `jobs.ensure_runs` job: ``cfg``'s dataset made (the transfer set rendered) if missing."""
    open_dataset(cfg)
    return f"{cfg.data.dataset} set"


def _evaluate_quietly(cfg: RunConfig, runs: list[Path], out_dir: Path) -> None:
    torch.set_num_threads(cfg.train.threads)
    run_evaluation(cfg, runs, out_dir=out_dir, progress=False)
    print(f"[workbench] {cfg.data.dataset} report written: {out_dir}", flush=True)
