"""A valid result record of the docs/RESULTS.md shape, for tests and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from corebench.core.spec import stable_hash
from corebench.store.record import SCHEMA_VERSION, parse_record
from corebench.store.results import Stored, stored


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
    schema_version: int = SCHEMA_VERSION,
) -> dict[str, Any]:
    """A valid record (failed when `error` is given).

    everything not passed is a fixed, plausible value,
    so the same arguments always give the same record. `eps` is one radius (a list of one in
    the record) or a list; the robust numbers given are those of the largest. `schema_version`
    1 gives a record as schema 1 wrote it (one ε as a number, no robust list, training or cost).
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
    radii = sorted(eps) if isinstance(eps, (list, tuple)) else [eps]
    v1 = schema_version == 1
    evaluation = {
        "n_examples": n_examples, "batch_size": 500, "norm": "Linf", "eps": radii[0] if v1 else radii,
        "pgd_steps": 20, "pgd_step_size": radii[0] / 4 if v1 else [e / 4 for e in radii],
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
                     "weight_decay": 0.0005, "schedule": "cosine", "augment": True,
                     **({} if v1 else {"budget": "epochs", "steps": None})},
        "attack": {"eps": radii[-1], "step_size": radii[-1] / 4, "steps": 10, "random_start": True, "trades_beta": 6.0},
        "evaluation": evaluation,
    }  # fmt: skip
    n_eval = min(n_examples, 450)
    if pgd_acc is None and autoattack_acc is not None:
        pgd_acc = min(100.0, autoattack_acc + 1.5)
    metrics = None
    coreset = None
    extra: dict[str, Any] = {}
    if not failed:
        per_attack = {"clean": clean_acc, "apgd-ce": pgd_acc, "apgd-t": autoattack_acc}
        metrics = {
            "clean_acc": clean_acc, "pgd_acc": pgd_acc, "autoattack_acc": autoattack_acc,
            "n_eval": n_eval, "autoattack_per_attack": per_attack,
        }  # fmt: skip
        n_train = 1347
        size = max(1, round(fraction * n_train))
        coreset = {
            "n_train": n_train, "size": size,
            "indices_file": f"seed{seed}.indices.npy", "class_histogram": [],
        }  # fmt: skip
        if not v1:  # smaller radii: a little more robust, the largest gives the top-level numbers
            metrics["robust"] = [
                {"eps": e, "pgd_acc": min(100.0, pgd_acc + 10.0 * (len(radii) - 1 - i)) if pgd_acc is not None else None,
                 "autoattack_acc": min(100.0, autoattack_acc + 10.0 * (len(radii) - 1 - i)) if autoattack_acc is not None else None,
                 "autoattack_per_attack": per_attack if i == len(radii) - 1 else {}}
                for i, e in enumerate(radii)
            ]  # fmt: skip
            steps = 15 * -(-size // 128)
            scoring = [] if method in ("full", "random") else [{"key": "0123456789abcdef", "seed": 1234, "epochs": 10, "seconds": 12.0}]
            extra = {"training": {"budget": "epochs", "epochs": 15.0, "steps": steps, "seconds": 19.5},
                     "cost": {"scoring_runs": scoring, "train_steps": steps, "train_s": 20.0}}
    return {
        "schema_version": schema_version,
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
        **extra,
    }  # fmt: skip


def with_outcomes(rec: dict[str, Any], clean: Any, robust: Any) -> dict[str, Any]:
    """`rec` (one ε) with per-image outcomes and its accuracies set from them (PGD = AutoAttack)."""
    import json

    import numpy as np

    from corebench.store.record import pack_bits

    clean, robust = np.asarray(clean, dtype=bool), np.asarray(robust, dtype=bool)
    n = clean.size
    rec = json.loads(json.dumps(rec))
    m = rec["metrics"]
    m.update(n_eval=n, clean_acc=100.0 * clean.sum() / n, pgd_acc=100.0 * robust.sum() / n,
             autoattack_acc=100.0 * robust.sum() / n, autoattack_per_attack={})
    m["robust"][0].update(pgd_acc=m["pgd_acc"], autoattack_acc=m["autoattack_acc"], autoattack_per_attack={})
    rec["config"]["evaluation"]["n_examples"] = n
    eps = m["robust"][0]["eps"]
    rec["per_image_outcomes"] = {"n": n, "clean": pack_bits(clean),
                                 "robust": [{"eps": eps, "pgd": pack_bits(robust), "autoattack": pack_bits(robust)}]}
    return rec


def relpath(record: dict[str, Any]):
    """Where the store keeps a record: `spec.record_relpath` of its grid and cell key."""
    from corebench.core.spec import record_relpath

    return record_relpath(record["grid"]["name"], record["cell"])


def as_stored(record: dict[str, Any], root: str | Path | None = None) -> Stored:
    """A hand-made record as `results.scan` yields it: parsed (strictly, from its JSON text) and
    placed at `root / relpath(record)` (its path need not exist)."""
    path = Path(root if root is not None else "/x") / relpath(record)
    return stored(path, parse_record(json.dumps(record)))
