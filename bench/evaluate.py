"""The single evaluation entry point: clean, PGD-k and AutoAttack accuracy on the test split.

As RobustBench does, the first `n_examples` test images are used (no shuffling, so every
model of a grid is attacked on the same images), the model is put in eval mode here, and
inputs stay in [0, 1] (normalisation lives inside the model). Accuracies are percentages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from corebench.attacks import pgd_attack
from corebench.autoattack_adapter import run_autoattack
from corebench.data import Dataset
from corebench.faults import fault_point
from corebench.spec import EvaluationConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation measured, with the protocol that produced it."""

    clean_acc: float
    pgd_acc: float
    autoattack_acc: float | None  # None when AutoAttack is disabled
    n_eval: int
    eps: float
    norm: str
    pgd_steps: int
    pgd_step_size: float
    autoattack_version: str
    autoattack_attacks: tuple[str, ...]
    autoattack_per_attack: dict[str, float]


def evaluate(
    model: nn.Module,
    data: Dataset,
    cfg: EvaluationConfig,
    device: torch.device,
    *,
    progress: bool = True,
) -> EvalResult:
    """Clean, PGD-k (random start, fixed seed) and AutoAttack accuracy of `model`.

    `cfg` may leave ε and the PGD step unset; they are resolved against the dataset. The PGD start is
    drawn from a generator seeded with `cfg.autoattack.seed`, so the evaluation is a
    deterministic function of the model and the config. The model is left in eval mode.
    """
    cfg = cfg.resolved(data.info.eps)
    n = min(cfg.n_examples, int(data.x_test.shape[0]))
    x_all, y_all = data.x_test[:n], data.y_test[:n]
    model.to(device).eval()
    generator = torch.Generator().manual_seed(cfg.autoattack.seed)

    clean = robust = 0
    batches = range(0, n, cfg.batch_size)
    for start in tqdm(batches, desc="clean+PGD", leave=False, disable=not progress):
        x = x_all[start : start + cfg.batch_size].to(device)
        y = y_all[start : start + cfg.batch_size].to(device)
        with torch.no_grad():
            correct = model(x).argmax(1) == y
        x_adv = pgd_attack(model, x, y, eps=cfg.eps, step_size=cfg.pgd_step_size,
                           steps=cfg.pgd_steps, random_start=True, generator=generator)
        with torch.no_grad():
            # x itself lies in the ball: robust means right on x and on x_adv (as AutoAttack counts)
            robust += (correct & (model(x_adv).argmax(1) == y)).sum().item()
        clean += correct.sum().item()
    clean_acc, pgd_acc = 100.0 * clean / n, 100.0 * robust / n

    aa = cfg.autoattack
    aa_acc: float | None = None
    per_attack: dict[str, float] = {}
    ran: tuple[str, ...] = ()
    if aa.enabled:
        fault_point("autoattack")
        log.debug("AutoAttack %s (%s) on %d examples", aa.version, ", ".join(aa.attacks), n)
        aa_acc, per_attack, ran = run_autoattack(
            model, x_all, y_all, eps=cfg.eps, norm=cfg.norm, autoattack=aa,
            batch_size=cfg.batch_size, device=device,
        )
    log.info("eval: clean %.2f%%, PGD-%d %.2f%%, AutoAttack %s", clean_acc, cfg.pgd_steps, pgd_acc,
             "off" if aa_acc is None else f"{aa_acc:.2f}%")
    return EvalResult(
        clean_acc=clean_acc,
        pgd_acc=pgd_acc,
        autoattack_acc=aa_acc,
        n_eval=n,
        eps=cfg.eps,
        norm=cfg.norm,
        pgd_steps=cfg.pgd_steps,
        pgd_step_size=cfg.pgd_step_size,
        autoattack_version=aa.version,
        autoattack_attacks=ran,
        autoattack_per_attack=per_attack,
    )
