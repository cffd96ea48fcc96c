"""The conformance kit: check that a coreset method honours the contract, without training.

`fake_context` builds plausible random signals of the right names and shapes for what a
configured method declares; `check_method` runs the contract checks on it and returns one
`CheckResult` per check; `assert_method_conforms` is the pytest helper. `corebench
check-method NAME` prints `check_method`'s results. A method from another package is checked
the same way once its entry point is installed:

    from corebench.methods.testing import assert_method_conforms

    def test_my_method_conforms():
        assert_method_conforms("mymethod", my_option=3)
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from corebench.errors import MethodError
from corebench.methods._common import class_budgets
from corebench.methods.base import CoresetMethod, SelectionContext, budget_for, run_selection
from corebench.methods.registry import create_method
from corebench.signals import ALL_SIGNALS, BOOL_SIGNALS, SNAPSHOT, SNAPSHOT_EPOCHS


@dataclass(frozen=True)
class CheckResult:
    """One contract check: its name, whether it passed, and a one-line detail."""

    name: str
    passed: bool
    detail: str


class _Recorded(Mapping):
    """A run's signals that remembers which names the method asked for."""

    def __init__(self, data: Mapping[str, np.ndarray], seen: set[str]) -> None:
        self._data = dict(data)
        self._seen = seen

    def __getitem__(self, key: str) -> np.ndarray:
        self._seen.add(key)
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self._seen.add(key)
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _snapshot_epochs(method: CoresetMethod, epochs: int) -> np.ndarray:
    wanted = {0, 1, max(1, epochs // 2), epochs}
    epoch = getattr(method.params, "epoch", None)
    if isinstance(epoch, int) and not isinstance(epoch, bool):
        wanted.add(epoch)
    return np.asarray(sorted(wanted), dtype=np.int64)


def fake_context(
    method: CoresetMethod,
    n: int = 500,
    num_classes: int = 10,
    epochs: int = 6,
    feature_dim: int = 16,
    seed: int = 0,
) -> SelectionContext:
    """A SelectionContext with plausible random signals for `method.required_signals()`.

    One run per `method.scoring_runs()`. Labels are uneven on purpose (class c is drawn with
    probability ∝ c + 1) so class budgets are not trivially equal. Each sample has a latent
    difficulty shared by its signals: hard samples have large gradient norms, EL2N and loss,
    small margins, and are correct less often. `snapshot_epochs` accompanies GraNd signals and
    includes the method's `epoch` parameter if it has one; `epochs` grows to cover an integer
    `epoch` parameter too.
    """
    rng = np.random.default_rng(seed)
    probs = np.arange(1, num_classes + 1, dtype=np.float64)
    labels = rng.choice(num_classes, size=n, p=probs / probs.sum()).astype(np.int64)
    epoch_param = getattr(method.params, "epoch", None)
    if isinstance(epoch_param, int) and not isinstance(epoch_param, bool):
        epochs = max(epochs, epoch_param)
    names = tuple(method.required_signals())
    centres = rng.normal(0.0, 3.0, size=(num_classes, feature_dim))
    runs = []
    for _ in range(method.scoring_runs()):
        difficulty = rng.uniform(0.0, 1.0, size=n)
        run: dict[str, np.ndarray] = {}
        for name in names:
            run[name] = _fake_signal(name, difficulty, labels, centres, epochs, rng, method)
        if set(names) & set(SNAPSHOT):
            run[SNAPSHOT_EPOCHS] = _snapshot_epochs(method, epochs)
        runs.append(run)
    return SelectionContext(labels=labels, num_classes=num_classes, runs=tuple(runs), seed=seed)


def _fake_signal(
    name: str, difficulty: np.ndarray, labels: np.ndarray, centres: np.ndarray, epochs: int,
    rng: np.random.Generator, method: CoresetMethod,
) -> np.ndarray:
    n = difficulty.shape[0]
    progress = np.linspace(0.2, 1.0, epochs)[:, None]  # training goes on: errors shrink
    noise = rng.normal(0.0, 0.1, size=(epochs, n))
    if name in ("input_grad_norm", "input_grad_norm_eval", "loss"):
        return (np.exp(2.0 * difficulty - 1.5 * progress + noise)).astype(np.float32)
    if name == "el2n":
        return np.clip(1.4 * difficulty * (1.2 - progress) + np.abs(noise), 0.0, np.sqrt(2.0)).astype(np.float32)
    if name == "el2n_eval":
        k = _snapshot_epochs(method, epochs).size
        return np.clip(1.4 * difficulty + np.abs(rng.normal(0.0, 0.1, size=(k, n))), 0.0, np.sqrt(2.0)).astype(np.float32)
    if name == "margin_logits":
        return (4.0 * (progress - difficulty) + noise).astype(np.float32)
    if name == "margin_probs":
        return np.clip(progress - difficulty + noise, -1.0, 1.0).astype(np.float32)
    if name == "correct":
        p_correct = np.clip(progress + 0.3 - difficulty, 0.02, 0.98)
        return rng.uniform(size=(epochs, n)) < p_correct
    if name in SNAPSHOT:
        k = _snapshot_epochs(method, epochs).size
        return np.exp(difficulty + rng.normal(0.0, 0.2, size=(k, n))).astype(np.float32)
    if name == "features":
        spread = 0.5 + difficulty[:, None]
        return (centres[labels] + spread * rng.normal(size=(n, centres.shape[1]))).astype(np.float32)
    raise MethodError(f"fake_context: no fake for signal {name!r}; known: {', '.join(ALL_SIGNALS)}")


def _recording(ctx: SelectionContext, seen: set[str]) -> SelectionContext:
    runs = tuple(_Recorded(r, seen) for r in ctx.runs)
    return SelectionContext(labels=ctx.labels, num_classes=ctx.num_classes, runs=runs, seed=ctx.seed)


def _with_nan(ctx: SelectionContext, name: str, index: int) -> SelectionContext:
    """A copy of ctx whose signal `name` is NaN for sample `index` in every run and row."""
    runs = []
    for run in ctx.runs:
        run = dict(run)
        arr = np.array(run[name], dtype=np.float32, copy=True)
        if name == "features":
            arr[index, :] = np.nan
        else:
            arr[:, index] = np.nan
        run[name] = arr
        runs.append(run)
    return SelectionContext(labels=ctx.labels, num_classes=ctx.num_classes, runs=tuple(runs), seed=ctx.seed)


def _run(checks: list[CheckResult], name: str, fn) -> None:
    """Run one check; an exception is a failure whose detail is its one-line message."""
    try:
        passed, detail = fn()
    except Exception as exc:  # the kit reports, it does not crash
        where = traceback.extract_tb(exc.__traceback__)[-1]
        passed, detail = False, f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})"
    checks.append(CheckResult(name, bool(passed), detail))


