"""Committed results: the files behind every figure the README quotes, stamped, and the README's
tables generated from them.

`publish(report, name)` copies the tables of a report folder (results, pairs, seeds, families,
clean tags, limited data) into ``results/<name>/`` at the top of the repository, with
``stamp.json``: the commit, whether the tree had changes, the profile, the CPU model, cores, torch
version and the date. ``make demo`` publishes its two reports (``demo`` and ``demo-transfer``).
Training figures differ in the third decimal from one CPU type to another (same commit, same
seed), so a figure is always read with its stamp.

`readme_tables()` renders the README's result tables from those files; ``python -m workbench
tables --write`` puts them between their markers in README.md (``<!-- table:NAME -->`` ...
``<!-- /table:NAME -->``), and the suite fails when the README and the files disagree.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import torch

from workbench.config import REPO_ROOT, data_dir
from workbench.files import save_text
from workbench.plots import method_label, order_methods
from workbench.report import interval

RESULTS_DIR = REPO_ROOT / "results"
README_FIGURES = REPO_ROOT / "data" / "readme"  # the figures the README and docs/ show (tracked)
TABLE_FILES = ("results.csv", "pairs.csv", "seeds.csv", "families.csv", "results_clean.csv", "limited.csv",
               "arms.csv", "arms_transfer.csv", "collapse.csv", "timeline.csv")  # the last four: the clustering study's
README = REPO_ROOT / "README.md"
RESULTS_DOC = REPO_ROOT / "docs" / "results.md"


def machine() -> dict[str, object]:
    """The CPU model (``/proc/cpuinfo``'s model name where there is one), cores, torch version and
    threads: what a training figure depends on besides the commit and the seed."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": cores, "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


CODE = ("workbench", "pyproject.toml", "uv.lock")  # what a figure depends on, for the stamp's changed flag


def commit() -> dict[str, object]:
    """The repository's HEAD commit and whether the code (`CODE`) differs from it (None outside git)."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    status = git("status", "--porcelain", "--untracked-files=no", "--", *CODE)
    return {"commit": git("rev-parse", "HEAD"), "changed_files": None if status is None else bool(status)}


def in_repository() -> bool:
    """Whether the data folder is the repository's own ``data/`` (results are published only then)."""
    return Path(data_dir()).resolve() == (REPO_ROOT / "data").resolve()


def publish(report: Path, name: str, profile: str, command: str, out_root: Path = RESULTS_DIR) -> Path:
    """Copy the tables of ``report`` into ``out_root/name/`` with ``stamp.json``; checkpoint paths
    are written relative to the data folder (``data/runs/...``), never as this machine's paths."""
    out = Path(out_root) / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    prefix = str(Path(data_dir()).resolve()) + os.sep
    for table in TABLE_FILES:
        if (Path(report) / table).is_file():
            df = pd.read_csv(Path(report) / table)
            if "checkpoint" in df.columns:
                df["checkpoint"] = df.checkpoint.astype(str).str.replace(prefix, "data/", regex=False)
            save_text(out / table, df.to_csv(index=False))
    stamp(out, profile, command, extra={"report": Path(report).name})
    return out


def stamp(out: Path, profile: str, command: str, extra: dict | None = None) -> Path:
    """``out/stamp.json``: the commit (and whether the tree had changes), the profile, the command,
    the machine (CPU model, cores, torch), the date, and ``extra``."""
    blob = {**commit(), "profile": profile, "command": command, "machine": machine(),
            "date": datetime.date.today().isoformat(), **(extra or {})}
    return save_text(Path(out) / "stamp.json", json.dumps(blob, indent=2) + "\n")


# ----------------------------------------------------------------------------------- README tables
def main_table(folder: Path) -> str:
    """Macro ROC-AUC with its interval per encoder (full train data), and the paired differences
    to log-mel statistics and to the random floor, from ``folder``'s results.csv and pairs.csv."""
    results = pd.read_csv(folder / "results.csv")
    pairs = pd.read_csv(folder / "pairs.csv")
    full = results[(results.fraction == 1.0) & (results.metric == "roc_auc")].set_index("method")
    pairs = pairs[pairs.metric == "roc_auc"].set_index(["method_a", "method_b"])
    floors = [f for f in ("handcrafted", "random") if f in full.index]
    head = "| encoder | macro ROC-AUC [95 % CI] | " + " | ".join(f"minus {method_label(f)}" for f in floors) + " |"
    lines = [head, "|" + "---|" * (2 + len(floors))]
    for m in order_methods(full.index):
        r = full.loc[m]
        cells = [interval(r.point, r.ci_low, r.ci_high)]
        for f in floors:
            p = pairs.loc[(m, f)] if (m, f) in pairs.index else None
            cells.append("" if p is None else interval(p.diff_point, p.ci_low, p.ci_high, signed=True))
        lines.append(f"| {method_label(m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def families_markdown(folder: Path) -> str:
    """Macro ROC-AUC by tag family: each family's best SSL encoder and the floors, with the best
    one's paired difference to log-mel statistics, from ``folder``'s families.csv."""
    fam = pd.read_csv(folder / "families.csv")
    fam = fam[fam.metric == "roc_auc"]
    floors = {"handcrafted", "random", "random-target", "supervised"}
    lines = ["| tag family (tags) | best SSL encoder | minus log-mel statistics | log-mel statistics | random init |",
             "|---|---|---|---|---|"]
    for family, g in fam.groupby("family", sort=False):
        ssl = g[~g.method.isin(floors) & ~g.method.str.contains("@")]
        best = ssl.loc[ssl.point.idxmax()]
        base = g.set_index("method")
        diff = interval(best.diff_handcrafted, best.diff_handcrafted_ci_low, best.diff_handcrafted_ci_high, signed=True)
        lines.append(f"| {family} ({int(best.tags)}) | {method_label(best.method)} "
                     f"{interval(best.point, best.ci_low, best.ci_high)} | {diff} | "
                     f"{base.loc['handcrafted', 'point']:.3f} | {base.loc['random', 'point']:.3f} |")
    return "\n".join(lines)


def stamp_line(folder: Path) -> str:
    s = json.loads((folder / "stamp.json").read_text())
    changed = " with uncommitted changes to the code" if s.get("changed_files") else ""
    return (f"Made by `{s['command']}` (profile `{s['profile']}`) at commit `{str(s['commit'])[:10]}`{changed}, "
            f"on {s['machine']['cpu']} ({s['machine']['cores']} cores), {s['date']}; files in "
            f"`results/{folder.name}/`.")


def tuning_table(folder: Path) -> str:
    """Per method and setting of the grid: the corpus valid MLP figure (mean and spread over the
    seeds; the chosen setting in bold), the corpus k-NN and the transfer set's valid MLP figure."""
    spread = pd.read_csv(folder / "settings.csv")
    chosen = set(map(tuple, pd.read_csv(folder / "chosen.csv")[["method", "setting"]].to_numpy()))
    lines = ["| method | setting | valid MLP (cross-validated), mean ± sd over seeds | valid k-NN | "
             "transfer valid MLP |", "|---|---|---|---|---|"]
    for r in spread.itertuples(index=False):
        pick = "**" if (r.method, r.setting) in chosen else ""
        lines.append(f"| {method_label(r.method)} | {pick}{r.setting}{pick} | {r.valid_mlp_mean:.3f} ± "
                     f"{r.valid_mlp_std:.3f} | {r.valid_knn_mean:.3f} | {r.transfer_valid_mlp_mean:.3f} |")
    return "\n".join(lines)


def inputs_table(folder: Path) -> str:
    """`workbench.tuning.run_input_study`'s runs: per input, its training seconds and SimCLR's
    valid figures, each beside that input's floors (log-mel statistics, random init)."""
    table = pd.read_csv(folder / "runs.csv")
    floors = table[table.steps.isna()].set_index(["family", "encoder"])
    lines = ["| input | seconds of training steps | valid MLP | valid k-NN | transfer valid MLP | "
             "valid MLP of log-mel statistics / random init at this input |", "|---|---|---|---|---|---|"]
    for r in table[table.steps.notna()].itertuples(index=False):
        lines.append(f"| {r.input} | {r.train_seconds:.0f} | {r.valid_mlp:.3f} | {r.valid_knn:.3f} | "
                     f"{r.transfer_valid_mlp:.3f} | {floors.loc[(r.family, 'handcrafted'), 'valid_mlp']:.3f} / "
                     f"{floors.loc[(r.family, 'random'), 'valid_mlp']:.3f} |")
    return "\n".join(lines)


def study_table(folder: Path, arms_file: str = "arms.csv") -> str:
    """The clustering study per arm: test macro ROC-AUC mean over seeds with their spread, the
    paired difference of the means to plain DINO (two-level interval: tracks and seeds), and the
    seeds the monitor flags at the end, from ``folder``'s arms.csv (or arms_transfer.csv)."""
    arms = pd.read_csv(folder / arms_file)
    arms = arms[arms.metric == "roc_auc"]
    lines = ["| arm | seeds | macro ROC-AUC: mean, seed sd [min, max] | minus plain DINO [95 % CI] | collapsed |",
             "|---|---|---|---|---|"]
    for r in arms.itertuples(index=False):
        diff = "" if pd.isna(r.diff_to_base) else interval(r.diff_to_base, r.diff_ci_low, r.diff_ci_high, signed=True)
        collapsed = "" if pd.isna(r.collapsed) else r.collapsed
        spread = (f"{r.mean:.3f}" if r.seeds < 2
                  else f"{r.mean:.3f}, {r.seed_std:.3f} [{r.seed_min:.3f}, {r.seed_max:.3f}]")
        lines.append(f"| `{r.arm}` | {int(r.seeds)} | {spread} | {diff} | {collapsed} |")
    return "\n".join(lines)


def levers_table(folder: Path) -> str:
    """Changes to the corpus measured on the transfer set (``valid.csv``: one row per corpus and
    encoder, ``@s1`` a second pretraining seed): the transfer set's valid MLP figure of SimCLR
    (two seeds), VICReg and the random floor pretrained or calibrated on each corpus."""
    table = pd.read_csv(folder / "valid.csv")
    lines = ["| corpus | SimCLR seed 0 | SimCLR seed 1 | VICReg | random init |", "|---|---|---|---|---|"]
    for change, rows in table.groupby("change", sort=False):
        fig = dict(zip(rows.encoder, rows.transfer_valid_mlp))
        cells = [f"{fig[e]:.3f}" if e in fig else "" for e in ("simclr", "simclr@s1", "vicreg", "random")]
        lines.append(f"| {change} | {' | '.join(cells)} |")
    return "\n".join(lines)


def stamped(table, folder: Path) -> str:
    """``table(folder)``, the Markdown of a published result, then its stamp line."""
    return table(folder) + "\n\n" + stamp_line(folder)


TABLES = {"demo-main": lambda root: stamped(main_table, root / "demo"),
          "demo-families": lambda root: families_markdown(root / "demo"),
          "transfer-main": lambda root: stamped(main_table, root / "demo-transfer"),
          "tuning": lambda root: stamped(tuning_table, root / "tuning-demo"),
          "inputs": lambda root: stamped(inputs_table, root / "inputs-demo"),
          "study-arms": lambda root: stamped(study_table, root / "study-demo"),
          "study-transfer": lambda root: study_table(root / "study-demo", "arms_transfer.csv"),
          "laptop-main": lambda root: stamped(main_table, root / "laptop"),
          "laptop-transfer": lambda root: stamped(main_table, root / "laptop-transfer"),
          "corpus-levers": lambda root: stamped(levers_table, root / "corpus-levers")}
DOCUMENTS = {README: ("demo-main", "demo-families"),
             RESULTS_DOC: ("demo-main", "demo-families", "transfer-main", "inputs", "tuning", "laptop-main",
                           "laptop-transfer", "corpus-levers"),
             REPO_ROOT / "docs" / "study.md": ("study-arms", "study-transfer")}


def readme_tables(root: Path = RESULTS_DIR) -> dict[str, str]:
    """{marker name: the Markdown of that block} from the committed result files."""
    return {name: render(Path(root)) for name, render in TABLES.items()}


def write_documents(root: Path = RESULTS_DIR) -> list[Path]:
    """Rewrite the marked tables of every document of `DOCUMENTS` from the committed files."""
    tables = readme_tables(root)
    for doc, names in DOCUMENTS.items():
        save_text(doc, fill(doc.read_text(), {n: tables[n] for n in names}))
    return list(DOCUMENTS)


def fill(text: str, tables: dict[str, str]) -> str:
    """``text`` with each ``<!-- table:NAME -->`` ... ``<!-- /table:NAME -->`` block replaced by
    ``tables[NAME]``; a marker without a table, or a table without its markers, is an error."""
    for name, body in tables.items():
        tag = re.escape(name)
        pattern = re.compile(rf"(<!-- table:{tag} -->\n)(?:.*?\n)?(<!-- /table:{tag} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"no block <!-- table:{name} --> ... <!-- /table:{name} --> in the document")
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
    return text
