"""Per-epoch checkpoints: a killed or pre-empted run resumes from its last finished epoch.

A `Checkpoint` is one file in the cache (`<cache>/checkpoints/<cell id>.pt`) holding everything
the rest of a training run depends on: the model's weights and buffers, the optimiser and the
schedule, the batch-order and augmentation generator, torch's global RNG (CPU, and CUDA when
present: dropout and timm's stochastic depth draw from it) and the loop's own counters. It is
written atomically after every epoch and removed once the cell's record is written, so a
resumed run continues with exactly the state an uninterrupted one had: on CPU the record is
the same byte for byte, timings aside.

Files are read with `torch.load(weights_only=True)` only (tensors and plain containers, never
pickled code). A file that cannot be read, or that belongs to another run (its `tag`, the cell
id, differs), is reported once, removed, and the run starts from epoch 0.

The Slurm requeue (issue 12) builds on this: a requeued task reruns its cells and each one
resumes from its checkpoint.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch

from corebench.core.files import confined, write_atomic

log = logging.getLogger(__name__)

FORMAT = 1
SUFFIX = ".pt"


class Checkpoint:
    """The checkpoint file of one run (a cell's training, or a scoring run), keyed by `tag`."""

    def __init__(self, folder: str | Path, tag: str) -> None:
        self.folder = Path(folder)
        self.tag = tag
        self.path = confined(self.folder, f"{tag}{SUFFIX}")

    def __repr__(self) -> str:
        return f"Checkpoint({self.path})"

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` (tensors, numbers, strings and containers of them) atomically."""
        buf = io.BytesIO()
        torch.save({"format": FORMAT, "tag": self.tag, "state": state}, buf)
        write_atomic(self.path, lambda f: f.write(buf.getbuffer()), root=self.folder)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None (no file; or a broken or foreign one, which is removed)."""
        if not self.path.is_file():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(saved, dict) or saved.get("format") != FORMAT:
                raise ValueError("not a corebench checkpoint")
            if saved.get("tag") != self.tag:
                raise ValueError(f"written for {saved.get('tag')!r}")
            state = saved["state"]
            if not isinstance(state, dict):
                raise ValueError("no state")
        except Exception as exc:  # unreadable, truncated or foreign: start over, once
            log.warning("checkpoint %s cannot be used (%s: %s); removed, the run starts from the beginning",
                        self.path, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            self.delete()
            return None
        return state

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


def rng_state(device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """torch's global RNG states (CPU, and the device's CUDA generator when it is one)."""
    out = {"torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device | None = None) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def save_run(checkpoint: Checkpoint | None, *, epoch: int, model: torch.nn.Module,
             optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator,
             device: torch.device, **extra: Any) -> None:
    """Save a training loop's state after `epoch` epochs (a no-op without a checkpoint)."""
    if checkpoint is None:
        return
    checkpoint.save({
        "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "generator": generator.get_state(), "rng": rng_state(device),
        **extra,
    })  # fmt: skip


def resume_run(checkpoint: Checkpoint | None, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any, generator: torch.Generator, device: torch.device) -> dict[str, Any] | None:
    """Restore a loop's state from the checkpoint (if it has one) into the given objects; the
    saved dict (with `epoch`, the epochs done, and the loop's extras) or None."""
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is None:
        return None
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    generator.set_state(saved["generator"])
    set_rng_state(saved["rng"], device)
    return saved
