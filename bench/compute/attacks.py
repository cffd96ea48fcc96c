"""Training-time and evaluation-time L∞ attacks: PGD (Madry et al. 2018) and the TRADES loss.

Both work on images in [0, 1] (the model normalises inside), draw their randomness from an
explicit `torch.Generator`, differentiate with `torch.autograd.grad` with respect to the
input only (so no parameter gradients are left behind) and leave the model in the mode
they found it in. References:

- PGD: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR
  2018; the PyTorch form of locuslab/robust_overfitting `attack_pgd` (Rice et al. 2020):
  uniform start in the ε-ball, sign-gradient ascent on cross-entropy, projection onto the
  ε-ball and the image box after every step.
- TRADES: Zhang et al., "Theoretically Principled Trade-off between Robustness and
  Accuracy", ICML 2019; yaodongyu/TRADES `trades.py::trades_loss` (L∞ branch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from corebench.compute.data import host_to_device

TRADES_INIT_STD = 0.001  # the reference's Gaussian start: x + 0.001 * randn


def _noise(
    kind: str, x: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Noise shaped like x, drawn on the generator's device (a CPU generator feeds a GPU run,
    the copy queued without waiting for the device)."""
    device = generator.device if generator is not None else x.device
    if kind == "uniform":
        out = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype)
        out = out.mul_(2).sub_(1)
    else:
        out = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
    return host_to_device(out, x.device)


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Onto the L∞ ball around x, then onto the image box [0, 1] (the references' order)."""
    x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps)
    return x_adv.clamp_(0.0, 1.0)


def pgd_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L∞ PGD on cross-entropy (Madry et al. 2018); returns detached adversarial images.

    Runs in whatever mode the model is in: evaluation calls it in eval mode, PGD-AT in
    train mode (as locuslab/robust_overfitting does). The loss is summed over the batch so
    the sign of each sample's gradient does not depend on the batch size (sign steps make
    sum and mean otherwise identical). Only the input is differentiated: parameter `.grad`
    fields are never touched.
    """
    x = x.detach()
    if random_start:
        x_adv = _project(x + eps * _noise("uniform", x, generator), x, eps)
    else:
        x_adv = x.clone()
    with torch.enable_grad():
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, [x_adv])
            x_adv = _project(x_adv.detach() + step_size * grad.sign(), x, eps)
    return x_adv.detach()


def trades_adversary(
    model: nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The TRADES inner maximisation: sign-gradient ascent on KL(f(x) || f(x_adv)).

    As the reference: start at x + 0.001·N(0, 1) (not clipped before the first step),
    maximise the summed KL divergence, project onto the ε-ball and [0, 1] after every step,
    and clip to [0, 1] at the end. Runs in the model's current mode (trades_loss sets eval).
    """
    x = x.detach()
    x_adv = x + TRADES_INIT_STD * _noise("normal", x, generator)
    with torch.no_grad():
        p_natural = F.softmax(model(x), dim=1)  # the reference recomputes it each step: same value
    with torch.enable_grad():
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss_kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_natural, reduction="sum")
            (grad,) = torch.autograd.grad(loss_kl, [x_adv])
            x_adv = _project(x_adv.detach() + step_size * grad.sign(), x, eps)
    return x_adv.detach().clamp_(0.0, 1.0)


def trades_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    beta: float,
    eps: float,
    step_size: float,
    steps: int,
    generator: torch.Generator | None = None,
    x_adv: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TRADES: CE(f(x), y) + β · KL(f(x) || f(x_adv)) averaged over the batch.

    Follows yaodongyu/TRADES `trades_loss`: the adversary is found with the model in eval
    mode, the loss is computed in train mode, the KL term is `KLDivLoss(sum) / batch_size`
    (= 'batchmean') with gradients flowing through both f(x_adv) and the softmax target.
    One difference, for speed: the reference runs f(x) twice in train mode (once for CE, once
    for the KL target); both give the same values and gradients, so we reuse the logits,
    and BatchNorm running statistics see x once instead of twice.
    The model's original mode is restored. Returns (loss, natural logits). `x_adv`: an
    adversary already found by `trades_adversary` (the scoring run reads signals on it first).
    """
    was_training = model.training
    try:
        if x_adv is None:
            model.eval()
            x_adv = trades_adversary(model, x, eps=eps, step_size=step_size, steps=steps, generator=generator)
        model.train()
        logits = model(x)
        loss_natural = F.cross_entropy(logits, y)
        loss_robust = F.kl_div(
            F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1), reduction="sum"
        ) / x.shape[0]
        loss = loss_natural + beta * loss_robust
    finally:
        model.train(was_training)
    return loss, logits
