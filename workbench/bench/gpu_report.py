"""The prepared GPU check's report (`workbench.bench.gpu`): ``gpu_check.json`` with every figure
(strict JSON: a non-finite number is written as the string "nan" or "inf") and ``gpu_check.md``,
the tables to paste into the README's benchmark section."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from workbench.files import atomic_write


def _clean(x: Any) -> Any:
    """JSON-ready: non-finite floats become the strings 'nan' / 'inf' (valid JSON, visibly not a number)."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:  # numpy / torch scalars
        return _clean(x.item())
    return x


def write_report(report: dict, out: Path) -> None:

    atomic_write(out / "gpu_check.json", lambda tmp: tmp.write_text(json.dumps(_clean(report), indent=1)))
    atomic_write(out / "gpu_check.md", lambda tmp: tmp.write_text(markdown(report)))


def _f(x: Any, fmt: str = "{:.0f}", scale: float = 1.0) -> str:
    return "-" if not isinstance(x, (int, float)) or isinstance(x, bool) else fmt.format(x * scale)


def markdown(report: dict) -> str:
    env, pk = report.get("environment", {}), report.get("peak") or {}
    lines = [f"### GPU check: {env.get('gpu', env.get('device', '?'))}, torch {env.get('torch', '?')}, "
             f"commit {env.get('commit', '?')} (`bash workbench/bench/gpu_check.sh`)", ""]
    if env.get("quick"):
        lines += [f"**Quick run ({env.get('quick_reason')}): tiny sizes on the CPU, a check of the script; "
                  "no figure here is to be quoted.**", ""]
    data_path = ", ".join(f"{k} {v}" for k, v in report.get("steps", {}).get("data_path", {}).items())
    lines += [f"Peak: {pk.get('matmul', 'bf16 matmul')}: {_f(pk.get('bf16_tflops'), '{:.3g}')} TFLOP/s measured "
              f"(data sheet {_f(pk.get('datasheet_bf16_tflops'))}); MFU is against the measured figure. Profile "
              f"{report.get('profile', '?')}; data path: prefetcher {env.get('prefetcher')}, {data_path}. Data: "
              "`next_views()` (batch, copy, augmentation, mel) between synchronisations; waits for batch: "
              "`TrainingData.wait_seconds`; warm-up: the first steps, compilation included.", "",
              "| method | setting | clips/s | step ms | data ms (share) | waits for batch | peak GiB | GFLOP/step "
              "| MFU | warm-up s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in [*report.get("steps", {}).get("rows", []), *report.get("compile", {}).get("rows", [])]:
        if "step_s" not in r:
            lines.append(f"| {r['method']} | {r['setting']} | {r.get('error') or r.get('skipped')} | | | | | | | |")
            continue
        lines.append(f"| {r['method']} | {r['setting']} | {_f(r['clips_per_s'])} | {_f(r['step_s'], '{:.1f}', 1e3)} | "
                     f"{_f(r['data_s'], '{:.1f}', 1e3)} ({_f(r['data_share'], '{:.0f}', 100)} %) | "
                     f"{_f(r.get('wait_share'), '{:.1f} %', 100)} | {_f(r.get('peak_memory_gib'), '{:.1f}')} | "
                     f"{_f(r.get('flops_per_step'), '{:.3g}', 1e-9)} | {_f(r.get('mfu'), '{:.1f} %', 100)} | "
                     f"{_f(r.get('warmup_s'), '{:.1f}')} |")
    pre = report.get("pretrain", {})
    if pre:
        lines += ["", "| pretraining | steps | loss first -> last | fell | skipped steps | non-finite rows | clips/s |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in pre.items():
            if "loss_first" not in r:
                lines.append(f"| {name} | {r.get('error') or r.get('skipped')} | | | | | |")
                continue
            lines.append(f"| {name} ({r['precision']}, batch {r['batch']} x {r['views']}) | {r['steps']} | "
                         f"{r['loss_first']:.3f} -> {r['loss_last']:.3f} | {'yes' if r['loss_fell'] else 'NO'} | "
                         f"{r['skipped_steps']} | {r['nonfinite_rows']} | {_f(r['clips_per_s'])} |")
    aug = report.get("augment") or {}
    if aug:
        lines += ["", f"| on {aug['device']}, batch {aug['batch']} x {aug['seconds']:g} s | clips/s | ours faster |",
                  "|---|---|---|"]
        for name, r in aug["rows"].items():
            rate = _f(r["clips_per_s"]) if "clips_per_s" in r else "absent" if r.get("absent") else r.get("error")
            lines.append(f"| {' '.join([name, r.get('version', '')]).strip()} | {rate} | "
                         f"{_f(r.get('speedup_over_peer'), '{:.1f}x')} |")
    notes = report.get("notes", []) + [f"{m}: {r['stopped']}" for m, r in pre.items() if r.get("stopped")]
    failed = [f"{k}: {v['status']}" for k, v in report.get("sections", {}).items() if v["status"] != "ok"]
    if notes or failed:
        lines += [""] + [f"- {n}" for n in notes + failed]
    return "\n".join(lines) + "\n"
