"""The single evaluation entry point: clean, PGD-k and AutoAttack accuracy on the test split.

As RobustBench does, the first `n_examples` test images are used (no shuffling, so every
model of a grid is attacked on the same images), the model is put in eval mode here, and
inputs stay in [0, 1] (normalisation lives inside the model). Accuracies are percentages.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from corebench.compute.attacks import pgd_attack
from corebench.compute.autoattack_adapter import run_autoattack_per_image
from corebench.compute.data import Dataset
from corebench.compute.fastpath import autocast, lay_out_for_evaluation
from corebench.core.faults import fault_point
from corebench.core.spec import EvaluationConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RobustResult:
    """Robust accuracy at one ε."""

    eps: float
    pgd_step_size: float
    pgd_acc: float
    autoattack_acc: float | None  # None when AutoAttack is disabled
    autoattack_per_attack: dict[str, float]
    pgd_correct: np.ndarray | None = field(default=None, compare=False, repr=False)  # per evaluated image: right on x and on its PGD point
    autoattack_correct: np.ndarray | None = field(default=None, compare=False, repr=False)  # per evaluated image: robust to every AutoAttack attack


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation measured, with the protocol that produced it.

    `robust` has one entry per ε, ascending; the top-level `pgd_acc`, `autoattack_acc` and
    `autoattack_per_attack` (and `eps`) are those of the largest ε.
    """

    clean_acc: float
    n_eval: int
    norm: str
    pgd_steps: int
    autoattack_version: str
    autoattack_attacks: tuple[str, ...]
    robust: tuple[RobustResult, ...]
    predicted_histogram: tuple[int, ...] = ()  # clean predictions per class (flags a degenerate model)
    clean_correct: np.ndarray | None = field(default=None, compare=False, repr=False)  # per evaluated image: classified right (bool)

    @property
    def headline(self) -> RobustResult:
        return self.robust[-1]

    @property
    def eps(self) -> float:
        return self.headline.eps

    @property
    def pgd_step_size(self) -> float:
        return self.headline.pgd_step_size

    @property
    def pgd_acc(self) -> float:
        return self.headline.pgd_acc

    @property
    def autoattack_acc(self) -> float | None:
        return self.headline.autoattack_acc

    @property
    def autoattack_per_attack(self) -> dict[str, float]:
        return self.headline.autoattack_per_attack


def _in_precision(fn: Callable[..., EvalResult]) -> Callable[..., EvalResult]:
    """Run the evaluation in `cfg.precision`: fp32 unless the grid asks for bf16 autocast
    (`evaluation.precision`), whatever the training used."""

    @functools.wraps(fn)
    def run(model: nn.Module, data: Dataset, cfg: EvaluationConfig, device: torch.device, **kwargs) -> EvalResult:
        with autocast(torch.device(device), cfg.precision):
            return fn(model, data, cfg, device, **kwargs)

    return run


@_in_precision
def evaluate(
    model: nn.Module,
    data: Dataset,
    cfg: EvaluationConfig,
    device: torch.device,
    *,
    progress: bool = True,
) -> EvalResult:
    """Clean accuracy once, then PGD-k (random start, fixed seed) and AutoAttack accuracy at each ε.

    `cfg` may leave ε and the PGD step unset; they are resolved against the dataset. The PGD
    start at each ε is drawn from a generator seeded with `cfg.autoattack.seed` (a fresh one per
    ε, so one ε of a list gets the numbers it gets alone), so the evaluation is a
    deterministic function of the model and the config. The model is left in eval mode.
    """
    cfg = cfg.resolved(data.info.eps)
    n = min(cfg.n_examples, int(data.x_test.shape[0]))
    x_all, y_all = data.x_test[:n], data.y_test[:n]
    lay_out_for_evaluation(model.to(device), cfg.channels_last, torch.device(device)).eval()

    correct_all = []
    predicted = torch.zeros(data.info.num_classes, dtype=torch.int64)
    batches = range(0, n, cfg.batch_size)
    with torch.no_grad():
        for start in batches:
            x = x_all[start : start + cfg.batch_size].to(device)
            y = y_all[start : start + cfg.batch_size].to(device)
            pred = model(x).argmax(1)
            correct_all.append(pred == y)
            predicted += torch.bincount(pred.cpu(), minlength=data.info.num_classes)[: data.info.num_classes]
    clean_acc = 100.0 * int(_bools(correct_all).sum()) / n

    aa = cfg.autoattack
    results = []
    ran: tuple[str, ...] = ()
    for eps, step in cfg.radii():
        generator = torch.Generator().manual_seed(aa.seed)
        pgd_correct = []
        for i, start in enumerate(tqdm(batches, desc=f"PGD eps={eps:.4g}", leave=False, disable=not progress)):
            x = x_all[start : start + cfg.batch_size].to(device)
            y = y_all[start : start + cfg.batch_size].to(device)
            x_adv = pgd_attack(model, x, y, eps=eps, step_size=step, steps=cfg.pgd_steps, random_start=True,
                               generator=generator)
            with torch.no_grad():
                # x itself lies in the ball: robust means right on x and on x_adv (as AutoAttack counts)
                pgd_correct.append(correct_all[i] & (model(x_adv).argmax(1) == y))
        pgd_mask = _bools(pgd_correct)
        pgd_acc = 100.0 * int(pgd_mask.sum()) / n
        aa_acc: float | None = None
        aa_mask: np.ndarray | None = None
        per_attack: dict[str, float] = {}
        if aa.enabled:
            fault_point("autoattack")
            log.debug("AutoAttack %s (%s) at eps %.4g on %d examples", aa.version, ", ".join(aa.attacks), eps, n)
            aa_mask, per_attack, ran = run_autoattack_per_image(
                model, x_all, y_all, eps=eps, norm=cfg.norm, autoattack=aa,
                batch_size=cfg.batch_size, device=device,
            )
            aa_acc = per_attack[ran[-1]]
        log.info("eval: clean %.2f%%, eps %.4g: PGD-%d %.2f%%, AutoAttack %s", clean_acc, eps, cfg.pgd_steps, pgd_acc,
                 "off" if aa_acc is None else f"{aa_acc:.2f}%")
        results.append(RobustResult(eps=eps, pgd_step_size=step, pgd_acc=pgd_acc, autoattack_acc=aa_acc,
                                    autoattack_per_attack=per_attack, pgd_correct=pgd_mask,
                                    autoattack_correct=aa_mask))
    return EvalResult(
        clean_acc=clean_acc,
        n_eval=n,
        norm=cfg.norm,
        pgd_steps=cfg.pgd_steps,
        autoattack_version=aa.version,
        autoattack_attacks=ran,
        robust=tuple(results),
        predicted_histogram=tuple(int(v) for v in predicted.tolist()),
        clean_correct=_bools(correct_all),
    )


def _bools(batches: list[torch.Tensor]) -> np.ndarray:
    """Per-batch bool tensors as one bool array, in test-image order."""
    return torch.cat([b.cpu() for b in batches]).numpy().astype(bool)
