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


def test_training_benchmark_trains_the_same_weights_as_its_hand_written_baseline(capsys):
    result = importlib.import_module("bench_training").main(n=256, repeats=1)
    assert result["same_weights"] and result["ratio"] > 0
    assert "hand-written loop (baseline)" in capsys.readouterr().out


def test_sharing_benchmark_runs_each_score_based_method_alone_and_all_together():
    result = importlib.import_module("bench_sharing").main(n=32, epochs=1)
    assert "random" not in result["methods"] and {"easycore", "grand"} <= set(result["methods"])
    assert result["speedup"] > 1


def test_autoattack_benchmark_gets_the_same_robust_accuracy_both_ways():
    result = importlib.import_module("bench_autoattack").main(n=4, repeats=1, train_epochs=1, n_train=64,
                                                              attacks=("apgd-ce",))
    assert result["same_result"]


def test_memory_benchmark_measures_a_scoring_run_in_its_own_process():
    result = importlib.import_module("bench_memory").main(n=256)
    assert result["before"] >= result["start_rss"] > 0 and result["peak"] >= result["before"]
    assert result["dataset_bytes"] == 256 * 3 * 32 * 32 * 4 + 256 * 8 + 100 * 3 * 32 * 32 * 4 + 100 * 8


def test_gpu_benchmark_refuses_in_one_line_without_cuda_and_smoke_runs_every_path(capsys):
    import torch

    gpu = importlib.import_module("gpu")
    if not torch.cuda.is_available():
        assert gpu.main([]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no CUDA device" in err
    assert gpu.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    for part in ("card: CPU", "standard", "pgd_at", "trades", "AutoAttack", "smoke run"):
        assert part in out


def test_adversarial_scoring_benchmark_times_every_regime(capsys):
    result = importlib.import_module("bench_adversarial_scoring").main(n=128, repeats=1)
    assert set(result["ratio"]) == {"standard", "pgd_at", "trades"} and result["ratio"]["standard"] == 1.0
    assert all(s > 0 for s in result["epoch_s"].values())
    assert "pgd_at" in capsys.readouterr().out
