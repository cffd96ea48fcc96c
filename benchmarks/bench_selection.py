"""Selection speed: every registered method at five fractions from cached signals.

Selection must cost next to nothing next to training: the target is under 2 s in total for
all registered ranking methods (default options) × fractions 0.1, 0.3, 0.5, 0.7, 0.9 on a
CIFAR-sized case (N = 50,000, 10 classes, E = 10 epochs, D = 128 features), signals already
in memory. The signals are the conformance kit's fakes (`corebench.methods.testing`), all
derived from one fake training. Methods that pick one sample at a time
(`selection_cost = "greedy"`, k-center: N × budget × D) are timed apart, on N_GREEDY samples,
and not held to the target. For scale, the run also times one `np.argsort` over N (the floor
any ranking pays).

    python benchmarks/bench_selection.py
"""

from __future__ import annotations

import time
from dataclasses import fields

import numpy as np

N, CLASSES, EPOCHS, DIM = 50_000, 10, 10, 128
N_GREEDY = 5_000
FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
TARGET_S = 2.0


def context(n: int):
    """A context holding every built-in signal of one fake training of n samples."""
    from corebench.methods import create_method
    from corebench.methods.testing import fake_context
    from corebench.signals import ALL_SIGNALS

    return fake_context(create_method("random"), n=n, num_classes=CLASSES, epochs=EPOCHS, feature_dim=DIM,
                        signals=ALL_SIGNALS)


def _time(method, ctx) -> float:
    from corebench.methods import run_selection

    start = time.perf_counter()
    for fraction in FRACTIONS:
        run_selection(method, ctx, fraction)
    return time.perf_counter() - start


def main() -> dict:
    """Time every registered method; print per-method seconds, the total and its ratio to 2 s."""
    from corebench.methods import create_method, list_methods

    ctx = context(N)
    start = time.perf_counter()
    np.argsort(ctx.signals["loss"][0])
    argsort_s = time.perf_counter() - start

    per_method: dict[str, float] = {}
    greedy: dict[str, float] = {}
    small = None
    for name in list_methods():
        # the case's E = 10 epochs is shorter than a sliding window's default (J = W = 10):
        # TDDS and Dynamic Uncertainty are timed with windows of E / 2
        windowed = "window" in {f.name for f in fields(create_method(name).Params)}
        method = create_method(name, **({"window": EPOCHS // 2} if windowed else {}))
        if method.scoring_runs() > 1:
            continue  # defaults use one run; a plug-in asking for more is skipped, not faked
        if method.selection_cost == "greedy":
            small = small or context(min(N, N_GREEDY))
            greedy[name] = _time(method, small)
        else:
            per_method[name] = _time(method, ctx)

    total = sum(per_method.values())
    width = max(len(n) for n in [*per_method, *greedy])
    print(f"selection of {len(per_method)} methods x {len(FRACTIONS)} fractions, N={N:,}, E={EPOCHS}, D={DIM}")
    for name, seconds in per_method.items():
        print(f"  {name:<{width}}  {seconds * 1000:8.1f} ms   ({seconds / argsort_s:6.1f} x one argsort)")
    print(f"  {'total':<{width}}  {total * 1000:8.1f} ms   target {TARGET_S:.1f} s: ratio {total / TARGET_S:.3f}")
    print(f"  baseline: one np.argsort over N = {argsort_s * 1000:.2f} ms")
    for name, seconds in greedy.items():
        print(f"  {name:<{width}}  {seconds * 1000:8.1f} ms   (greedy, N={min(N, N_GREEDY):,}: not held to the target)")
    return {
        "per_method_s": per_method,
        "greedy_s": greedy,
        "n_greedy": min(N, N_GREEDY),
        "total_s": total,
        "target_s": TARGET_S,
        "ratio_to_target": total / TARGET_S,
        "argsort_s": argsort_s,
        "n": N,
        "fractions": list(FRACTIONS),
    }


if __name__ == "__main__":
    main()
