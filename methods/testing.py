"""The conformance kit: check that a coreset method honours the contract, without training.

`fake_context` builds a plausible fake scoring run for what a configured method declares:
every fake signal is derived from ONE fake training (`FakeTraining`: per-epoch class logits,
their probabilities, and the final features), so the signals agree with each other as a real
run's do (EL2N, loss, margins and correctness come from the same probabilities; the eval-mode
snapshots from the same model states). `check_method` runs the contract checks (`CHECKS`) on
it and returns one `CheckResult` per check; `assert_method_conforms` is the pytest helper;
`corebench check-method NAME` prints `check_method`'s results. A method from another package
is checked the same way once its entry point is installed:

    from corebench.methods.testing import assert_method_conforms

    def test_my_method_conforms():
        assert_method_conforms("mymethod", my_option=3)

Everything here is torch-free: a plug-in's package checks its method without torch.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Any

import numpy as np

from corebench.core.errors import MethodError
from corebench.methods._common import class_budgets, softmax
from corebench.methods.base import (
    CoresetMethod,
    DeclaredSignals,
    SelectionContext,
    budget_for,
    run_selection,
)
from corebench.methods.registry import create_method
from corebench.signals import SNAPSHOT_EPOCHS, Signal, get_signal, list_signals, unknown_signals

# The checks, in the order they run (CONTRIBUTING.md lists them; a test keeps the two equal).
CHECKS: dict[str, str] = {
    "signals known": "every declared signal is one a scoring run records (a plug-in signal's fake has its declared shape and dtype)",
    "signals read": "the method reads only its declared signals, and at least one of them",
    "budget": "for fractions from 1/N to 1.0: an integer ndarray of exactly round(fraction × N) unique indices in [0, N)",
    "deterministic": "the same seed and signals give the same selection",
    "other seed": "another seed also gives a valid selection",
    "class_balanced": "the method takes a `class_balanced` option, true or false (a global keep can drop whole classes), and with it on every class gets exactly its class budget",
    "nan": "a NaN in a float signal is a MethodError naming the method (methods with float signals)",
}


def budget_fractions(n: int) -> tuple[float, ...]:
    """The fractions the budget check runs at, from 1/N to 1.0."""
    return (1.0 / n, 0.01, 0.1, 0.5, 0.9, (n - 1.0) / n, 1.0)


@dataclass(frozen=True)
class CheckResult:
    """One contract check: its name, whether it passed, and a one-line detail."""

    name: str
    passed: bool
    detail: str


# --------------------------------------------------------------------------- one fake training


@dataclass(frozen=True)
class FakeTraining:
    """One fake scoring run from which every fake signal is derived.

    Attributes:
        labels: int64 [N]; class c drawn with probability ∝ c + 1 (uneven on purpose).
        num_classes: C.
        epochs: E.
        snapshot_epochs: int64 [K], the epochs the snapshot signals are taken at.
        eval_logits: [E + 1, N, C], the model after epoch e (0 = initialisation), eval mode.
        train_logits: [E, N, C], the training pass of epoch e + 1 (augmented, mid-epoch).
        features: [N, D], penultimate features of the final model.
        feature_norms: [E + 1, N], ‖h‖₂ of the penultimate features of every model state.
        input_scale: [N], ‖∂ logits / ∂x‖-like factor: an input gradient norm is
            input_scale × ‖p − onehot‖ (the CE gradient with respect to the logits is p − y).
        difficulty: [N] in [0, 1], the latent hardness the run was drawn from.
        seed: the seed of the draw.
    """

    labels: np.ndarray
    num_classes: int
    epochs: int
    snapshot_epochs: np.ndarray
    eval_logits: np.ndarray
    train_logits: np.ndarray
    features: np.ndarray
    feature_norms: np.ndarray
    input_scale: np.ndarray
    difficulty: np.ndarray
    seed: int

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @cached_property
    def eval_probs(self) -> np.ndarray:
        """[E + 1, N, C] softmax of `eval_logits`."""
        return softmax(self.eval_logits)

    @cached_property
    def eval_loss(self) -> np.ndarray:
        """[E + 1, N] per-sample cross-entropy of `eval_logits`."""
        return _cross_entropy(self.eval_logits, self.labels)

    @cached_property
    def train_probs(self) -> np.ndarray:
        """[E, N, C] softmax of `train_logits`."""
        return softmax(self.train_logits)

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, 7919, salt])


def fake_training(
    n: int = 500, num_classes: int = 10, epochs: int = 6, feature_dim: int = 16, seed: int = 0,
    snapshot_epochs: tuple[int, ...] = (), labels: np.ndarray | None = None,
) -> FakeTraining:
    """Draw one fake training: class centres in feature space, samples around them (harder ones
    farther out), a nearest-centre head, and the logits moving from near-uniform at
    initialisation to the final head's as training goes on. `labels` fixes the labels (another
    scoring run on the same data); otherwise they are drawn."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, num_classes + 1, dtype=np.float64)
    drawn = rng.choice(num_classes, size=n, p=weights / weights.sum()).astype(np.int64)
    labels = drawn if labels is None else np.asarray(labels, dtype=np.int64)
    difficulty = rng.uniform(0.0, 1.0, size=n)
    scale = 1.0 / np.sqrt(feature_dim)  # squared distances do not grow with D
    centres = 2.0 * scale * rng.normal(size=(num_classes, feature_dim))  # ‖c_a − c_b‖² ≈ 8
    spread = 0.3 + 1.7 * difficulty[:, None]  # hard samples sit far from their class centre
    final = centres[labels] + spread * scale * rng.normal(size=(n, feature_dim))
    start = 0.1 * scale * rng.normal(size=(n, feature_dim))
    progress = (np.arange(epochs + 1) / epochs) ** 0.7  # training progress of each model state
    eval_logits = np.empty((epochs + 1, n, num_classes))
    norms = np.empty((epochs + 1, n))
    for e, t in enumerate(progress):
        h = t * final + (1.0 - t) * start  # that state's features
        sq = (h**2).sum(-1)[:, None] - 2.0 * h @ centres.T + (centres**2).sum(-1)  # to each class centre
        eval_logits[e] = -sq / (1.0 + 20.0 * (1.0 - t))  # an untrained head is near uniform
        norms[e] = np.sqrt((h**2).sum(-1))
    eval_logits += 0.05 * rng.normal(size=eval_logits.shape)
    mid = 0.5 * (eval_logits[:-1] + eval_logits[1:])
    train_logits = mid + 0.3 * rng.normal(size=mid.shape)  # augmentation and the moving model
    snaps = sorted({0, 1, max(1, epochs // 2), epochs, *snapshot_epochs})
    return FakeTraining(
        labels=labels, num_classes=num_classes, epochs=epochs, snapshot_epochs=np.asarray(snaps, dtype=np.int64),
        eval_logits=eval_logits, train_logits=train_logits, features=final.astype(np.float32), feature_norms=norms,
        input_scale=np.exp(0.3 * rng.normal(size=n)) * (1.0 + difficulty), difficulty=difficulty, seed=seed,
    )  # fmt: skip


def _onehot(labels: np.ndarray, c: int) -> np.ndarray:
    return np.eye(c)[labels]


def _el2n(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.linalg.norm(probs - _onehot(labels, probs.shape[-1]), axis=-1)


def _py(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """values[..., i, labels[i]]."""
    return np.take_along_axis(values, np.broadcast_to(labels[:, None], values.shape[:-1] + (1,)), axis=-1)[..., 0]


def _margin(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    assigned = _py(values, labels)
    others = values.copy()
    np.put_along_axis(others, np.broadcast_to(labels[:, None], values.shape[:-1] + (1,)), -np.inf, axis=-1)
    return assigned - others.max(axis=-1)


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return np.log(np.exp(z).sum(axis=-1)) - _py(z, labels)


def _builtin_fake(name: str, t: FakeTraining) -> np.ndarray | None:
    """The built-in signal `name` as a real run would record it from `t`'s model states."""
    y, snaps = t.labels, t.snapshot_epochs
    snap_logits = t.eval_logits[snaps]
    snap_probs = t.eval_probs[snaps]
    f32 = np.float32

    def adv_logits() -> np.ndarray:
        return t.train_logits - ADV_SHIFT * _onehot(y, t.num_classes)

    table: dict[str, Callable[[], np.ndarray]] = {
        "correct": lambda: t.train_logits.argmax(axis=-1) == y,
        "loss": lambda: _cross_entropy(t.train_logits, y).astype(f32),
        "el2n": lambda: _el2n(t.train_probs, y).astype(f32),
        "margin_logits": lambda: _margin(t.train_logits, y).astype(f32),
        "margin_probs": lambda: _margin(t.train_probs, y).astype(f32),
        "input_grad_norm": lambda: (t.input_scale * _el2n(t.train_probs, y)).astype(f32),
        "input_grad_norm_eval": lambda: (t.input_scale * _el2n(t.eval_probs[1:], y)).astype(f32),
        "el2n_eval": lambda: _el2n(snap_probs, y).astype(f32),
        "loss_eval": lambda: t.eval_loss[snaps].astype(f32),
        "logits_eval": lambda: snap_logits.astype(np.float16),
        # closed form of the classifier's gradient: ‖p − y‖·√(‖h‖² + 1)
        "grand_last": lambda: (_el2n(snap_probs, y) * np.sqrt(t.feature_norms[snaps] ** 2 + 1)).astype(f32),
        # every parameter: the classifier's part plus the body's (∝ the input-side factor)
        "grand_all": lambda: (_el2n(snap_probs, y) * np.sqrt(t.feature_norms[snaps] ** 2 + 1
                                                             + (3.0 * t.input_scale) ** 2)).astype(f32),
        "logits_train": lambda: t.train_logits.astype(np.float16),
        # the attack lowers the logit of the label: the adversarial signals read these logits
        "adv_loss": lambda: _cross_entropy(adv_logits(), y).astype(f32),
        "adv_margin": lambda: _margin(adv_logits(), y).astype(f32),
        "adv_correct": lambda: adv_logits().argmax(axis=-1) == y,
        "adv_input_grad_norm": lambda: (t.input_scale * _el2n(softmax(adv_logits()), y)).astype(f32),
        "features": lambda: t.features,
        "logits_final": lambda: t.eval_logits[-1].astype(np.float16),
    }  # fmt: skip
    return table[name]() if name in table else None


ADV_SHIFT = 1.5  # how far the fake attack lowers the logit of the label


def _generic_fake(sig: Signal, t: FakeTraining) -> np.ndarray:
    """A plug-in signal without a `fake` of its own: the final eval loss (or correctness, for
    bool), shaped as declared, with a little noise along the other axes."""
    sizes = {"E": t.epochs, "K": t.snapshot_epochs.size, "N": t.n, "C": t.num_classes, "D": t.features.shape[-1]}
    shape = tuple(sizes[a] for a in sig.shape)
    final = t.eval_logits[-1]
    base = final.argmax(axis=-1) == t.labels if sig.dtype == "bool" else _cross_entropy(final, t.labels)
    axis = sig.shape.index("N")
    out = np.broadcast_to(base.reshape([t.n if i == axis else 1 for i in range(len(shape))]), shape)
    if sig.dtype != "bool":
        out = out * np.exp(t.rng(1).normal(0.0, 0.05, size=shape))
    return np.array(out, dtype=sig.dtype)


def fake_signal(name: str, training: FakeTraining) -> np.ndarray:
    """The fake of signal `name` (built-in or plug-in) for one fake training, checked against
    its declaration; a MethodError names a plug-in fake that returns the wrong shape or dtype."""
    sig = get_signal(name)
    out = _builtin_fake(name, training) if sig.distribution == "corebench" else None
    if out is None:
        if sig.fake:
            module, _, attr = sig.fake.partition(":")
            out = np.asarray(getattr(importlib.import_module(module), attr)(training))
        else:
            out = _generic_fake(sig, training)
    sizes = {"E": training.epochs, "K": training.snapshot_epochs.size, "N": training.n,
             "C": training.num_classes, "D": training.features.shape[-1]}
    want = tuple(sizes[a] for a in sig.shape if a != "D")
    got = tuple(s for a, s in zip(sig.shape, out.shape, strict=False) if a != "D")
    if out.ndim != len(sig.shape) or got != want or out.dtype != np.dtype(sig.dtype):
        raise MethodError(
            f"signal {name!r} ({sig.distribution}): its fake has shape {out.shape} and dtype {out.dtype}, "
            f"declared {sig.shape_text} {sig.dtype} ({', '.join(f'{a}={s}' for a, s in sizes.items())})"
        )
    return out


def fake_context(
    method: CoresetMethod,
    n: int = 500,
    num_classes: int = 10,
    epochs: int = 6,
    feature_dim: int = 16,
    seed: int = 0,
    signals: tuple[str, ...] | None = None,
    dataset: str = "cifar10",
) -> SelectionContext:
    """A SelectionContext with fake signals for `method.required_signals()` (or `signals`).

    One fake training per `method.scoring_runs()` (seeds seed, seed + 1000, ...), each giving
    every signal asked for; `snapshot_epochs` comes along with snapshot signals and includes
    the method's `epoch` parameter if it has one; `epochs` grows to cover it too, and to one
    more than a `window` parameter (sliding windows over epochs: TDDS, Dynamic Uncertainty). `dataset`
    names the dataset the signals pretend to come from (a method's per-dataset defaults, such
    as CCS's β table, are read for it).
    """
    epoch_param = getattr(method.params, "epoch", None)
    extra: tuple[int, ...] = ()
    if isinstance(epoch_param, int) and not isinstance(epoch_param, bool):
        epochs, extra = max(epochs, epoch_param), (epoch_param,)
    window = getattr(method.params, "window", None)  # a sliding window over epochs needs more of them
    if isinstance(window, int) and not isinstance(window, bool):
        epochs = max(epochs, window + 1)
    names = tuple(method.required_signals()) if signals is None else tuple(signals)
    unknown = unknown_signals(names)
    if unknown:
        raise MethodError(f"fake_context: no fake for signal {unknown[0]!r}; known: {', '.join(list_signals())}")
    runs = []
    labels = None
    for r in range(method.scoring_runs()):  # every run trains on the same data: the first run's labels
        t = fake_training(n, num_classes, epochs, feature_dim, seed + 1000 * r, extra, labels)
        labels = t.labels
        run = {name: fake_signal(name, t) for name in names}
        if any(get_signal(s).taken == "snapshot" for s in names):
            run[SNAPSHOT_EPOCHS] = t.snapshot_epochs
        runs.append(run)
    return SelectionContext(labels=labels, num_classes=num_classes, runs=tuple(runs), seed=seed, dataset=dataset,
                            scoring_epochs=epochs)


# --------------------------------------------------------------------------- the checks


def _with_nan(ctx: SelectionContext, name: str, index: int) -> SelectionContext:
    """A copy of ctx whose signal `name` is NaN for sample `index` in every run and row."""
    runs = []
    for run in ctx.runs:
        run = dict(run)
        arr = np.array(run[name], dtype=np.float32, copy=True)
        position = get_signal(name).shape.index("N")
        arr[(slice(None),) * position + (index,)] = np.nan
        run[name] = arr
        runs.append(run)
    return replace(ctx, runs=tuple(runs))


def _run(checks: list[CheckResult], name: str, fn: Callable[[], tuple[bool, str]]) -> None:
    """Run one check; an exception is a failure whose detail is its one-line message."""
    try:
        passed, detail = fn()
    except Exception as exc:  # the kit reports, it does not crash
        where = traceback.extract_tb(exc.__traceback__)[-1]
        first = str(exc).splitlines()[0] if str(exc) else ""
        passed, detail = False, f"{type(exc).__name__}: {first} (at {where.filename}:{where.lineno})"
    checks.append(CheckResult(name, bool(passed), detail))


def check_method(name: str, **params: Any) -> list[CheckResult]:
    """Run the contract checks (`CHECKS`) on registered method `name` created with `params`.

    When the declared signals are not all known, the other checks cannot run and only that
    failure is reported.

    Raises:
        ConfigError: unknown method or invalid parameters (the user's mistake, not a failed check).
    """
    method = create_method(name, **params)
    checks: list[CheckResult] = []
    n = 500
    declared = tuple(method.required_signals())

    def known() -> tuple[bool, str]:
        unknown = unknown_signals(declared)
        if unknown:
            return False, f"declares {unknown} which no scoring run records; known: {', '.join(list_signals())}"
        fake_context(method, n=n)  # a plug-in signal's fake must match its declaration
        plugins = [s for s in declared if get_signal(s).distribution != "corebench"]
        return True, f"declares {list(declared) or 'no signals'}" + (f" (plug-in signals {plugins})" if plugins else "")

    _run(checks, "signals known", known)
    if not checks[-1].passed:
        return checks

    def reads() -> tuple[bool, str]:
        everything = fake_context(method, n=n, signals=tuple(list_signals()))  # the grid may record more
        seen: set[str] = set()
        view = replace(everything, runs=tuple(DeclaredSignals(r, name, declared, seen) for r in everything.runs))
        try:
            run_selection(create_method(name, **params), view, 0.3)
        except MethodError as exc:
            if "did not declare" in str(exc):
                return False, str(exc)
            raise
        if declared and not seen:
            return False, f"declares {list(declared)} but reads none of them (the scoring run would record them for nothing)"
        return True, f"reads {sorted(seen) or 'no signals'}, all declared; undeclared signals are invisible"

    _run(checks, "signals read", reads)

    ctx = fake_context(method, n=n)
    for fraction in budget_fractions(n):

        def budget_check(fraction: float = fraction) -> tuple[bool, str]:
            raw = create_method(name, **params).select(ctx.only(name, declared), fraction)
            if not isinstance(raw, np.ndarray) or not np.issubdtype(raw.dtype, np.integer):
                return False, f"returned {type(raw).__name__} of {getattr(raw, 'dtype', '?')}, expected an integer ndarray"
            kept = run_selection(create_method(name, **params), ctx, fraction)
            return True, f"{kept.size} = round({fraction:.4g} × {n}) unique in-range indices"

        _run(checks, f"budget@{fraction:.4g}", budget_check)

    def deterministic() -> tuple[bool, str]:
        a = run_selection(create_method(name, **params), fake_context(method, n=n, seed=3), 0.3)
        b = run_selection(create_method(name, **params), fake_context(method, n=n, seed=3), 0.3)
        same = bool(np.array_equal(a, b))
        return same, "same seed, same signals: same selection" if same else "two calls with seed 3 differ"

    _run(checks, "deterministic", deterministic)

    def other_seed() -> tuple[bool, str]:
        kept = run_selection(create_method(name, **params), fake_context(method, n=n, seed=11), 0.3)
        return True, f"seed 11 gives a valid selection of {kept.size}"

    _run(checks, "other seed", other_seed)

    def balanced() -> tuple[bool, str]:
        if "class_balanced" not in {f.name for f in fields(method.Params)}:
            return False, ("has no `class_balanced` parameter; every method takes `class_balanced: true|false` "
                           "(default: its reference's choice, cited in `class_balanced_source`)")
        cb_params = {**params, "class_balanced": True}
        cb_ctx = fake_context(create_method(name, **cb_params), n=n)
        for fraction in (0.05, 0.3, 0.77):
            kept = run_selection(create_method(name, **cb_params), cb_ctx, fraction)
            want = class_budgets(cb_ctx.labels, budget_for(fraction, n))
            got = {c: int(np.sum(cb_ctx.labels[kept] == c)) for c in want}
            if got != want:
                return False, f"fraction {fraction}: class counts {got}, class budgets {want}"
        source = method.class_balanced_source or "no source given (`class_balanced_source`)"
        return True, f"class_balanced keeps exactly each class budget; default: {source}"

    _run(checks, "class_balanced", balanced)

    float_signals = [s for s in declared if get_signal(s).dtype != "bool"]
    if float_signals:

        def nan_is_error() -> tuple[bool, str]:
            bad = _with_nan(ctx, float_signals[0], index=7)
            try:
                run_selection(create_method(name, **params), bad, 0.3)
            except MethodError as exc:
                return True, f"NaN in {float_signals[0]!r}: MethodError ({exc})"
            return False, f"a NaN in {float_signals[0]!r} (sample 7) gave no MethodError"

        _run(checks, "nan", nan_is_error)
    return checks


def assert_method_conforms(name: str, **params: Any) -> None:
    """pytest helper: raise AssertionError listing every failed check of `check_method`."""
    failed = [r for r in check_method(name, **params) if not r.passed]
    if failed:
        lines = "\n".join(f"  {r.name}: {r.detail}" for r in failed)
        raise AssertionError(f"method {name!r} {params or ''} fails {len(failed)} check(s):\n{lines}")
