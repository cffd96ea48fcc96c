"""The benchmark scripts stay runnable (smoke only: timing targets live in `make benchmarks`)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_selection_benchmark_selects_every_method_on_its_fake_signals(monkeypatch, capsys):
    bench = importlib.import_module("bench_selection")
    monkeypatch.setattr(bench, "N", 2_000)
    result = bench.main()
    assert result["total_s"] > 0 and result["n"] == 2_000
    out = capsys.readouterr().out
    from corebench.methods import list_methods

    for name in list_methods():
        assert name in out


@pytest.mark.slow
def test_all_benchmarks_run():
    assert importlib.import_module("run_all").main() in (0, 1)


def test_run_all_judges_each_target_by_its_ratio():
    run_all = importlib.import_module("run_all")
    assert run_all.within_target({"ratio_to_target": 0.7})
    assert not run_all.within_target({"ratio_to_target": 1.12})
    assert not run_all.within_target({"ok": False, "ratio_to_target": 0.5})
