"""Committed results (`workbench.results`): the README's tables are what the stamped files under
results/ say, every number of a README table is found in those files, and publishing keeps no
path of the machine that made them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from workbench import results

ROOT = Path(__file__).resolve().parent.parent


def _numbers_in_results(root: Path) -> set[str]:
    """Every float of every committed table, as the README writes it (3 decimals, no sign)."""
    found: set[str] = set()
    for csv in root.glob("*/*.csv"):
        for col in pd.read_csv(csv).select_dtypes("number"):
            values = pd.read_csv(csv)[col].dropna().to_numpy(dtype=float)
            found |= {f"{abs(v):.3f}" for v in values}
    return found


def test_the_documents_tables_are_generated_from_the_committed_files():
    """`python -m workbench tables --write` leaves README.md and docs/results.md unchanged: each
    marked table is what results/ holds (`make demo` rewrites them together)."""
    tables = results.readme_tables()
    for doc, names in results.DOCUMENTS.items():
        text = doc.read_text()
        assert results.fill(text, {n: tables[n] for n in names}) == text, f"{doc}: python -m workbench tables --write"


@pytest.mark.parametrize("doc", ["README.md", "docs/results.md", "docs/study.md"])
def test_every_number_of_a_table_is_in_the_committed_files(doc):
    """Every figure with a decimal point in a table of README.md, and in the marked result tables
    of the docs pages (their other tables list settings), is a value of a committed result file."""
    text = (ROOT / doc).read_text()
    if doc != "README.md":
        text = "\n".join(re.findall(r"<!-- table:[\w-]+ -->\n(.*?)<!-- /table", text, flags=re.S))
    rows = [line for line in text.splitlines() if line.startswith("|") and not set(line) <= set("|-: ")]
    numbers = {n.lstrip("+-") for row in rows for n in re.findall(r"[+-]?\d+\.\d+", row)}
    assert numbers, f"no table with figures in {doc}"
    missing = numbers - _numbers_in_results(results.RESULTS_DIR)
    assert not missing, f"{doc} table figures not in results/: {sorted(missing)}"


def test_every_committed_result_is_stamped():
    folders = [p for p in results.RESULTS_DIR.iterdir() if p.is_dir()]
    assert {"demo", "demo-transfer", "tuning-demo", "inputs-demo", "study-demo", "laptop", "laptop-transfer"} <= {
        p.name for p in folders}
    for folder in folders:
        stamp = json.loads((folder / "stamp.json").read_text())
        assert len(stamp["commit"]) == 40 and stamp["profile"] and stamp["machine"]["cpu"], folder
        assert list(folder.glob("*.csv")), folder


def test_publish_stamps_and_drops_machine_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path / "data"))
    report = tmp_path / "data" / "reports" / "synth-demo"
    report.mkdir(parents=True)
    ckpt = tmp_path / "data" / "runs" / "demo-synth-simclr" / "checkpoint.pt"
    pd.DataFrame({"method": ["simclr"], "point": [0.8], "checkpoint": [str(ckpt)]}).to_csv(report / "results.csv",
                                                                                          index=False)
    out = results.publish(report, "demo", "demo", "make demo", out_root=tmp_path / "results")
    table = pd.read_csv(out / "results.csv")
    assert table.checkpoint[0] == "data/runs/demo-synth-simclr/checkpoint.pt"
    stamp = json.loads((out / "stamp.json").read_text())
    assert stamp["profile"] == "demo" and stamp["command"] == "make demo" and stamp["machine"]["cores"] >= 1
    assert not (out / "pairs.csv").exists()  # only what the report had


def test_fill_replaces_marked_blocks_and_names_a_missing_one():
    text = "a\n<!-- table:x -->\nold\n<!-- /table:x -->\nb\n"
    assert results.fill(text, {"x": "new\nlines"}) == "a\n<!-- table:x -->\nnew\nlines\n<!-- /table:x -->\nb\n"
    with pytest.raises(ValueError, match="table:y"):
        results.fill(text, {"y": "z"})


def test_main_table_reads_points_intervals_and_paired_differences(tmp_path):
    rows = [dict(method=m, fraction=1.0, metric="roc_auc", point=p, ci_low=p - 0.02, ci_high=p + 0.02)
            for m, p in (("simclr", 0.8), ("handcrafted", 0.79), ("random", 0.75))]
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    pairs = [dict(metric="roc_auc", method_a=a, method_b=b, diff_point=d, ci_low=d - 0.01, ci_high=d + 0.01)
             for a, b, d in (("simclr", "handcrafted", 0.01), ("simclr", "random", 0.05),
                             ("handcrafted", "random", 0.04), ("random", "handcrafted", -0.04))]
    pd.DataFrame(pairs).to_csv(tmp_path / "pairs.csv", index=False)
    table = results.main_table(tmp_path).splitlines()
    assert table[2] == ("| contrastive (SimCLR) | 0.800 [0.780, 0.820] | +0.010 [+0.000, +0.020] "
                        "| +0.050 [+0.040, +0.060] |")
    assert table[3].startswith("| random init | 0.750") and len(table) == 5


def test_levers_table_one_row_a_corpus_and_a_blank_for_a_run_not_made(tmp_path):
    rows = [("a", "simclr", 0.7001), ("a", "simclr@s1", 0.705), ("a", "vicreg", 0.6991), ("a", "random", 0.6256),
            ("b", "simclr", 0.7121), ("b", "random", 0.6236), ("b", "handcrafted", 0.7264)]
    pd.DataFrame([{"change": c, "encoder": e, "transfer_valid_mlp": v} for c, e, v in rows]).to_csv(
        tmp_path / "valid.csv", index=False)
    lines = results.levers_table(tmp_path).splitlines()
    assert lines[2:] == ["| a | 0.700 | 0.705 | 0.699 | 0.626 |", "| b | 0.712 |  |  | 0.624 |"]
