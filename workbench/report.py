"""The demo job and notebook execution.

`execute_notebook` runs a notebook in a fresh kernel with ``WORKBENCH_PROFILE`` set (the test
suite runs every notebook this way in the ``smoke`` profile) and can write a rendered HTML copy.
`run_demo` is ``make demo``: corpus, the five methods, evaluation, report, rendered notebooks.
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench.config import REPO_ROOT

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
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
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
        html_out.parent.mkdir(parents=True, exist_ok=True)
        tmp = html_out.with_suffix(".html.tmp")
        tmp.write_text(body, encoding="utf-8")
        tmp.replace(html_out)
    return nb
