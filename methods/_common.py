"""Helpers shared by several methods: exact class-balanced budgets and ranked keeps."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from corebench.core.errors import MethodError


def class_budgets(labels: np.ndarray, budget: int) -> dict[int, int]:
    """Split `budget` over classes in proportion to class size, summing exactly to `budget`.

    Largest-remainder rounding; ties go to the smaller class id. A class never gets more
    than it has.
    """
    classes, counts = np.unique(labels, return_counts=True)
    exact = budget * counts / counts.sum()
    base = np.minimum(np.floor(exact).astype(int), counts)
    left = budget - int(base.sum())
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - base[i]), classes[i]))
    while left > 0:
        for i in order:
            if left == 0:
                break
            if base[i] < counts[i]:
                base[i] += 1
                left -= 1
    return {int(c): int(b) for c, b in zip(classes, base, strict=True)}


def rank(scores: np.ndarray, end: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices ordered from the chosen end ('lowest' or 'highest').

    Equal scores are ordered by a random permutation drawn from `rng` (the cell's seeded
    generator, `SelectionContext.rng()`), so a group tied at the selection boundary (integer
    scores such as forgetting counts tie often) is split differently for each seed and the
    same way for one seed. Without `rng`, ties go by index.
    """
    keyed = scores if end == "lowest" else -scores
    n = scores.shape[0]
    if rng is None:
        return np.argsort(keyed, kind="stable")
    tiebreak = rng.permutation(n)
    # = np.lexsort((tiebreak, keyed)), 2-3x faster: visit the samples in ascending tiebreak and
    # sort stably by score, so ties keep that order
    by_tiebreak = np.empty(n, dtype=np.intp)
    by_tiebreak[tiebreak] = np.arange(n)
    return by_tiebreak[np.argsort(keyed[by_tiebreak], kind="stable")]


def keep_extreme(scores: np.ndarray, budget: int, end: str, labels: np.ndarray | None = None,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Keep `budget` samples from one end of the ranking, globally or per class (ties: see `rank`)."""
    scores = np.asarray(scores, dtype=np.float64)
    if labels is None:
        return np.sort(rank(scores, end, rng)[:budget])
    picked = []
    for cls, k in class_budgets(labels, budget).items():
        members = np.flatnonzero(labels == cls)
        picked.append(members[rank(scores[members], end, rng)[:k]])
    return np.sort(np.concatenate(picked))


def forgetting_counts(correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forgetting events per sample from a [E, N] correctness record, and who was ever learned.

    A forgetting event is a 1→0 transition between consecutive presentations (Toneva et al.
    2019); the first presentation cannot be one (every reference starts from "not learned").

    Returns:
        (counts int64 [N], ever_correct bool [N]).
    """
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 2:
        raise ValueError(f"correct must be [epochs, N], got shape {correct.shape}")
    counts = (correct[:-1] & ~correct[1:]).sum(axis=0, dtype=np.int64)
    return counts, correct.any(axis=0)


def mean_over_runs(arrays: list[np.ndarray]) -> np.ndarray:
    """Element-wise mean of one signal's per-run arrays (float64), for `n_runs` averaging."""
    return np.mean(np.stack([np.asarray(a, dtype=np.float64) for a in arrays]), axis=0)


def snapshot_epochs(method: str, run: Mapping[str, np.ndarray], n_rows: int) -> list[int]:
    """The epochs at which a run's [K, N] snapshot signals were taken (one per row)."""
    if "snapshot_epochs" not in run:
        raise MethodError(f"method {method!r}: the scoring run did not record 'snapshot_epochs'")
    epochs = [int(e) for e in np.asarray(run["snapshot_epochs"]).ravel()]
    if len(epochs) != n_rows:
        raise MethodError(f"method {method!r}: snapshot_epochs lists {len(epochs)} epochs for {n_rows} snapshot rows")
    return epochs


def snapshot_row(method: str, epochs: list[int], epoch: int) -> int:
    """The row taken at `epoch`, or a MethodError listing the recorded epochs."""
    if epoch not in epochs:
        raise MethodError(
            f"method {method!r}: epoch {epoch} is not in scoring.snapshot_epochs; "
            f"recorded: {', '.join(map(str, epochs))}"
        )
    return epochs.index(epoch)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits [..., C], in float64 (stable: the max is subtracted).

    The scoring run stores logits as float16; softmax them here rather than storing
    probabilities, so tiny probabilities keep their precision and DeepCore's max-logit score
    stays available.
    """
    z = np.array(logits, dtype=np.float64)  # a copy, worked on in place (the same numbers, fewer arrays)
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z
