#!/usr/bin/env bash
# The one GPU run of issue 21, start to end, on the device machine (repo root, gpu_carry/ carried:
# scripts/gpu_pack.sh builds it). In order, each step under its own time cap:
#   1. install the carried wheels (no network there) and corebench itself;
#   2. the card, driver, torch version and date -> env.txt;
#   3. `make test-gpu` (the gpu-marked tests) and `benchmarks/gpu.py` (make benchmarks-gpu) with
#      a budget -> checks.log, gpu_bench.json;
#   4. the sizing, measured on the card (benchmarks/gpu_sizing.py --measure) -> sizing.json;
#   5. decode the JPEG copy, then run configs/cifar10_gpu.yaml under `corebench run --time-limit`
#      (no cell starts that would not end in time; finished records are kept);
#   6. the boards, and everything packed into $OUT: at most 8 files (run.log, env.txt,
#      checks.log, gpu_bench.json, sizing.json, results.tar.gz).
# Whatever fails, the later steps still run and what exists is packed. Run again on the same
# warm machine, it resumes (finished cells are kept in ${TMPDIR:-/tmp}/corebench-gpu).
#
#   bash scripts/gpu_run.sh --budget 540     # on the GPU: the whole run ends within 540 s
#   bash scripts/gpu_run.sh --smoke          # on any CPU: every step on tiny stand-in data
#
# Environment: OUT (default gpu_out/), PYTHON (default .venv/bin/python, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=540
SMOKE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) BUDGET="${2:-}"; shift ;;
    --smoke) SMOKE=1 ;;
    *) echo "gpu_run.sh: argument '$1' is not allowed; allowed: --budget SECONDS, --smoke" >&2; exit 2 ;;
  esac
  shift
done
case "$BUDGET" in
  ''|*[!0-9]*) echo "gpu_run.sh: --budget '$BUDGET' is not allowed; allowed: whole seconds, at least 120" >&2; exit 2 ;;
esac
if [ "$BUDGET" -lt 120 ]; then
  echo "gpu_run.sh: --budget '$BUDGET' is not allowed; allowed: whole seconds, at least 120" >&2; exit 2
fi
START=$(date +%s)
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# A fixed folder: a second run on the same (still warm) machine resumes there, finished cells
# and scoring runs kept; a smoke run starts clean.
WORK="${TMPDIR:-/tmp}/corebench-gpu"
[ "$SMOKE" = 1 ] && rm -rf "$WORK"
mkdir -p "$WORK"
exec > >(tee -a "$OUT/run.log") 2>&1
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
RESERVE=30  # seconds kept for the boards and the packing
GRID=configs/cifar10_gpu.yaml
export PYTHONUNBUFFERED=1

step() { echo "== $(date -u +%H:%M:%S) UTC, ${1}: $(( $(date +%s) - START )) s of $BUDGET s used"; }
left() { echo $(( START + BUDGET - RESERVE - $(date +%s) )); }
capped() {  # capped SECONDS cmd...: the command, stopped (SIGINT, then KILL) after SECONDS
  local limit=$1; shift
  [ "$limit" -lt 5 ] && { echo "skipped (no time left): $*"; return 124; }
  timeout -s INT -k 15 "$limit" "$@"
}

step "1 install"
if ls gpu_carry/wheels/*.whl >/dev/null 2>&1 && [ "$SMOKE" = 0 ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
    gpu_carry/wheels/*.whl && export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import corebench.cli" 2>/dev/null; then
  if ! "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . ; then
    # no build backend there (setuptools >= 68): the package's folders linked as pyproject maps
    # them (corebench -> bench/, corebench.methods -> methods/); records then name no distribution
    echo "gpu_run.sh: editable install failed; importing corebench through links instead"
    mkdir -p "$WORK/shim/corebench"
    for f in "$PWD"/bench/*; do ln -s "$f" "$WORK/shim/corebench/"; done
    ln -s "$PWD/methods" "$WORK/shim/corebench/methods"
    export PYTHONPATH="$WORK/shim${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
"$PY" -c "import corebench, pydantic, pyautoattack, timm; print('imports ok')" || echo "gpu_run.sh: imports FAILED"

step "2 environment"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(cat gpu_carry/COMMIT 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
  echo "cpus: $(nproc)"
} | tee "$OUT/env.txt"

step "3 checks"
PYBIN=$(command -v "$PY" || echo "$PY")
VENV=$(dirname "$(dirname "$PYBIN")")
touch "$WORK/installed"  # make's install stamp: nothing is installed from the network here
{
  # `make test-gpu` where the Makefile's $(VENV)/bin/python is this Python, else its command
  if command -v make >/dev/null && [ -x "$VENV/bin/python" ] \
      && [ "$(realpath "$VENV/bin/python")" = "$(realpath "$PYBIN")" ]; then
    capped 75 make -s test-gpu VENV="$VENV" STAMP="$WORK/installed"
  else
    capped 75 "$PY" -m pytest -q -m gpu -rs
  fi
  echo "test-gpu exit status: $?"
  if [ "$SMOKE" = 1 ]; then
    capped 120 "$PY" benchmarks/gpu.py --smoke --json "$OUT/gpu_bench.json"
  else
    capped 120 "$PY" benchmarks/gpu.py --budget 40 --json "$OUT/gpu_bench.json"
  fi
  echo "benchmarks-gpu exit status: $?"
} 2>&1 | tee "$OUT/checks.log"

step "4 data"
if [ "$SMOKE" = 1 ]; then  # the first 100 / 40 images: the smoke grid only reads their shape
  DATA_ARGS=(--train 100 --test 40)
  SRC=${CIFAR10_JPEG:-gpu_carry/cifar10_jpeg.npz}
  [ -f "$SRC" ] || SRC=../shared/data/cifar10_jpeg.npz
else
  DATA_ARGS=(--workers "$(nproc)")
  SRC=gpu_carry/cifar10_jpeg.npz
fi
mkdir -p gpu_carry
"$PY" scripts/cifar10_jpeg_to_npz.py "$SRC" gpu_carry/cifar10_jpeg_decoded.npz "${DATA_ARGS[@]}" \
  || echo "gpu_run.sh: the data did not decode ($SRC); the grid will say what is missing"

step "5 sizing"
if [ "$SMOKE" = 1 ]; then
  capped 120 "$PY" benchmarks/gpu_sizing.py "$GRID" --budget "$(left)" --json "$OUT/sizing.json"
else
  capped 45 "$PY" benchmarks/gpu_sizing.py "$GRID" --budget "$(left)" --measure --json "$OUT/sizing.json"
fi

step "6 grid"
RUN=(-m corebench.cli run "$GRID" --results "$WORK/results" --cache "$WORK/cache" --no-progress)
[ "$SMOKE" = 1 ] && RUN+=(--smoke)
LIMIT=$(left)
capped $((LIMIT + 20)) "$PY" "${RUN[@]}" --time-limit "$LIMIT"
echo "corebench run exit status: $?"

step "7 boards and packing"
"$PY" -m corebench.cli leaderboard "$WORK/results" --out "$WORK/leaderboards" || echo "gpu_run.sh: boards FAILED"
[ "$SMOKE" = 0 ] && "$PY" -m corebench.cli status "$WORK/results" --grid "$GRID" 2>&1 | head -12
tar -czf "$OUT/results.tar.gz" -C "$WORK" results leaderboards 2>/dev/null \
  || tar -czf "$OUT/results.tar.gz" -C "$WORK" results
ls -la "$OUT"
step "done"
sleep 1  # let tee write the last lines of run.log
