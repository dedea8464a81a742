"""The demo job and notebook execution.

`execute_notebook` runs a notebook in a fresh kernel with ``WORKBENCH_PROFILE`` set (the test
suite runs every notebook this way in the ``smoke`` profile) and can write a rendered HTML copy.
`run_demo` is ``make demo``: corpus, the five methods, evaluation, reports (and, as ``make
notebooks``, the collapse runs and every notebook rendered, two at a time: `execute_notebooks`).
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench.config import REPO_ROOT
from workbench.runs import save_text

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def execute_notebook(path: Path, profile: str, html_out: Path | None = None, timeout: int = 1800):
    """Execute ``path`` top to bottom in a new kernel (cwd = notebooks/) and return the notebook.

    A failing cell raises ``nbclient.exceptions.CellExecutionError`` naming the cell. With
    ``html_out`` the executed notebook is also written there as HTML (atomically).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("WORKBENCH_PROFILE")
    os.environ["WORKBENCH_PROFILE"] = profile  # inherited by the kernel process
    try:
        # the kernel's own log at ERROR: its start-up warning about TCP transport is noise here
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", extra_arguments=["--log-level=ERROR"],
                                resources={"metadata": {"path": str(Path(path).parent)}})
        client.execute()
    finally:
        if old is None:
            os.environ.pop("WORKBENCH_PROFILE", None)
        else:
            os.environ["WORKBENCH_PROFILE"] = old
    if html_out is not None:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        html_out = Path(html_out)
        save_text(html_out, body)
    return nb


def execute_notebooks(paths: list[Path], profile: str, html_dir: Path, workers: int = 1,
                      threads: int = 0) -> dict[str, float]:
    """`execute_notebook` each of ``paths`` (HTML copies ``html_dir/<stem>.html``), ``workers`` at
    a time, each in its own spawned process (killed with this one) whose kernel runs ``threads``
    threads (0: the default); returns {stem: seconds}, in the order of ``paths``. A failing
    notebook raises ``RuntimeError`` naming it and the cell's error, once every started one ended."""
    from workbench.locks import worker_results

    items = [(str(p), profile, str(Path(html_dir) / f"{Path(p).stem}.html"), threads) for p in paths]
    seconds = {}
    with worker_results(_execute_timed, items, workers, min_items=2, start="spawn") as results:
        for (path, *_), (took, error) in zip(items, results):
            if error:
                raise RuntimeError(f"notebook {Path(path).name} failed: {error}")
            seconds[Path(path).stem] = took
    return seconds


def _execute_timed(item: tuple) -> tuple[float, str]:
    import time

    path, profile, html_out, threads = item
    if threads:  # inherited by the kernel: torch and NumPy size their pools from it at import
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    print(f"[workbench] executing {Path(path).name} (profile {profile})", flush=True)
    t = time.perf_counter()
    try:
        execute_notebook(Path(path), profile=profile, html_out=Path(html_out))
    except Exception as e:  # a failing cell: its message (the cell and its traceback) goes back to the parent
        return time.perf_counter() - t, f"{type(e).__name__}: {e}"
    return time.perf_counter() - t, ""


def cache_supervised(cfg) -> str:
    """A `runs.ensure_runs` job: ``cfg``'s dataset opened (made the first time) and its supervised
    baseline trained into the cache (`baselines.supervised_encoder`) at ``train.threads`` threads,
    where `run_evaluation` then finds it. Returns its name for the log."""
    import torch

    from workbench.baselines import supervised_encoder
    from workbench.data import open_dataset

    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    supervised_encoder(cfg, open_dataset(cfg), progress=False)
    return f"supervised baseline ({cfg.data.dataset})"


def cache_dataset(cfg) -> str:
    """A `runs.ensure_runs` job: ``cfg``'s dataset made (the transfer set rendered) if missing."""
    from workbench.data import open_dataset

    open_dataset(cfg)
    return f"{cfg.data.dataset} set"


def _evaluate_quietly(cfg, runs: list[Path], out_dir: Path) -> None:
    import torch

    from workbench.evaluate import run_evaluation

    torch.set_num_threads(cfg.train.threads)
    run_evaluation(cfg, runs, out_dir=out_dir, progress=False)
    print(f"[workbench] {cfg.data.dataset} report written: {out_dir}", flush=True)


README_FIGURES = REPO_ROOT / "data" / "readme"


