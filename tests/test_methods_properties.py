"""Properties every registered method must have, driven by the registry (like timm's tests):
a new method gets these checks for free. Also: the conformance kit catches broken methods."""

from __future__ import annotations

import subprocess
import sys
import typing
from dataclasses import dataclass, fields

import numpy as np
import pytest

from corebench.core.errors import ConfigError, MethodError
from corebench.methods import (
    CoresetMethod,
    ScoreBasedMethod,
    SelectionContext,
    create_method,
    list_methods,
    run_selection,
)
from corebench.methods.base import Direction
from corebench.methods.registry import _REGISTRY, register_method
from corebench.methods.testing import (
    assert_method_conforms,
    check_method,
    fake_context,
)
from corebench.signals import ALL_SIGNALS

METHODS = list_methods()


def option_variants(name: str) -> list[dict]:
    """One non-default value at a time for every Literal and bool option of the method."""
    cls = create_method(name).Params
    hints = typing.get_type_hints(cls)
    defaults = {f.name: f.default for f in fields(cls)}
    variants = []
    for field, hint in hints.items():
        if typing.get_origin(hint) is typing.Literal:
            variants += [{field: v} for v in typing.get_args(hint) if v != defaults[field]]
        elif hint is bool:
            variants.append({field: not defaults[field]})
    return variants


VARIANTS = [(m, v) for m in METHODS for v in option_variants(m)]


@pytest.mark.parametrize("name", METHODS)
def test_method_conforms_with_defaults(name):
    assert_method_conforms(name)


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=[f"{m}-{v}" for m, v in VARIANTS])
def test_method_conforms_with_each_option(name, params):
    assert_method_conforms(name, **params)


@pytest.mark.parametrize("name", [m for m in METHODS if "n_runs" in {f.name for f in fields(create_method(m).Params)}])
def test_method_conforms_when_averaging_runs(name):
    assert create_method(name, n_runs=3).scoring_runs() == 3
    assert len(fake_context(create_method(name, n_runs=3)).runs) == 3
    assert_method_conforms(name, n_runs=3)


