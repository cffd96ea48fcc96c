"""A valid result record of the docs/RESULTS.md shape, for tests and benchmarks."""

from __future__ import annotations

from typing import Any

from corebench.record import SCHEMA_VERSION
from corebench.spec import stable_hash


def example_record(
    *,
    grid: str = "example",
    dataset: str = "digits",
    arch: str = "resnet18",
    regime: str = "standard",
    method: str = "random",
    method_label: str | None = None,
    fraction: float = 0.3,
    seed: int = 0,
    clean_acc: float | None = 90.0,
    autoattack_acc: float | None = 40.0,
    pgd_acc: float | None = None,
    error: str | None = None,
    eps: float = 32 / 255,
    n_examples: int = 450,
    autoattack_version: str = "custom",
    autoattack_attacks: list[str] | None = None,
) -> dict[str, Any]:
    """A valid record (failed when `error` is given).

    everything not passed is a fixed, plausible value,
    so the same arguments always give the same record.
    """
    if method_label is None:
        method_label = method
    if autoattack_attacks is None and autoattack_version == "custom":
        autoattack_attacks = ["apgd-ce", "apgd-t"]
    failed = error is not None
    key = {
        "dataset": dataset, "arch": arch, "scoring_arch": arch, "regime": regime,
        "method": method, "method_label": method_label, "fraction": fraction, "seed": seed,
    }  # fmt: skip
    options = {} if method == "full" else {"class_balanced": False}
    if method == "easycore":
        options = {"class_balanced": False, "direction": "easiest", "gradient_pass": "train"}
    evaluation = {
        "n_examples": n_examples, "batch_size": 500, "norm": "Linf", "eps": eps, "pgd_steps": 20,
        "pgd_step_size": eps / 4,
        "autoattack": {"version": autoattack_version, "attacks": autoattack_attacks, "seed": 0,
                       "enabled": True},
    }  # fmt: skip
    config = {
        "dataset": {"name": dataset, "root": None, "download": False, "path": None, "options": {}, "id": ""},
        "arch": {"name": arch, "kwargs": {}, "small_input_stem": None, "id": ""},
        "scoring_arch": {"name": arch, "kwargs": {}, "small_input_stem": None, "id": ""},
        "scoring": {"epochs": 10, "batch_size": 128, "lr": 0.1, "momentum": 0.9, "nesterov": True,
                    "weight_decay": 0.0005, "augment": True, "snapshot_epochs": [0]},
        "training": {"epochs": 15, "batch_size": 128, "lr": 0.1, "momentum": 0.9, "nesterov": True,
                     "weight_decay": 0.0005, "schedule": "cosine", "augment": True},
        "attack": {"eps": eps, "step_size": eps / 4, "steps": 10, "random_start": True, "trades_beta": 6.0},
        "evaluation": evaluation,
    }  # fmt: skip
    n_eval = min(n_examples, 450)
    if pgd_acc is None and autoattack_acc is not None:
        pgd_acc = min(100.0, autoattack_acc + 1.5)
    metrics = None
    coreset = None
    if not failed:
        metrics = {
            "clean_acc": clean_acc, "pgd_acc": pgd_acc, "autoattack_acc": autoattack_acc,
            "n_eval": n_eval,
            "autoattack_per_attack": {"clean": clean_acc, "apgd-ce": pgd_acc, "apgd-t": autoattack_acc},
        }  # fmt: skip
        n_train = 1347
        coreset = {
            "n_train": n_train, "size": max(1, round(fraction * n_train)),
            "indices_file": f"seed{seed}.indices.npy", "class_histogram": [],
        }  # fmt: skip
    return {
        "schema_version": SCHEMA_VERSION,
        "cell_id": stable_hash([key, config, options]),
        "status": "failed" if failed else "ok",
        "error": error,
        "grid": {"name": grid, "source": f"configs/{grid}.yaml"},
        "cell": key,
        "method_options": options,
        "config": config,
        "metrics": metrics,
        "coreset": coreset,
        "timings": {"scoring_s": 12.0, "selection_s": 0.01, "train_s": 20.0, "eval_s": 5.0, "total_s": 37.01},
        "versions": {"corebench": "0.1.0", "python": "3.11.7", "torch": "2.14.1", "torchvision": "0.29.1",
                     "timm": "1.0.31", "pyautoattack": "0.2.0", "numpy": "2.4.6", "git_commit": "abc1234"},
        "device": "cpu",
    }  # fmt: skip


def relpath(record: dict[str, Any]):
    """Where the store keeps a record: `spec.record_relpath` of its grid and cell key."""
    from corebench.spec import record_relpath

    return record_relpath(record["grid"]["name"], record["cell"])
