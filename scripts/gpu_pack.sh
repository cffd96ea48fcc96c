#!/usr/bin/env bash
# Build gpu_carry/, what the one GPU run (scripts/gpu_run.sh, issue 21) needs beside the working
# tree: the CIFAR-10 JPEG copy cut to all 50,000 train and the first N_TEST test images (its own
# layout: JPEG bytes are a third of the decoded pixels), and wheels of the Python packages the
# device lacks, pinned to the versions this checkout's .venv runs. Everything that travels
# (tracked and untracked-not-ignored files plus gpu_carry/) must stay under 64 MiB; the script
# checks that and says the sizes. The device machine has no network: nothing else reaches it.
#
#   scripts/gpu_pack.sh [--no-wheels] [--test N]     then: run with carry ["gpu_carry"] and
#   command "bash scripts/gpu_run.sh --budget 540"
#
# Environment: PYTHON (default .venv/bin/python), CIFAR10_JPEG (default ../shared/data/cifar10_jpeg.npz).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SRC=${CIFAR10_JPEG:-../shared/data/cifar10_jpeg.npz}
CARRY=${GPU_CARRY:-gpu_carry}  # another folder only for tests: gpu_run.sh reads gpu_carry/
LIMIT=$((64 * 1024 * 1024))
N_TEST=1000  # the GPU grid evaluates the first 1,000 test images (configs/cifar10_gpu.yaml)
WHEELS=1
# Packages the device's image lacks (/work/.library/device/KINDS.md lists what it has).
# typing_extensions too: pydantic needs a recent one, and the image's version is not known.
PACKAGES="pydantic pydantic_core annotated_types typing_inspection typing_extensions pyautoattack"
while [ $# -gt 0 ]; do
  case "$1" in
    --no-wheels) WHEELS=0 ;;
    --test) N_TEST="$2"; shift ;;
    *) echo "gpu_pack.sh: argument '$1' is not allowed; allowed: --no-wheels, --test N" >&2; exit 2 ;;
  esac
  shift
done
if [ ! -f "$SRC" ]; then
  echo "gpu_pack.sh: CIFAR10_JPEG '$SRC' is not allowed; allowed: the path of cifar10_jpeg.npz" >&2
  exit 2
fi

rm -rf "$CARRY"
mkdir -p "$CARRY/wheels"
# the device's copy has no .git: the commit (and whether tracked files differ) travels as a file
echo "$(git rev-parse HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo -dirty)" > "$CARRY/COMMIT"
"$PY" scripts/cifar10_jpeg_to_npz.py "$SRC" "$CARRY/cifar10_jpeg.npz" --test "$N_TEST" --keep-jpeg

if [ "$WHEELS" = 1 ]; then
  pins=$("$PY" -c "import sys; from importlib.metadata import version
print(' '.join(f'{n}=={version(n)}' for n in sys.argv[1:]))" $PACKAGES)
  echo "wheels: $pins (Python 3.12, x86-64, as the device runs)"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$CARRY/wheels" $pins
  # pyautoattack's wheel holds a 45 MB demo checkpoint (pyautoattack/examples/): left out
  "$PY" scripts/slim_wheel.py "$CARRY"/wheels/pyautoattack-*.whl pyautoattack/examples/
fi

tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carry=$(du -sb "$CARRY" | cut -f1)
total=$((tree + carry))
echo "travels: working tree $((tree / 1024)) KiB + $CARRY $((carry / 1024)) KiB = $((total / 1024)) KiB of $((LIMIT / 1024)) KiB"
if [ "$total" -gt "$LIMIT" ]; then
  echo "gpu_pack.sh: what travels is $total bytes; allowed: at most $LIMIT (64 MiB)" >&2
  exit 1
fi
