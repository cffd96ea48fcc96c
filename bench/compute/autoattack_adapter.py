"""AutoAttack (Croce & Hein, ICML 2020) through `pyautoattack`, isolated from the rest of the run.

The only module that imports `pyautoattack`. The package seeds the global torch RNGs inside
every attack, switches `sys.settrace` during its dynamic-defence check, lets FAB accumulate
parameter gradients and logs every step; a benchmark that trains and attacks many models in
one process must not inherit any of that. `run_autoattack` therefore saves and restores the
torch (CPU and CUDA), numpy and `random` RNG states, the trace function, the model's mode and
its parameters' `requires_grad` flags, and quiets the 'auto-attack' logger below WARNING
unless this module's logger is at DEBUG.

Per-attack robust accuracies: the attacks of a version run one at a time, each on the points
still robust after the previous ones — the cascade `run_standard_evaluation` itself performs,
and the same one-attack-at-a-time use the package makes in `run_standard_evaluation_individual`.
Every attack seeds itself per batch and the batches hold the same points in the same order, so
the final robust accuracy equals that of one `run_standard_evaluation` call. The package's
start-up checks (randomised or dynamic defence, logits, classes) run with the first attack, as
in that one call; the later attacks of the cascade skip them (`_checks_done`: the same model,
a subset of the same points), so the adapter costs what a direct call costs
(benchmarks/bench_autoattack.py).
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from corebench.core.spec import AutoAttackConfig, check_attacks_fit

log = logging.getLogger(__name__)

AA_LOGGER = "auto-attack"


@contextlib.contextmanager
def isolated(model: nn.Module) -> Iterator[None]:
    """Run a block that may touch global RNGs, the tracer, the model's mode and parameter grads."""
    torch_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    np_state = np.random.get_state()
    py_state = random.getstate()
    tracer = sys.gettrace()
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    aa_logger = logging.getLogger(AA_LOGGER)
    aa_level = aa_logger.level
    if not log.isEnabledFor(logging.DEBUG):
        aa_logger.setLevel(logging.WARNING)
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)  # FAB calls backward(): keep parameter .grad untouched
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
        aa_logger.setLevel(aa_level)
        sys.settrace(tracer)
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


CHECKS = ("check_randomized", "check_range_output", "check_dynamic", "check_n_classes")


@contextlib.contextmanager
def _checks_done(num_classes: int) -> Iterator[None]:
    """Inside the block the package's start-up checks are not run again (they ran with the
    first attack of this evaluation); `check_range_output` still answers the class count."""
    from pyautoattack import checks

    saved = {name: getattr(checks, name) for name in CHECKS}
    checks.check_randomized = checks.check_dynamic = checks.check_n_classes = lambda *a, **k: None
    checks.check_range_output = lambda *a, **k: num_classes
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(checks, name, fn)


def run_autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> tuple[float, dict[str, float], tuple[str, ...]]:
    """`run_autoattack_per_image` without the per-image outcomes: (robust accuracy in percent,
    accuracy after each attack, the attacks run)."""
    _, per_attack, ran = run_autoattack_per_image(model, x, y, **kwargs)
    return per_attack[ran[-1]], per_attack, ran


def run_autoattack_per_image(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "Linf",
    autoattack: AutoAttackConfig | None = None,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, dict[str, float], tuple[str, ...]]:
    """AutoAttack on (x, y) in [0, 1], as `autoattack` configures it (default: version
    standard, seed 0; validated where the config was built).

    Returns (per image: robust after every attack, a bool array; robust accuracy after each attack in percent
    keyed 'clean' then by attack name, the attacks actually run). On datasets with fewer
    than 10 classes the targeted attacks aim at every other class (the package's default of
    9 targets assumes at least 10 classes).
    """
    from pyautoattack import AutoAttack  # lazy: only evaluation needs it

    aa = autoattack or AutoAttackConfig()
    to_run = aa.run_list()
    n = int(x.shape[0])
    device = torch.device(device)
    x = x.detach().to(device)
    y = y.detach().to(device)

    with isolated(model):
        with torch.no_grad():
            predicted, num_classes = _predict(model, x, batch_size)
            robust = predicted == y
        check_attacks_fit(to_run, num_classes)
        if aa.version == "custom":
            adversary = AutoAttack(model, attacks=list(to_run), device=device, eps=eps, norm=norm,
                                   seed=aa.seed, version="custom")
        else:
            adversary = AutoAttack(model, device=device, eps=eps, norm=norm, seed=aa.seed, version=aa.version)
        budget = aa.resolved()  # public attributes the package's own _set_version sets
        targets = min(budget.target_classes, num_classes - 1)
        adversary.apgd.n_restarts = budget.apgd_restarts
        adversary.apgd.n_iter = adversary.apgd_targeted.n_iter = budget.apgd_iterations
        adversary.apgd_targeted.n_target_classes = adversary.fab.n_target_classes = targets
        if aa.fab_iterations is not None:
            adversary.fab.n_iter = aa.fab_iterations
        if aa.square_queries is not None:
            adversary.square.n_queries = aa.square_queries

        per_attack = {"clean": 100.0 * robust.sum().item() / n}
        checked = False
        for name in to_run:
            idx = torch.nonzero(robust).flatten()
            if idx.numel() > 0:
                adversary.attacks_to_run = [name]
                with _checks_done(num_classes) if checked else contextlib.nullcontext():
                    _, y_adv = adversary.run_standard_evaluation(x[idx], y[idx], batch_size=batch_size)
                checked = True
                robust[idx] = y_adv.to(device) == y[idx]
            per_attack[name] = 100.0 * robust.sum().item() / n
            log.debug("AutoAttack %s: robust accuracy %.2f%%", name, per_attack[name])
    return robust.cpu().numpy().astype(bool), per_attack, to_run


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, int]:
    """The predicted classes of x, and the number of classes."""
    logits = [model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return torch.cat([z.argmax(1) for z in logits]), int(logits[0].shape[1])
