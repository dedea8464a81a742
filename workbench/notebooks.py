"""Notebooks executed top to bottom in fresh kernels, with rendered HTML copies.

`execute_notebook` runs a notebook in a fresh kernel with ``WORKBENCH_PROFILE`` set (the test
suite runs every notebook this way in the ``smoke`` profile) and can write a rendered HTML copy;
`execute_notebooks` runs several side by side (``make notebooks``, `workbench.demo.run_demo`).
nbformat, nbclient and nbconvert are imported where they are used: they come with the ``dev``
extra, which a plain install of the package does not need (docs/architecture.md).
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

from workbench.config import REPO_ROOT
from workbench.files import save_text
from workbench.workers import worker_results

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
# Kernels started side by side can race for the same free TCP ports (each client picks its ports
# before its kernel binds them), and the loser dies before answering kernel_info (seen once in
# CI, two notebooks side by side): such a start is retried, never a kernel that ran a cell.
KERNEL_STARTS = 3


def notebook_paths() -> list[Path]:
    """The ordered notebooks, ``notebooks/NN_name.ipynb``."""
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def execute_notebook(path: Path, profile: str, html_out: Path | None = None, timeout: int = 1800):
    """Execute ``path`` top to bottom in a new kernel (cwd = notebooks/) and return the notebook.

    A failing cell raises ``nbclient.exceptions.CellExecutionError`` naming the cell. With
    ``html_out`` the executed notebook is also written there as HTML (atomically).
    """
    # nbformat, nbclient and nbconvert come with the dev extra (the suite, make notebooks): optional
    import nbformat
    from nbclient import NotebookClient

    old = os.environ.get("WORKBENCH_PROFILE")
    os.environ["WORKBENCH_PROFILE"] = profile  # inherited by the kernel process
    try:
        for attempt in range(KERNEL_STARTS):
            nb = nbformat.read(path, as_version=4)
            # the kernel's own log at ERROR: its start-up warning about TCP transport is noise here
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3", extra_arguments=["--log-level=ERROR"],
                                    resources={"metadata": {"path": str(Path(path).parent)}})
            try:
                client.execute()
                break
            except RuntimeError as err:  # a kernel that died at start-up ran no cell: start another
                if "before replying to kernel_info" not in str(err) or attempt == KERNEL_STARTS - 1:
                    raise
    finally:
        if old is None:
            os.environ.pop("WORKBENCH_PROFILE", None)
        else:
            os.environ["WORKBENCH_PROFILE"] = old
    if html_out is not None:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(static_copy(nb))
        html_out = Path(html_out)
        save_text(html_out, body)
    return nb


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
LIVE_ONLY = ("<p><i>Interactive control: it needs a live kernel (make lab). The figures above show "
             "every option.</i></p>")


def static_copy(nb):
    """A copy of an executed notebook for a page without a kernel: a progress bar's widget (a
    stale "74 % 89/120" once the cell ended) is dropped, any other widget (the `controls` panels)
    becomes one line saying it needs a live kernel, instead of the blank space an HTML page gives
    a widget. Every other output is kept as it is."""
    import nbformat  # dev extra (see the module's docstring)

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW not in data:
                outputs.append(out)
            elif "Progress" not in str(data.get("text/plain", "")):
                outputs.append(nbformat.from_dict({**out, "data": {"text/html": LIVE_ONLY,
                                                                    "text/plain": "interactive control"}}))
        if "outputs" in cell:
            cell.outputs = outputs
    return nb


def execute_notebooks(paths: list[Path], profile: str, html_dir: Path, workers: int = 1,
                      threads: int = 0) -> dict[str, float]:
    """`execute_notebook` each of ``paths`` (HTML copies ``html_dir/<stem>.html``), ``workers`` at
    a time, each in its own spawned process (killed with this one) whose kernel runs ``threads``
    threads (0: the default); returns {stem: seconds}, in the order of ``paths``. A failing
    notebook raises ``RuntimeError`` naming it and the cell's error, once every started one ended."""
    items = [(str(p), profile, str(Path(html_dir) / f"{Path(p).stem}.html"), threads) for p in paths]
    seconds = {}
    with worker_results(_execute_timed, items, workers, min_items=2, start="spawn") as results:
        for (path, *_), (took, error) in zip(items, results):
            if error:
                raise RuntimeError(f"notebook {Path(path).name} failed: {error}")
            seconds[Path(path).stem] = took
    return seconds


def _execute_timed(item: tuple) -> tuple[float, str]:

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
