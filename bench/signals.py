"""The per-sample signals a scoring run can record: their names, in one torch-free place.

Read by the scoring run (which records them) and by the method kit (which fakes them), so a
method author's package can check its declarations without importing torch.

    train pass, [E, N] per epoch: input_grad_norm, correct, loss, el2n, margin_logits, margin_probs
    eval pass, [E, N] per epoch:  input_grad_norm_eval
    snapshots, [K, N]:            el2n_eval, grand_all, grand_last (+ snapshot_epochs [K])
    final model, [N, D]:          features
"""

from __future__ import annotations

from collections.abc import Iterable

from corebench.errors import ConfigError

TRAIN_PASS: tuple[str, ...] = ("input_grad_norm", "correct", "loss", "el2n", "margin_logits", "margin_probs")
EVAL_PASS: tuple[str, ...] = ("input_grad_norm_eval",)
SNAPSHOT: tuple[str, ...] = ("el2n_eval", "grand_all", "grand_last")
FINAL: tuple[str, ...] = ("features",)
ALL_SIGNALS: tuple[str, ...] = TRAIN_PASS + EVAL_PASS + SNAPSHOT + FINAL
BOOL_SIGNALS: tuple[str, ...] = ("correct",)
SNAPSHOT_EPOCHS = "snapshot_epochs"  # [K] int64: the epochs the snapshot rows were taken at


def check_signals(names: Iterable[str]) -> set[str]:
    """The names as a set, or a ConfigError naming the first one no scoring run records."""
    names = set(names)
    unknown = names - set(ALL_SIGNALS)
    if unknown:
        raise ConfigError(f"signals: {sorted(unknown)[0]!r} is not recorded by the scoring run; allowed: {', '.join(ALL_SIGNALS)}")
    return names


def companions(names: Iterable[str]) -> set[str]:
    """What comes along with the signals: the snapshot epochs with any snapshot signal."""
    return {SNAPSHOT_EPOCHS} if set(names) & set(SNAPSHOT) else set()
