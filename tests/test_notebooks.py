"""Every notebook under notebooks/ is executed, in order, in the smoke profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.notebooks import execute_notebook

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    nb = execute_notebook(path, profile="smoke", html_out=None, timeout=300)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "profile: smoke" in text, "a notebook must print the profile in force at the top"


def test_notebooks_committed_without_outputs() -> None:
    import nbformat

    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"


@pytest.mark.notebook
@pytest.mark.parametrize("stem", ["01_augmentations", "02_pretraining"])
def test_notebook_config_cell_reads_a_real_dataset(stem: str, tmp_path: Path) -> None:
    """The config cell's DATASET/ROOT/VARIANT switch a notebook to an ingested dataset (an MTAT
    split-B fixture tree here) instead of the embedded corpus."""
    import fixtures_datasets as fx
    import nbformat

    root = tmp_path / "mtat"
    fx.make_mtat(root, seconds=12.5)
    path = next(p for p in NOTEBOOKS if p.stem == stem)
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    assert "DATASET, ROOT, VARIANT = None, None, None" in cell.source
    cell.source = cell.source.replace("DATASET, ROOT, VARIANT = None, None, None",
                                      f"DATASET, ROOT, VARIANT = 'mtat', {str(root)!r}, 'B'")
    copy = tmp_path / path.name
    nbformat.write(nb, copy)
    out = execute_notebook(copy, profile="smoke", timeout=300)
    text = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "dataset: mtat-B" in text
    errors = [o for c in out.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.notebook
def test_notebooks_side_by_side_write_html_and_name_a_failure(tmp_path: Path) -> None:
    """`execute_notebooks` with 2 workers: each notebook runs in its own process, its kernel
    with the threads asked for (OMP_NUM_THREADS), its HTML copy written; a notebook whose cell
    raises is named in one RuntimeError with the cell's error."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from workbench.notebooks import execute_notebooks

    def write(name: str, source: str) -> Path:
        path = tmp_path / name
        nbformat.write(new_notebook(cells=[new_code_cell(source)]), path)
        return path

    show = "import os; print('threads', os.environ.get('OMP_NUM_THREADS'))"
    good = [write("a.ipynb", show), write("b.ipynb", show)]
    seconds = execute_notebooks(good, "smoke", tmp_path / "html", workers=2, threads=1)
    assert list(seconds) == ["a", "b"] and all(s > 0 for s in seconds.values())
    for stem in ("a", "b"):
        assert "threads 1" in (tmp_path / "html" / f"{stem}.html").read_text()
    bad = write("c.ipynb", "raise ValueError('no such tag: zither')")
    with pytest.raises(RuntimeError, match=r"(?s)notebook c\.ipynb failed: .*no such tag: zither"):
        execute_notebooks([good[0], bad], "smoke", tmp_path / "html", workers=2, threads=1)


def test_notebook_text_names_no_profile() -> None:
    """A notebook runs in whatever profile is in force: its markdown names none (a code cell
    prints the one in force), so the text cannot describe a run the reader is not looking at."""
    import re

    import nbformat

    from workbench.config import PROFILES

    others = "|".join(p for p in PROFILES if p != "paper")  # "the paper" is the study, not only a profile
    # a profile's name as a word ("the smoke corpus", "`demo`"), except in a command (make demo, --profile demo)
    pattern = re.compile(rf"(?<!make )(?<!--profile )\b({others})\b|\bpaper`?\s+profile|profile\s+`?paper", re.I)
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                assert not pattern.search(cell.source), f"{path.name}: {pattern.search(cell.source).group(0)!r}"


def test_static_copy_drops_progress_bars_and_says_what_a_control_needs() -> None:
    import nbformat

    from workbench.notebooks import LIVE_ONLY, WIDGET_VIEW, static_copy

    def widget(text: str) -> dict:
        return nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "x"}, "text/plain": text})

    figure = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"})
    cell = nbformat.v4.new_code_cell("x", outputs=[widget("HBox(children=(FloatProgress(value=89.0, max=120.0),))"),
                                                   figure, widget("VBox(children=(FloatSlider(value=3.0),))")])
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_markdown_cell("text")])
    out = static_copy(nb).cells[0].outputs
    assert [o.data.get("text/html") for o in out] == [None, LIVE_ONLY]
    assert out[0].data["image/png"] == "iVBOR"
    assert len(nb.cells[0].outputs) == 3  # the executed notebook itself is left as it was
