"""The demo job and notebook execution.

`execute_notebook` runs a notebook in a fresh kernel with ``WORKBENCH_PROFILE`` set (the test
suite runs every notebook this way in the ``smoke`` profile) and can write a rendered HTML copy.
`run_demo` is ``make demo``: corpus, the five methods, evaluation, report, rendered notebooks.
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


README_FIGURES = REPO_ROOT / "data" / "readme"


def run_demo(cfg, notebooks: bool = True) -> Path:
    """``make demo``: the corpus, the five methods (and notebook 03's collapse runs), the
    comparison report on the embedded test split and on the transfer set
    (``data/reports/transfer-<profile>``), rendered notebooks.

    Every stage reuses what an earlier run already made (corpus, finished runs, cached
    embeddings), so a second ``make demo`` only re-renders. Stage times go into
    ``demo_timings.json`` beside the report, and the report's figures are copied into
    ``data/readme/`` (tracked) for the README.
    """
    import json
    import shutil
    import time

    from workbench.config import data_dir, to_dict
    from workbench.data import open_dataset
    from workbench.diagnostic_plots import collapse_configs
    from workbench.evaluate import run_evaluation, seed_configs, transfer_config
    from workbench.runs import ensure_runs
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
    runs = ensure_runs(configs + extra)[:len(configs)]
    timings["pretrain"] = time.perf_counter() - t

    t = time.perf_counter()
    out = run_evaluation(cfg, runs, out_dir=None)
    timings["evaluate"] = time.perf_counter() - t

    if cfg.data.dataset == "synth":  # the same encoders on real recorded instruments (workbench.data.transfer)
        t = time.perf_counter()
        run_evaluation(transfer_config(cfg), runs, out_dir=Path(out).parent / f"transfer-{cfg.profile}")
        timings["evaluate:transfer"] = time.perf_counter() - t

    if notebooks:
        for path in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")):
            if path.stem == "07_clustering" and not (study_report_dir(cfg) / "arms.csv").exists():
                print(f"[workbench] {path.name} skipped: it reads the clustering study, which the demo's "
                      f"budget leaves out (make study, about 40 min on 2 cores, then make demo renders it)", flush=True)
                continue
            t = time.perf_counter()
            print(f"[workbench] executing {path.name} (profile {cfg.profile})", flush=True)
            execute_notebook(path, profile=cfg.profile, html_out=Path(out) / "notebooks" / f"{path.stem}.html")
            timings[f"notebook:{path.stem}"] = time.perf_counter() - t
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
