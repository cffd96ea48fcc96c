"""Selection speed: every registered method at five fractions from cached signals.

Selection must cost next to nothing next to training: the target is under 2 s in total for
all registered methods (default options) × fractions 0.1, 0.3, 0.5, 0.7, 0.9 on a
CIFAR-sized case (N = 50,000, 10 classes, E = 10 epochs, D = 128 features), signals already
in memory. For scale, the run also times one `np.argsort` over N (the floor any ranking pays).

    python benchmarks/bench_selection.py
"""

from __future__ import annotations

import time

import numpy as np

N, CLASSES, EPOCHS, DIM = 50_000, 10, 10, 128
FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
TARGET_S = 2.0


def fake_signals(seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels and every signal the scoring run records, with plausible values (built once)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=N).astype(np.int64)
    d = rng.uniform(size=N)
    progress = np.linspace(0.2, 1.0, EPOCHS)[:, None]
    noise = rng.normal(0.0, 0.1, size=(EPOCHS, N))
    grad = np.exp(2 * d - 1.5 * progress + noise).astype(np.float32)
    el2n = np.clip(1.4 * d * (1.2 - progress) + np.abs(noise), 0, np.sqrt(2)).astype(np.float32)
    margin = (progress - d + noise).astype(np.float32)
    signals = {
        "input_grad_norm": grad,
        "input_grad_norm_eval": grad * 0.9,
        "correct": rng.uniform(size=(EPOCHS, N)) < np.clip(progress + 0.3 - d, 0.02, 0.98),
        "loss": grad * 1.1,
        "el2n": el2n,
        "el2n_eval": el2n[:2] * 0.95,  # snapshots at epochs 0 and 1
        "margin_logits": 4 * margin,
        "margin_probs": np.clip(margin, -1, 1),
        "grand_all": np.exp(d + rng.normal(0, 0.2, size=(2, N))).astype(np.float32),
        "grand_last": np.exp(d + rng.normal(0, 0.2, size=(2, N))).astype(np.float32),
        "snapshot_epochs": np.array([0, 1], dtype=np.int64),
        "features": (rng.normal(0, 3, size=(CLASSES, DIM))[labels] + rng.normal(size=(N, DIM))).astype(np.float32),
    }
    return labels, signals


def main() -> dict:
    """Time every registered method; print per-method seconds, the total and its ratio to 2 s."""
    from corebench.methods import SelectionContext, create_method, list_methods, run_selection

    labels, signals = fake_signals()
    ctx = SelectionContext(labels=labels, num_classes=CLASSES, runs=(signals,), seed=0)

    start = time.perf_counter()
    np.argsort(signals["input_grad_norm"][0])
    argsort_s = time.perf_counter() - start

    per_method: dict[str, float] = {}
    for name in list_methods():
        method = create_method(name)
        if method.scoring_runs() > 1:
            continue  # defaults use one run; a plug-in asking for more is skipped, not faked
        start = time.perf_counter()
        for fraction in FRACTIONS:
            run_selection(method, ctx, fraction)
        per_method[name] = time.perf_counter() - start

    total = sum(per_method.values())
    width = max(len(n) for n in per_method)
    print(f"selection of {len(per_method)} methods x {len(FRACTIONS)} fractions, N={N:,}, E={EPOCHS}, D={DIM}")
    for name, seconds in per_method.items():
        print(f"  {name:<{width}}  {seconds * 1000:8.1f} ms   ({seconds / argsort_s:6.1f} x one argsort)")
    print(f"  {'total':<{width}}  {total * 1000:8.1f} ms   target {TARGET_S:.1f} s: ratio {total / TARGET_S:.3f}")
    print(f"  baseline: one np.argsort over N = {argsort_s * 1000:.2f} ms")
    return {
        "per_method_s": per_method,
        "total_s": total,
        "target_s": TARGET_S,
        "ratio_to_target": total / TARGET_S,
        "argsort_s": argsort_s,
        "n": N,
        "fractions": list(FRACTIONS),
    }


if __name__ == "__main__":
    main()
