# corebench: the two set-up commands of the README, plus helpers.
# `make quickstart` and `make test` create .venv when it is missing and install everything.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: install quickstart test test-all test-gpu lint leaderboards verify benchmarks benchmarks-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(PIP) install $(TORCH) 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import torch, torchvision"
	$(PIP) install -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import corebench.methods, timm, pyautoattack"
	touch $(STAMP)

## Create .venv and install corebench (editable) with its dev tools, nothing else.
install: $(STAMP)

## Install, run the quickstart grid on the shipped digits data, write its leaderboards.
quickstart: $(STAMP)
	$(BIN)/corebench run configs/quickstart.yaml --results runs/results --workers 2
	$(BIN)/corebench leaderboard runs/results --out runs/leaderboards

## Install, lint (style and the import layering) and run the test suite (slow and GPU checks
## are skipped; see README).
test: lint
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

lint: $(STAMP)
	$(BIN)/ruff check bench methods tests benchmarks scripts examples
	$(BIN)/python scripts/check_layers.py

## Regenerate every board from the result records kept in the repository.
leaderboards: $(STAMP)
	$(BIN)/corebench leaderboard results --out leaderboards

## Re-derive 3 committed quickstart records (seeded sample) and compare them exactly (CPU).
verify: $(STAMP)
	$(BIN)/corebench verify results/quickstart --sample 3 --no-progress

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

## On a machine with CUDA: the GPU path's correctness tests, and its benchmark (under 8 minutes;
## it prints the card's name: copy its output into benchmarks/README.md with the date).
test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu -rs

benchmarks-gpu: $(STAMP)
	$(BIN)/python benchmarks/gpu.py

clean:
	rm -rf $(VENV) .pytest_cache cache runs