def test_the_builtin_methods_are_registered():
    assert {"ccs", "easycore", "el2n", "forgetting", "grand", "moderate", "random"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("n", [7, 100, 1001])
def test_budget_is_exact_near_zero_and_one(name, n):
    method = create_method(name)
    ctx = fake_context(method, n=n, num_classes=3, seed=n)
    for fraction, expected in ((1e-9, 1), (1.0 / n, 1), (1.5 / n, 2), ((n - 1.0) / n, n - 1), (1.0, n)):
        kept = run_selection(create_method(name), ctx, fraction)
        assert kept.size == expected and kept.dtype == np.int64
        assert np.unique(kept).size == kept.size and kept.min() >= 0 and kept.max() < n
    assert np.array_equal(run_selection(method, ctx, 1.0), np.arange(n))


@pytest.mark.parametrize("name", METHODS)
def test_selection_is_deterministic_for_a_seed(name):
    method = create_method(name)
    a = run_selection(method, fake_context(method, seed=4), 0.37)
    b = run_selection(create_method(name), fake_context(method, seed=4), 0.37)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", METHODS)
def test_declared_signals_are_known_to_the_scoring_run(name):
    method = create_method(name)
    assert set(method.required_signals()) <= set(ALL_SIGNALS)
    assert method.scoring_runs() >= 1
    assert set(method.options()) == {f.name for f in fields(method.Params)}


def test_methods_and_their_kit_do_not_import_torch():
    """A method author's package checks its method without torch: the kit, the signal names and
    the method contract are torch-free."""
    code = "import sys, corebench.methods.testing, corebench.signals; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.01])
def test_fraction_outside_zero_one_is_a_method_error(fraction):
    method = create_method("easycore")
    with pytest.raises(MethodError, match=r"'easycore': fraction"):
        run_selection(method, fake_context(method), fraction)


def test_unknown_parameter_is_a_config_error():
    with pytest.raises(ConfigError, match=r"methods.el2n.epochs: 'epochs' is not allowed; allowed: keys epoch"):
        create_method("el2n", epochs=3)
    with pytest.raises(ConfigError, match=r"methods.ccs.score: 'loss' is not allowed; allowed: aum, forgetting, el2n"):
        create_method("ccs", score="loss")


# --------------------------------------------------------------------------- broken methods


@dataclass(frozen=True)
class _BrokenParams:
    direction: Direction = "hardest"
    class_balanced: bool = False


class _Duplicates(CoresetMethod):
    def select(self, ctx: SelectionContext, fraction: float) -> np.ndarray:
        k = ctx.budget(fraction)
        return np.zeros(k, dtype=np.int64)


class _OutOfRange(CoresetMethod):
    def select(self, ctx: SelectionContext, fraction: float) -> np.ndarray:
        return np.arange(ctx.n - ctx.budget(fraction) + 1, ctx.n + 1)


class _WrongCount(CoresetMethod):
    def select(self, ctx: SelectionContext, fraction: float) -> np.ndarray:
        return np.arange(max(0, ctx.budget(fraction) - 1))


class _FloatIndices(CoresetMethod):
    def select(self, ctx: SelectionContext, fraction: float) -> np.ndarray:
        return np.arange(ctx.budget(fraction), dtype=np.float64)


class _NaNScores(ScoreBasedMethod):
    Params = _BrokenParams
    signals = ("loss",)

    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        scores = ctx.signals["loss"].mean(axis=0)
        scores[3] = np.nan
        return scores


class _Undeclared(ScoreBasedMethod):
    Params = _BrokenParams
    signals = ("loss",)

    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        return ctx.signals["el2n"].mean(axis=0)


BROKEN = {
    "broken_duplicates": (_Duplicates, "duplicate indices"),
    "broken_range": (_OutOfRange, "out of range"),
    "broken_count": (_WrongCount, "expected exactly"),
    "broken_float": (_FloatIndices, "expected integer indices"),
    "broken_nan": (_NaNScores, "NaN or infinite"),
}


@pytest.fixture
def broken_methods():
    """Register the deliberately broken methods for one test, then remove them."""
    names = list(BROKEN) + ["broken_undeclared"]
    for name, (cls, _) in BROKEN.items():
        register_method(name)(cls)
    register_method("broken_undeclared")(_Undeclared)
    yield names
    for name in names:
        _REGISTRY.pop(name, None)


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_output_is_a_clear_method_error(broken_methods, name):
    message = BROKEN[name][1]
    method = create_method(name)
    ctx = fake_context(create_method("easycore"), n=50) if name != "broken_nan" else fake_context(method, n=50)
    with pytest.raises(MethodError, match=rf"method '{name}': .*{message}"):
        run_selection(method, ctx, 0.3)


@pytest.mark.parametrize("name", list(BROKEN) + ["broken_undeclared"])
def test_conformance_kit_reports_broken_methods(broken_methods, name):
    results = check_method(name)
    assert any(not r.passed for r in results)
    with pytest.raises(AssertionError, match=name):
        assert_method_conforms(name)


def test_conformance_kit_names_the_undeclared_signal(broken_methods):
    (signals,) = [r for r in check_method("broken_undeclared") if r.name == "signals read"]
    assert not signals.passed and "el2n" in signals.detail


def test_broken_methods_are_removed_after_the_test():
    assert not any(name.startswith("broken_") for name in list_methods())


def test_every_builtin_score_based_method_averages_scoring_runs():
    """Issue 8: a score from one scoring run is largely that run's seed; each built-in score method takes n_runs."""
    from corebench.methods.base import ScoreBasedMethod

    builtin = [m for m in METHODS if type(create_method(m)).__module__.startswith("corebench.methods.")]
    score_based = [m for m in builtin if isinstance(create_method(m), ScoreBasedMethod)]
    assert {"easycore", "el2n", "grand", "forgetting", "uncertainty"} <= set(score_based)
    assert [m for m in score_based if "n_runs" not in {f.name for f in fields(create_method(m).Params)}] == []


def test_a_non_finite_signal_value_is_named_in_the_error():
    """A NaN in a recorded signal (a broken plug-in hook, a diverged scoring run) fails the
    method with an error naming the signal and the run, not only the scores."""
    import dataclasses

    from corebench.core.errors import MethodError
    from corebench.methods import create_method, run_selection
    from corebench.methods.testing import fake_context

    method = create_method("el2n")
    ctx = fake_context(method, n=60)
    runs = [dict(r) for r in ctx.runs]
    broken = np.array(runs[0]["el2n_eval"], dtype=np.float32)
    broken[..., 3] = np.nan
    runs[0]["el2n_eval"] = broken
    with pytest.raises(MethodError, match=r"scores are NaN or infinite .*signal 'el2n_eval' of scoring run 0 holds"):
        run_selection(method, dataclasses.replace(ctx, runs=tuple(runs)), 0.5)


def test_rank_orders_by_score_then_by_the_seeded_tiebreak_as_lexsort_does():
    """`_common.rank` sorts stably over a permuted order (faster than np.lexsort); it must give
    lexsort's order exactly, ties (integer scores, signed zeros) included, so every committed
    coreset stays the same."""
    from corebench.methods._common import rank, softmax

    for case in range(60):
        rng = np.random.default_rng(case)
        n = int(rng.integers(1, 400))
        scores = rng.integers(0, 4, n).astype(np.float64) if case % 2 else rng.normal(size=n)
        if case % 5 == 0:
            scores[: n // 2] = -0.0
        for end in ("lowest", "highest"):
            keyed = scores if end == "lowest" else -scores
            want = np.lexsort((np.random.default_rng(case).permutation(n), keyed))
            assert np.array_equal(rank(scores, end, np.random.default_rng(case)), want)
            assert np.array_equal(rank(scores, end), np.lexsort((np.arange(n), keyed)))
    logits = np.random.default_rng(0).normal(size=(3, 50, 10)).astype(np.float16)
    z = logits.astype(np.float64) - logits.astype(np.float64).max(axis=-1, keepdims=True)
    assert np.array_equal(softmax(logits), np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True))  # in place, same numbers
