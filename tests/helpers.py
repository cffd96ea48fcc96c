"""Small builders shared by test files (import as `from helpers import ...`)."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torch import nn

from corebench.compute.data import DatasetInfo
from corebench.compute.models import NormalizedModel


def tiny_model(info: DatasetInfo, seed: int = 0, num_classes: int | None = None) -> NormalizedModel:
    """A small conv net with BatchNorm (so train/eval mode matters), normalising inside."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(info.input_shape[0], 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * (info.input_shape[1] // 2) * (info.input_shape[2] // 2), num_classes or info.num_classes),
    )
    return NormalizedModel(net, info.mean, info.std)


def final_scoring_model(data, arch, cfg, seed: int) -> NormalizedModel:
    """The final model of a scoring run (re-run with the same seed, kept), in eval mode."""
    from corebench.compute import scoring, signal_passes

    captured = {}
    original = signal_passes.final_pass

    def keep(model, data, names, out, device):
        captured["model"] = model
        return original(model, data, names, out, device)

    signal_passes.final_pass = keep
    try:
        scoring.run_scoring(data, arch, cfg, seed, {"features"}, device=torch.device("cpu"), progress=False)
    finally:
        signal_passes.final_pass = original
    return captured["model"].eval()


# The fastest grid that still runs every phase: digits, a 4-channel ResNet-10t, 2 epochs each,
# 16 test images, AutoAttack's APGD-CE only; three cells (full data, easycore, random).
FAST_GRID = {
    "name": "fast",
    "datasets": ["digits"],
    "architectures": [{"name": "resnet10t", "id": "r10w4", "kwargs": {"channels": [4, 8, 16, 32], "stem_width": 4}}],
    "fractions": [0.3],
    "methods": ["easycore", "random"],
    "regimes": ["standard"],
    "seeds": [0],
    "scoring": {"epochs": 2, "snapshot_epochs": [0]},
    "training": {"epochs": 2},
    "evaluation": {"n_examples": 16, "pgd_steps": 1, "autoattack": {"version": "custom", "attacks": ["apgd-ce"]}},
}


def write_fast_grid(folder: Path, **changes) -> Path:
    """FAST_GRID with top-level `changes`, written as `<folder>/<name>.yaml`."""
    grid = {**FAST_GRID, **changes}
    path = Path(folder) / f"{grid['name']}.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def without_seconds(record: dict) -> dict:
    """A record without its wall-clock seconds (timings, training.seconds, cost's seconds): what
    must be equal between two runs of one cell, however loaded the machine was."""
    out = {k: v for k, v in record.items() if k != "timings"}
    if out.get("training"):
        out["training"] = {k: v for k, v in out["training"].items() if k != "seconds"}
    if out.get("cost"):
        out["cost"] = {k: v for k, v in out["cost"].items() if k != "train_s"}
        out["cost"]["scoring_runs"] = [{k: v for k, v in r.items() if k != "seconds"} for r in out["cost"]["scoring_runs"]]
    return out
