"""``python -m workbench.bench {synth,augment,train,bootstrap,data,parallel,gpu,all} [args]``."""

from __future__ import annotations

import importlib
import sys

BENCHES = ("synth", "augment", "train", "bootstrap", "data", "parallel", "gpu")
NOT_IN_ALL = ("gpu",)  # the prepared GPU check writes files under its own time budget: run it by name


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("benchmarks:", ", ".join(BENCHES))
        return
    name, rest = argv[0], argv[1:]
    names = tuple(b for b in BENCHES if b not in NOT_IN_ALL) if name == "all" else (name,)
    for n in names:
        if n not in BENCHES:
            raise SystemExit(f"unknown benchmark {n!r}; expected one of {', '.join(BENCHES)} or all")
        importlib.import_module(f"workbench.bench.{n}").main(rest)


if __name__ == "__main__":
    main()