def check_method(name: str, **params: Any) -> list[CheckResult]:
    """Run the contract checks on registered method `name` created with `params`.

    Checks: declared signals are known and the only ones read; for fractions from 1/N to
    1.0 the selection is exactly round(fraction × N) unique in-range integer indices;
    the same seed gives the same selection; another seed also gives a valid one; with
    `class_balanced` (when the method has it) every class gets exactly its class budget;
    a NaN in a float signal is a MethodError naming the method (methods with float signals).

    Raises:
        ConfigError: unknown method or invalid parameters (the user's mistake, not a failed check).
    """
    method = create_method(name, **params)
    checks: list[CheckResult] = []
    n = 500

    def declares() -> tuple[bool, str]:
        declared = tuple(method.required_signals())
        unknown = [s for s in declared if s not in ALL_SIGNALS]
        if unknown:
            return False, f"declares {unknown} which the scoring run does not record; known: {', '.join(ALL_SIGNALS)}"
        seen: set[str] = set()
        run_selection(create_method(name, **params), _recording(fake_context(method, n=n), seen), 0.3)
        allowed = set(declared) | ({SNAPSHOT_EPOCHS} if set(declared) & set(SNAPSHOT) else set())
        extra = sorted(seen - allowed)
        if extra:
            return False, f"reads {extra} without declaring them (declared: {list(declared)})"
        if declared and not seen:
            return False, f"declares {list(declared)} but reads none of them"
        return True, f"declares {list(declared) or 'no signals'}, reads only those"

    _run(checks, "signals", declares)

    ctx = fake_context(method, n=n)
    for fraction in (1.0 / n, 0.01, 0.1, 0.5, 0.9, (n - 1.0) / n, 1.0):

        def budget_check(fraction: float = fraction) -> tuple[bool, str]:
            raw = create_method(name, **params).select(ctx, fraction)
            if not isinstance(raw, np.ndarray) or not np.issubdtype(raw.dtype, np.integer):
                return False, f"returned {type(raw).__name__} of {getattr(raw, 'dtype', '?')}, expected an integer ndarray"
            kept = run_selection(create_method(name, **params), ctx, fraction)
            return True, f"{kept.size} = round({fraction:.4g} × {n}) unique in-range indices"

        _run(checks, f"budget@{fraction:.4g}", budget_check)

    def deterministic() -> tuple[bool, str]:
        a = run_selection(create_method(name, **params), fake_context(method, n=n, seed=3), 0.3)
        b = run_selection(create_method(name, **params), fake_context(method, n=n, seed=3), 0.3)
        return bool(np.array_equal(a, b)), "same seed, same signals: same selection" if np.array_equal(a, b) else "two calls with seed 3 differ"

    _run(checks, "deterministic", deterministic)

    def other_seed() -> tuple[bool, str]:
        kept = run_selection(create_method(name, **params), fake_context(method, n=n, seed=11), 0.3)
        return True, f"seed 11 gives a valid selection of {kept.size}"

    _run(checks, "other seed", other_seed)

    if "class_balanced" in {f.name for f in fields(method.Params)}:

        def balanced() -> tuple[bool, str]:
            cb_params = {**params, "class_balanced": True}
            cb_ctx = fake_context(create_method(name, **cb_params), n=n)
            for fraction in (0.05, 0.3, 0.77):
                kept = run_selection(create_method(name, **cb_params), cb_ctx, fraction)
                want = class_budgets(cb_ctx.labels, budget_for(fraction, n))
                got = {c: int(np.sum(cb_ctx.labels[kept] == c)) for c in want}
                if got != want:
                    return False, f"fraction {fraction}: class counts {got}, class budgets {want}"
            return True, "class_balanced keeps exactly each class budget"

        _run(checks, "class_balanced", balanced)

    float_signals = [s for s in method.required_signals() if s not in BOOL_SIGNALS]
    if float_signals:

        def nan_is_error() -> tuple[bool, str]:
            bad = _with_nan(ctx, float_signals[0], index=7)
            try:
                run_selection(create_method(name, **params), bad, 0.3)
            except MethodError as exc:
                if repr(name) in str(exc) or name in str(exc):
                    return True, f"NaN in {float_signals[0]!r}: MethodError ({exc})"
                return False, f"MethodError does not name the method: {exc}"
            return False, f"a NaN in {float_signals[0]!r} (sample 7) gave no MethodError"

        _run(checks, "nan", nan_is_error)
    return checks


def assert_method_conforms(name: str, **params: Any) -> None:
    """pytest helper: raise AssertionError listing every failed check of `check_method`."""
    failed = [r for r in check_method(name, **params) if not r.passed]
    if failed:
        lines = "\n".join(f"  {r.name}: {r.detail}" for r in failed)
        raise AssertionError(f"method {name!r} {params or ''} fails {len(failed)} check(s):\n{lines}")
