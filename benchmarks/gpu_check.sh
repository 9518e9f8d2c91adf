#!/usr/bin/env bash
# Issue 15 point 3 on a lent GPU (one H100/H200, minutes): the Triton kernels' exactness tests on
# CUDA, the kernel table against torch with the machine's limits measured in the same run, and
# tokenize throughput with GPU batching, in <= 9 minutes; results in $OUT (summary.md first).
# Prepare once on the CPU machine: .venv/bin/python examples/gpu/prepare.py --wheels-only
# (soundfile, soxr and pytest, which the GPU image lacks, into build/gpu/wheels). Then, with the
# device tool: run `bash benchmarks/gpu_check.sh`, carry ["build/gpu/wheels"], timeout_s 560.
# Each step has its own time limit, so a slow one (a cold Triton cache compiles every autotuning
# config) still leaves the others theirs and the summary is always written.
# Checked on the CPU, Triton interpreted, tiny sizes (1-2 minutes):
#   DEVICE=cpu TRITON_INTERPRET=1 QUICK=1 PY=.venv/bin/python bash benchmarks/gpu_check.sh
set -uo pipefail
OUT="${OUT:-build/gpu-check}"
DEVICE="${DEVICE:-cuda}"
QUICK="${QUICK:-0}"
PY="${PY:-python3}"
mkdir -p "$OUT"
began=$(date +%s)
source examples/gpu/wheels.sh
if ! $PY -c "import soundfile, soxr, pytest" 2>/dev/null && ! compgen -G "build/gpu/wheels/*.whl" >/dev/null; then
  echo "error: soundfile, soxr or pytest is missing and build/gpu/wheels is empty: run examples/gpu/prepare.py --wheels-only and carry build/gpu/wheels" >&2
  exit 1
fi
install_wheels soundfile soxr pytest
# TRITON_PRINT_AUTOTUNING: each key's chosen config and tuning time go into logs.txt
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 RVQTOOL_TEST_DEVICE="$DEVICE" TRITON_PRINT_AUTOTUNING=1
if [ "$QUICK" = 1 ]; then
  TABLE=(--quick --repeats 2); TOKENIZE=(--minutes 0.15 --batches 1,4)
else
  TABLE=(--repeats 5); TOKENIZE=(--minutes 10 --batches 1,16,64)
fi
LOG="$OUT/logs.txt"
: > "$LOG"
declare -A STATUS
step() {  # step NAME SECONDS COMMAND...: run it under a time limit, output into logs.txt
  local name=$1 limit=$2; shift 2
  local start=$(date +%s) rc=0
  echo "== $name (limit ${limit}s)" | tee -a "$LOG"
  timeout "$limit" "$@" >> "$LOG" 2>&1 || rc=$?
  STATUS[$name]="exit $rc$([ $rc = 124 ] && echo ', out of time') after $(( $(date +%s) - start ))s"
  echo "== $name: ${STATUS[$name]}" | tee -a "$LOG"
}
{
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import sys, numpy, torch; print('python', sys.version.split()[0], '| numpy', numpy.__version__, '| torch', torch.__version__, '| cuda', torch.version.cuda, torch.cuda.is_available())"
  $PY -c "import triton; print('triton', triton.__version__)" 2>&1 | tail -1
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"
step tests 240 $PY -m pytest tests/test_kernels_cuda.py -v -rfEs -p no:cacheprovider --durations=5 --junit-xml="$OUT/tests.xml"
step table 170 $PY benchmarks/gpu_kernels.py table --device "$DEVICE" "${TABLE[@]}" -o "$OUT/table.md"
step tokenize 100 $PY benchmarks/gpu_kernels.py tokenize --device "$DEVICE" "${TOKENIZE[@]}" -o "$OUT/tokenize.md"
{
  echo "# GPU check (issue 15 point 3), $(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - began )) s"
  echo; echo '```'; cat "$OUT/machine.txt"; echo '```'
  echo; echo "## Kernel exactness tests (tests/test_kernels_cuda.py, device $DEVICE): ${STATUS[tests]}"
  echo; echo '```'; grep -E "^(=+ .*(passed|failed|error|skipped)|FAILED|ERROR|SKIPPED)" "$LOG" | tail -15; echo '```'
  echo; echo "## Kernel table (benchmarks/gpu_kernels.py table): ${STATUS[table]}"
  echo; [ -s "$OUT/table.md" ] && cat "$OUT/table.md" || echo "(none: see logs.txt)"
  echo; echo "## Tokenize with GPU batching (benchmarks/gpu_kernels.py tokenize): ${STATUS[tokenize]}"
  echo; [ -s "$OUT/tokenize.md" ] && cat "$OUT/tokenize.md" || echo "(none: see logs.txt)"
} > "$OUT/summary.md"
cat "$OUT/summary.md"
ls -la "$OUT"
