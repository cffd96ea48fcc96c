"""`corebench run GRID --smoke`: every kind of cell of a grid, in seconds, on stand-in data.

A grid that would crash should crash before its first real hour, and a grid whose data is not
on this machine (the paper grids in CI) should still be checked end to end. The smoke grid
keeps every dataset name and class count (as a generated stand-in, `data.stand_in`), every
architecture, scoring architecture, regime and method entry, the full-data references, and
each regime's smallest and largest fraction, on the grid's first seed; it cuts every method to
one scoring run, every scoring schedule to one epoch (or to one more than the longest sliding
window a method reads, TDDS or Dynamic Uncertainty, at most the grid's), every training to one
step of a few images, and every attack to a few steps on a few evaluation images at the largest
ε. Its records go to a
scratch folder unless `--results` is given, and say `stand_in: true`: they are never numbers.
"""

from __future__ import annotations

import dataclasses

from corebench.core.spec import GridSpec, MethodSpec
from corebench.methods import create_method

SMOKE_EXAMPLES = 8  # evaluated images
SMOKE_ATTACK_STEPS = 2  # PGD steps of training attacks and of the evaluation's PGD, APGD iterations
SMOKE_SQUARE_QUERIES = 10
SMOKE_TARGETS = 2
SMOKE_TRAINING_STEPS = 1  # of SMOKE_BATCH images: a ResNet-18 step on the CPU is seconds per 100 images
SMOKE_BATCH = 16


def smoke_grid(spec: GridSpec) -> GridSpec:
    """The smoke version of a grid (see the module doc)."""
    fractions = _ends(spec.fractions)
    regime_fractions = {r: _ends(f) for r, f in spec.regime_fractions.items()}
    epochs = min(spec.scoring.epochs, max([1, *(_window(m) + 1 for m in spec.methods)]))
    scoring = dataclasses.replace(spec.scoring, epochs=epochs, snapshot_epochs=tuple(
        sorted({min(e, 1) for e in spec.scoring.snapshots()})), attack=dataclasses.replace(
        spec.scoring.attack, steps=min(spec.scoring.attack.steps, SMOKE_ATTACK_STEPS)))
    training = dataclasses.replace(spec.training, epochs=1, budget="steps", steps=SMOKE_TRAINING_STEPS,
                                   batch_size=min(spec.training.batch_size, SMOKE_BATCH))
    attack = dataclasses.replace(spec.attack, steps=min(spec.attack.steps, SMOKE_ATTACK_STEPS))
    ev = spec.evaluation
    aa = dataclasses.replace(ev.autoattack, apgd_iterations=SMOKE_ATTACK_STEPS, apgd_restarts=1,
                             target_classes=SMOKE_TARGETS, fab_iterations=SMOKE_ATTACK_STEPS,
                             square_queries=SMOKE_SQUARE_QUERIES)
    eps, step_size = ev.eps, ev.pgd_step_size
    if eps is not None and len(eps) > 1:  # the largest radius only (where attacks succeed most)
        i = max(range(len(eps)), key=lambda k: eps[k])
        eps, step_size = (eps[i],), step_size if step_size is None or len(step_size) == 1 else (step_size[i],)
    evaluation = dataclasses.replace(ev, n_examples=min(ev.n_examples, SMOKE_EXAMPLES), eps=eps,
                                     pgd_step_size=step_size, pgd_steps=min(ev.pgd_steps, SMOKE_ATTACK_STEPS),
                                     autoattack=aa)
    methods = tuple(dataclasses.replace(m, params={**m.params, "n_runs": 1}) if "n_runs" in m.params else m
                    for m in spec.methods)
    return dataclasses.replace(
        spec, methods=methods, datasets=tuple(dataclasses.replace(d, stand_in=True) for d in spec.datasets),
        fractions=fractions, regime_fractions=regime_fractions, seeds=spec.seeds[:1], regime_seeds={},
        full_data_reference=bool(spec.full_data_reference), scoring=scoring,
        training=training, attack=attack, evaluation=evaluation,
    )


def _window(entry: MethodSpec) -> int:
    """The epochs a method's sliding window spans (TDDS, Dynamic Uncertainty), 0 without one."""
    window = getattr(create_method(entry.name, **entry.params).params, "window", 0)
    return window if isinstance(window, int) and not isinstance(window, bool) else 0


def _ends(fractions: tuple[float, ...]) -> tuple[float, ...]:
    """The smallest and the largest fraction (where coreset budgets and per-fraction options break)."""
    return tuple(sorted({min(fractions), max(fractions)}))
