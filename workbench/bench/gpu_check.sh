#!/usr/bin/env bash
# The prepared GPU check of issue 14: one command for a session that is lent a GPU.
#
#   OUT=/path/to/results bash workbench/bench/gpu_check.sh [module options, e.g. --budget 300]
#
# Runs `python -m workbench.bench gpu --out "$OUT"` (every figure in $OUT/gpu_check.json, the
# README tables in $OUT/gpu_check.md; about 6.5 minutes, under its own time budget), then the two
# tests that are skipped without CUDA (tests/test_audio.py::test_runs_on_input_device,
# tests/test_augment.py::test_cuda_batch_stays_on_cuda) into $OUT/cuda_tests.txt when pytest is
# importable. The whole log goes to $OUT/gpu_check.log. Installs nothing; run from anywhere
# (it changes to the repository root); $PYTHON chooses the interpreter (default: python, else python3).
set -u
: "${OUT:?set OUT to the folder that receives the results}"
cd "$(dirname "$0")/../.." || exit 2
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-$(command -v python || command -v python3)}

run() {
    echo "[gpu_check.sh] $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)," \
         "$($PY -c 'import sys; print("python", sys.version.split()[0])')"
    timeout 420 "$PY" -m workbench.bench gpu --out "$OUT" "$@"
    local module_rc=$?
    echo "[gpu_check.sh] python -m workbench.bench gpu: exit code $module_rc"
    local tests_rc=0
    if "$PY" -c "import pytest" 2>/dev/null; then
        timeout 45 "$PY" -m pytest -q -rA -p no:cacheprovider tests/test_audio.py tests/test_augment.py \
            -k "test_runs_on_input_device or test_cuda_batch_stays_on_cuda" > "$OUT/cuda_tests.txt" 2>&1
        tests_rc=$?
        echo "exit code $tests_rc" >> "$OUT/cuda_tests.txt"
        echo "[gpu_check.sh] CUDA-only tests: exit code $tests_rc"
        tail -n 8 "$OUT/cuda_tests.txt"
    else
        echo "pytest absent on this machine: the 2 CUDA-only tests were not run" | tee "$OUT/cuda_tests.txt"
    fi
    [ "$module_rc" -eq 0 ] && [ "$tests_rc" -eq 0 ]
}

run "$@" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
