"""Compute hooks, called by corebench's scoring run (this module may use torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def flip_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample CE of the horizontally mirrored batch; the model is in eval mode, x in [0, 1]."""
    with torch.no_grad():
        return F.cross_entropy(model(torch.flip(x, dims=[-1])), y, reduction="none")
