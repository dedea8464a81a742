"""Command line: ``python -m workbench {corpus,pretrain,evaluate,validate,study,ingest,demo,tune,tables} ...``.

Every command prints the profile in force first. Parsing lives here; the work is done by the
stage modules (`workbench.data`, `workbench.train`, `workbench.evaluate`, `workbench.demo`), one
function a command (`COMMANDS`).
A user's mistake (a bad value, a missing file, a locked or damaged run) is one line on stderr
and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pandas as pd

from workbench import dist
from workbench.config import (
    FIDELITIES,
    PROFILES,
    RunConfig,
    announce,
    apply_overrides,
    for_method,
    load_profile,
    with_dataset,
)
from workbench.data.datasets import open_dataset
from workbench.data.ingest import ingest
from workbench.demo import run_demo
from workbench.evaluate import run_evaluation, seed_configs
from workbench.files import DamagedCheckpointError, save_text
from workbench.jobs import ensure_runs
from workbench.methods import METHODS
from workbench.results import readme_tables, write_documents
from workbench.runs import RunLockedError
from workbench.study import run_study
from workbench.train import pretrain
from workbench.tuning import run_input_study, run_tuning
from workbench.validate import validation_table

# What a user's mistake raises (bad values, missing or existing files, locks): one line, exit 2.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError, RunLockedError,
               DamagedCheckpointError)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="size profile (default: $WORKBENCH_PROFILE, else demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
    p.add_argument("--dataset", default=None, help="synth (default) | transfer | mtat | jamendo | gtzan | folder | csv")
    p.add_argument("--root", default=None, help="local path of a real dataset")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    p.add_argument("--variant", "--split", dest="variant", default=None,
                   help="dataset variant: mtat A|A-sota|B (--split), jamendo top50|genre|instrument|moodtheme|all")


def _config(args: argparse.Namespace) -> RunConfig:
    cfg = with_dataset(load_profile(args.profile), args.dataset, args.root, getattr(args, "variant", None))
    return apply_overrides(cfg, args.overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("corpus", help="generate (or reuse) the embedded corpus of the profile")
    _add_common(p)

    p = sub.add_parser("pretrain", help="pretrain one SSL method",
                       description=f"methods: {', '.join(METHODS)}; profiles: {', '.join(PROFILES)}")
    _add_common(p)
    p.add_argument("--method", required=True, choices=tuple(METHODS))
    p.add_argument("--fidelity", choices=FIDELITIES, default=None,
                   help="reference = original method papers (default); paper-code = released code")
    p.add_argument("--name", default=None, help="run folder name under data/runs (default: derived)")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")

    p = sub.add_parser("evaluate", help="probe frozen embeddings, bootstrap, limited data, report")
    _add_common(p)
    p.add_argument("--runs", nargs="*", default=[], help="run folders or released checkpoints (*.pt)")
    p.add_argument("--protocol", choices=("mlp", "linear", "paper-code"), default=None)
    p.add_argument("--fractions", default=None, help="e.g. 0.01,0.05,0.1,0.2,1.0")
    p.add_argument("--seeds", type=int, default=None,
                   help="pretraining seeds per method when --runs is not given (eval.seeds; default 1)")
    p.add_argument("--out", default=None, help="report folder (default: data/reports/<dataset>-<profile>)")

    p = sub.add_parser("validate", help="choose settings without the test split: valid-split probe scores of runs")
    _add_common(p)
    p.add_argument("--runs", nargs="+", required=True, help="run folders or released checkpoints (*.pt)")
    p.add_argument("--out", default=None, help="also write the table to this CSV file")

    p = sub.add_parser("study", help="the clustering study: DINO against its remedies and SimCLR, several seeds")
    _add_common(p)
    p.add_argument("--seeds", type=int, default=3, help="pretraining seeds per arm (default 3)")
    p.add_argument("--out", default=None, help="report folder (default: data/reports/clustering-<profile>)")

    p = sub.add_parser("ingest", help="decode a real dataset once into the audio store")
    _add_common(p)
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores - 1)")

    p = sub.add_parser("demo", help="the main job: corpus, five methods, evaluation, reports")
    _add_common(p)
    p.add_argument("--notebooks", action="store_true",
                   help="also train notebook 03's collapse runs and execute every notebook into HTML "
                        "(make notebooks; reuses what the demo made)")
    p.add_argument("--seeds", type=int, default=None, help="pretraining seeds per method (eval.seeds; default 1)")

    p = sub.add_parser("tune", help="choose each method's settings on the valid split: one grid, the same seeds")
    _add_common(p)
    p.add_argument("--inputs", action="store_true",
                   help="instead, the profile's input by time to accuracy on the valid split (tuning.INPUTS)")

    p = sub.add_parser("tables", help="print the result tables of README.md and docs/results.md from results/ "
                                      "(--write: into them)")
    _add_common(p)
    p.add_argument("--write", action="store_true", help="rewrite the marked tables of both documents")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except USER_ERRORS as err:
        if args.debug:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def run(args: argparse.Namespace) -> None:
    cfg = _config(args)
    if getattr(args, "seeds", None) is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds is {args.seeds}; expected a whole number >= 1")
        cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, seeds=args.seeds))
    announce(cfg, f"python -m workbench {args.command}")
    COMMANDS[args.command](cfg, args)


def _corpus(cfg: RunConfig, args: argparse.Namespace) -> None:
    print(open_dataset(cfg))


def _pretrain(cfg: RunConfig, args: argparse.Namespace) -> None:
    cfg = for_method(cfg, args.method, **({"fidelity": args.fidelity} if args.fidelity else {}))
    run_dir = pretrain(cfg, name=args.name, resume=args.resume)
    if dist.is_main():
        print(f"run folder: {run_dir}")


def _evaluate(cfg: RunConfig, args: argparse.Namespace) -> None:
    if args.protocol:
        cfg = dataclasses.replace(cfg, probe=dataclasses.replace(cfg.probe, protocol=args.protocol))
    if args.fractions:
        fr = tuple(float(x) for x in args.fractions.split(","))
        cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, fractions=fr))
    runs = [Path(r) for r in args.runs] or ensure_runs(seed_configs(cfg))  # none named: the five methods
    out = run_evaluation(cfg, runs, out_dir=Path(args.out) if args.out else None)
    print(f"report: {out}")


def _validate(cfg: RunConfig, args: argparse.Namespace) -> None:
    table = validation_table(cfg, [Path(r) for r in args.runs])
    if args.out:
        save_text(args.out, table.to_csv(index=False))
    print(table.to_string(index=False, float_format="%.4f"))


def _study(cfg: RunConfig, args: argparse.Namespace) -> None:
    print(f"report: {run_study(cfg, seeds=args.seeds, out_dir=Path(args.out) if args.out else None)}")


def _ingest(cfg: RunConfig, args: argparse.Namespace) -> None:
    print(ingest(cfg.data, workers=args.workers))


def _demo(cfg: RunConfig, args: argparse.Namespace) -> None:
    print(f"report: {run_demo(cfg, notebooks=args.notebooks)}")


def _tune(cfg: RunConfig, args: argparse.Namespace) -> None:
    if args.inputs:
        out = run_input_study(cfg)
        table = pd.read_csv(out / "runs.csv")
        print(table.drop(columns="run").to_string(index=False, float_format="%.4f"))
        print(f"tables: {out}")
        return
    out = run_tuning(cfg)
    print(pd.read_csv(out / "chosen.csv").to_string(index=False, float_format="%.4f"))
    print(f"tables: {out}; the chosen settings go into config.TUNED")


def _tables(cfg: RunConfig, args: argparse.Namespace) -> None:
    tables = readme_tables()
    if args.write:
        print("rewrote the tables of " + ", ".join(map(str, write_documents())))
    else:
        print("\n\n".join(f"<!-- table:{name} -->\n{body}\n<!-- /table:{name} -->" for name, body in tables.items()))


COMMANDS = {"corpus": _corpus, "pretrain": _pretrain, "evaluate": _evaluate, "validate": _validate,
            "study": _study, "ingest": _ingest, "demo": _demo, "tune": _tune, "tables": _tables}


if __name__ == "__main__":
    main()