def run_demo(cfg, notebooks: bool = False) -> Path:
    """``make demo``: the corpus, the five methods, the comparison report on the embedded test
    split and on the transfer set (``data/reports/transfer-<profile>``). With ``notebooks``
    (``make notebooks``) also notebook 03's collapse runs, in the same training queue, and every
    notebook executed into ``<report>/notebooks/<name>.html``.

    Every stage reuses what an earlier run already made (corpus, finished runs, cached
    embeddings), so a second ``make demo`` only re-renders. Stage times go into
    ``demo_timings.json`` beside the report, and the report's figures are copied into
    ``data/readme/`` (tracked) for the README.
    """
    import json
    import shutil
    import time
    from functools import partial

    import torch

    from workbench.config import data_dir, to_dict
    from workbench.data import open_dataset
    from workbench.diagnostic_plots import collapse_configs
    from workbench.evaluate import (default_report_dir, evaluation, existing_report, run_evaluation, seed_configs,
                                    transfer_config)
    from workbench.locks import beside
    from workbench.runs import ensure_runs, side_by_side
    from workbench.study import report_dir as study_report_dir

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    store = open_dataset(cfg)
    timings["corpus"] = time.perf_counter() - t0
    print(store, flush=True)

    t = time.perf_counter()
    configs = seed_configs(cfg)  # every method, eval.seeds pretraining seeds each
    # notebook 03's collapse runs join the same queue (longest first): side by side on CPU no
    # core idles while the last of the five methods trains
    extra = list(collapse_configs(cfg).values()) if notebooks else []
    # then, on the core the last run leaves idle: the supervised baseline and the transfer set,
    # which the evaluations would otherwise make first (cached; reused there)
    then = [partial(cache_supervised, cfg)] if "supervised" in cfg.eval.baselines else []
    if cfg.data.dataset == "synth":
        then.append(partial(cache_dataset, transfer_config(cfg)))
    runs = ensure_runs(configs + extra, then=then)[:len(configs)]
    timings["pretrain"] = time.perf_counter() - t

    # the same encoders on real recorded instruments (workbench.data.transfer); on CPU with
    # `train.threads` set it is evaluated in its own process beside the embedded test split's,
    # whose one-process stages (baselines, bootstrap, figures) would otherwise leave a core
    # idle. Both processes then run `train.threads` threads: two 2-thread trainings on 2 cores
    # each step 5-10x slower than alone (OpenMP threads spinning against each other)
    # A report already current for these runs and this config is reused (`evaluation`), so
    # make notebooks after make demo, or a second make demo, does not evaluate again.
    t = time.perf_counter()
    transfer, threads = None, torch.get_num_threads()
    job = None
    if cfg.data.dataset == "synth":
        transfer_job = (transfer_config(cfg), runs, default_report_dir(cfg).parent / f"transfer-{cfg.profile}")
        job = None if existing_report(*transfer_job) else transfer_job
        if job and side_by_side(cfg, 2) > 1:
            transfer = beside(_evaluate_quietly, job)
            torch.set_num_threads(cfg.train.threads)
    try:
        out = evaluation(cfg, runs, out_dir=None)
        timings["evaluate"] = time.perf_counter() - t
        if job:
            if transfer is None:
                run_evaluation(*job)
            else:
                transfer.join()
                if transfer.exitcode != 0:
                    raise RuntimeError(f"the transfer set's evaluation failed (exit code {transfer.exitcode}, "
                                       f"its error above); make demo again reuses every finished run")
            timings["evaluate:transfer"] = time.perf_counter() - t
    finally:
        torch.set_num_threads(threads)
        if transfer is not None and transfer.is_alive():
            transfer.kill()

    if notebooks:
        paths = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
        if not (study_report_dir(cfg) / "arms.csv").exists():
            print("[workbench] 07_clustering.ipynb skipped: it reads the clustering study, which the demo's "
                  "budget leaves out (make study, about 40 min on 2 cores, then make notebooks renders it)", flush=True)
            paths = [p for p in paths if p.stem != "07_clustering"]
        # side by side like the runs (`runs.side_by_side`): a notebook is mostly one thread of
        # Python (kernel start, plotting), notebook 04's UMAP alone is a third of the stage
        t = time.perf_counter()
        workers = side_by_side(cfg, len(paths))
        seconds = execute_notebooks(paths, cfg.profile, Path(out) / "notebooks", workers,
                                    threads=cfg.train.threads if workers > 1 else 0)
        timings.update({f"notebook:{stem}": s for stem, s in seconds.items()})
        timings["notebooks"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    summary = {"profile": cfg.profile, "seeds": {"corpus": cfg.corpus.seed, "train": cfg.train.seed,
               "probe": cfg.probe.seed, "bootstrap": cfg.eval.bootstrap_seed, "subsets": cfg.eval.subset_seed},
               "timings_s": {k: round(v, 1) for k, v in timings.items()}, "runs": [str(r) for r in runs],
               "config": to_dict(cfg)}
    (Path(out) / "demo_timings.json").write_text(json.dumps(summary, indent=2))
    if cfg.data.dataset == "synth" and Path(data_dir()) == (REPO_ROOT / "data").resolve():
        README_FIGURES.mkdir(parents=True, exist_ok=True)
        prefix = "" if cfg.profile == "demo" else f"{cfg.profile}_"  # the laptop profile's beside the demo's
        for png in Path(out).glob("*.png"):
            shutil.copy2(png, README_FIGURES / f"{prefix}{png.name}")
        transfer = Path(out).parent / f"transfer-{cfg.profile}"
        for name in ("fig1_dots.png", "paired_differences.png"):  # full labels only: no limited-data curve
            if (transfer / name).is_file():
                shutil.copy2(transfer / name, README_FIGURES / f"{prefix}transfer_{name}")
    print("[workbench] stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()), flush=True)
    return Path(out)
