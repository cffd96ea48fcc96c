"""The scoring run's eval-mode passes over the training set: the exact per-sample input
gradients (EasyCore's AIGN), the snapshot rows (EL2N, loss, logits, GraNd) and the final
model's features and logits, plus the per-sample formulas the training pass shares (EL2N,
AUM's margin). `corebench.compute.scoring` calls them; they train nothing."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from corebench.compute.data import Dataset
from corebench.compute.models import NormalizedModel
from corebench.signals import SNAPSHOT

EVAL_BATCH = 512
# Batch of the exact input-gradient pass (activations only, no parameter gradients): large on a
# GPU; on a CPU large batches run slower (one pass over 2,000 CIFAR images took 0.7 training
# epochs at 128 and 1.2 at 1,024 on a 2-core machine: benchmarks/README.md).
INPUT_GRAD_BATCH = {"cuda": 1024, "cpu": 128}


def el2n(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖softmax − onehot(y)‖₂ per sample (Paul et al. 2021)."""
    return (probs - F.one_hot(y, probs.shape[1]).to(probs.dtype)).norm(dim=1)


def margin(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """AUM margin: score of the assigned class minus the largest other score (Pleiss et al. 2020)."""
    assigned = scores.gather(1, y[:, None]).squeeze(1)
    others = scores.scatter(1, y[:, None], float("-inf"))
    return assigned - others.max(1).values


def eval_batches(n: int) -> Iterable[slice]:
    for start in range(0, n, EVAL_BATCH):
        yield slice(start, min(n, start + EVAL_BATCH))


def eval_pass(model: NormalizedModel, data: Dataset, signals: set[str], out: dict, epoch: int, device: torch.device) -> None:
    """Eval-mode, un-augmented: exact per-sample input gradients (samples are independent).

    Eval-mode BatchNorm uses its running statistics, so the gradient of the batch's summed
    loss with respect to xᵢ is ∇ₓ CE(xᵢ, yᵢ) of sample i alone. Only the input needs a
    gradient: the parameters' requires_grad is switched off for the pass (and restored), so
    backward computes no weight gradients, and batches are large on a GPU (`INPUT_GRAD_BATCH`).
    """
    out["input_grad_norm_eval"][epoch] = input_grad_norms(model, data.x_train, data.y_train, device)


def input_grad_norms(model: NormalizedModel, x_all: torch.Tensor, y_all: torch.Tensor, device: torch.device,
                     batch_size: int | None = None) -> np.ndarray:
    """‖∇ₓ CE(f(xᵢ), yᵢ)‖₂ for every sample, model in eval mode, parameters without gradients."""
    batch_size = batch_size or INPUT_GRAD_BATCH.get(device.type, INPUT_GRAD_BATCH["cpu"])
    model.eval()
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    norms = np.empty(x_all.shape[0], dtype=np.float32)
    try:
        for p in params:
            p.requires_grad_(False)
        for start in range(0, x_all.shape[0], batch_size):
            x = x_all[start : start + batch_size].to(device).requires_grad_(True)
            y = y_all[start : start + batch_size].to(device)
            losses = F.cross_entropy(model(x), y, reduction="none")
            (grad,) = torch.autograd.grad(losses.sum(), x)
            norms[start : start + x.shape[0]] = grad.flatten(1).norm(dim=1).cpu().numpy()
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
    return norms


def snapshot(model: NormalizedModel, data: Dataset, signals: set[str], out: dict, snapshot_epochs: list[int],
              epoch: int, device: torch.device) -> None:
    """Built-in snapshot rows at the chosen epochs (0 = before any training step), eval mode."""
    if epoch not in snapshot_epochs or not signals & set(SNAPSHOT):
        return
    row = snapshot_epochs.index(epoch)
    model.eval()
    head_signals = {"el2n_eval", "grand_last", "loss_eval", "logits_eval"}
    if signals & head_signals:
        for name, values in head_pass(model, data, device).items():
            if name in signals:
                out[name][row] = values
    if "grand_all" in signals:
        out["grand_all"][row] = grand_all(model, data, device)


def head_pass(model: NormalizedModel, data: Dataset, device: torch.device) -> dict[str, np.ndarray]:
    """EL2N, the loss, the logits and the last layer's gradient norm from one forward pass.

    For a linear classifier the per-sample gradient is (p − y) hᵀ (and p − y for the
    bias), so ‖∇‖² = ‖p − y‖² (‖h‖² + 1): the EL2N times a feature-norm factor.
    """
    head = model.classifier()
    has_bias = getattr(head, "bias", None) is not None
    parts: dict[str, list[torch.Tensor]] = {"el2n_eval": [], "grand_last": [], "loss_eval": [], "logits_eval": []}
    with torch.no_grad():
        for sl in eval_batches(data.x_train.shape[0]):
            h = model.features(data.x_train[sl].to(device))
            y = data.y_train[sl].to(device)
            logits = head(h)
            err = el2n(logits.softmax(1), y)
            parts["el2n_eval"].append(err.cpu())
            parts["grand_last"].append((err * (h.pow(2).sum(1) + float(has_bias)).sqrt()).cpu())
            parts["loss_eval"].append(F.cross_entropy(logits, y, reduction="none").cpu())
            parts["logits_eval"].append(logits.half().cpu())
    return {k: torch.cat(v).numpy() for k, v in parts.items()}


def final_pass(model: NormalizedModel, data: Dataset, signals: set[str], out: dict, device: torch.device) -> None:
    """The final model's penultimate features and logits, eval mode, from one forward pass."""
    model.eval()
    head = model.classifier()
    feats, logits = [], []
    with torch.no_grad():
        for sl in eval_batches(data.x_train.shape[0]):
            h = model.features(data.x_train[sl].to(device))
            feats.append(h.float().cpu())
            if "logits_final" in signals:
                logits.append(head(h).half().cpu())
    if "features" in signals:
        out["features"] = torch.cat(feats).numpy()
    if "logits_final" in signals:
        out["logits_final"] = torch.cat(logits).numpy()


def grand_all(model: NormalizedModel, data: Dataset, device: torch.device) -> np.ndarray:
    """Per-sample gradient norms over every parameter, with torch.func (vmap over grad)."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    n_params = sum(p.numel() for p in params.values())
    chunk = int(max(1, min(256, 2.5e8 // max(1, n_params))))

    def loss_one(p, x, y):
        logits = functional_call(model, (p, buffers), (x[None],))
        return F.cross_entropy(logits, y[None])

    per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))
    norms = []
    for start in range(0, data.x_train.shape[0], chunk):
        x = data.x_train[start : start + chunk].to(device)
        y = data.y_train[start : start + chunk].to(device)
        grads = per_sample(params, x, y)
        sq = sum(g.flatten(1).pow(2).sum(1) for g in grads.values())
        norms.append(sq.sqrt().cpu())
    return torch.cat(norms).numpy()
