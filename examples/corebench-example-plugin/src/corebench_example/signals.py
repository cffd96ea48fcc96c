"""The signal this package adds: the loss on the mirrored image, at the eval-mode snapshots.

Declared torch-free (corebench's kit fakes it without torch); the scoring run imports the
`compute` hook (hooks.py, which uses torch) only when a grid's method declares the signal.
"""

from __future__ import annotations

import numpy as np

from corebench.signals import Signal

FLIP_LOSS_EVAL = Signal(
    name="flip_loss_eval",
    shape=("K", "N"),  # one row per snapshot epoch (scoring.snapshot_epochs)
    taken="snapshot",  # eval mode, un-augmented inputs
    dtype="float32",
    what="cross-entropy of the horizontally mirrored image, eval mode",
    compute="corebench_example.hooks:flip_loss",
    fake="corebench_example.signals:fake_flip_loss",
)


def fake_flip_loss(training) -> np.ndarray:
    """The kit's fake, from its one fake training: the eval loss at the snapshots, made worse
    for harder samples (a mirrored digit is harder to read), so it agrees with `loss_eval`."""
    loss = training.eval_loss[training.snapshot_epochs]  # [K, N]
    return (loss * (1.0 + 0.5 * training.difficulty)).astype(np.float32)
