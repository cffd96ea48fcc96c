"""The conformance kit tells the truth: its fakes agree with each other as a real run's
signals do, every check CONTRIBUTING lists exists, and each one fires on a method that breaks it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import corebench.signals as signals
from corebench.methods import CoresetMethod, ScoreBasedMethod, SelectionContext, create_method
from corebench.methods._common import softmax
from corebench.methods.base import Direction, NoParams
from corebench.methods.registry import _REGISTRY, register_method
from corebench.methods.testing import CHECKS, check_method, fake_context, fake_training
from corebench.signals import ALL_SIGNALS, Signal, register_signal

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- consistent fakes


@pytest.fixture(scope="module")
def every_signal():
    ctx = fake_context(create_method("random"), n=400, num_classes=7, epochs=5, signals=ALL_SIGNALS, seed=2)
    return ctx, ctx.signals


def test_training_pass_fakes_come_from_one_set_of_probabilities(every_signal):
    ctx, s = every_signal
    c = ctx.num_classes
    p_y = np.exp(-s["loss"].astype(np.float64))  # loss = −log p_y
    sum_p2 = s["el2n"].astype(np.float64) ** 2 + 2 * p_y - 1  # ‖p − y‖² = Σp² − 2p_y + 1
    assert (sum_p2 >= 1 / c - 1e-5).all() and (sum_p2 <= 1 + 1e-5).all()  # Σp² of a distribution
    assert (sum_p2 >= p_y**2 - 1e-5).all()
    assert np.array_equal(s["correct"], s["margin_logits"] > 0)  # correct ⇔ the label's logit is the largest
    assert np.array_equal(s["correct"], s["margin_probs"] > 0)
    assert (s["margin_probs"] <= p_y + 1e-6).all()
    ratio = s["input_grad_norm"] / s["el2n"]  # ∇ₓ = Jᵀ(p − y): one input factor per sample
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0], ratio.shape), rtol=1e-4)


def test_snapshot_and_final_fakes_come_from_the_same_model_states(every_signal):
    ctx, s = every_signal
    y = ctx.labels
    epochs = s["snapshot_epochs"].tolist()
    probs = softmax(s["logits_eval"])
    el2n = np.linalg.norm(probs - np.eye(ctx.num_classes)[y], axis=-1)
    np.testing.assert_allclose(el2n, s["el2n_eval"], atol=5e-3)  # float16 logits
    np.testing.assert_allclose(-np.log(probs[:, np.arange(ctx.n), y]), s["loss_eval"], rtol=1e-2, atol=1e-2)
    last = epochs.index(max(epochs))
    np.testing.assert_array_equal(s["logits_eval"][last], s["logits_final"])
    assert (s["grand_all"] >= s["grand_last"] - 1e-6).all() and (s["grand_last"] >= s["el2n_eval"] - 1e-6).all()
    assert epochs[0] == 0 and np.allclose(probs[0], 1 / ctx.num_classes, atol=0.25)  # initialisation: near uniform
    # the final features and the final logits agree: the nearest class mean is the predicted class
    means = np.stack([s["features"][y == k].mean(0) for k in range(ctx.num_classes)])
    nearest = ((s["features"][:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == s["logits_final"].argmax(1)).mean() > 0.8


def test_harder_samples_look_harder_in_every_fake(every_signal):
    ctx, s = every_signal
    d = fake_training(400, 7, 5, seed=2).difficulty
    for name in ("loss", "el2n", "input_grad_norm", "el2n_eval", "grand_all"):
        value = s[name][-1] if s[name].ndim == 2 else s[name]
        assert np.corrcoef(d, value)[0, 1] > 0.2, name
    assert np.corrcoef(d, s["margin_probs"][-1])[0, 1] < -0.2


def test_averaged_runs_share_labels_and_differ_in_signals():
    ctx = fake_context(create_method("el2n", n_runs=3), n=200)
    assert len(ctx.runs) == 3
    assert not np.array_equal(ctx.runs[0]["el2n_eval"], ctx.runs[1]["el2n_eval"])


# --------------------------------------------------------------------------- the checks listed


def test_contributing_lists_exactly_the_kits_checks():
    text = (REPO / "CONTRIBUTING.md").read_text()
    block = re.search(r"<!-- checks:begin[^>]*-->\n(.*?)\n<!-- checks:end -->", text, re.S).group(1)
    listed = dict(re.findall(r"^\| `([^`]+)` \| (.*) \|$", block, re.M))
    assert listed == CHECKS


def test_a_conforming_method_passes_every_check():
    names = {r.name.split("@")[0] for r in check_method("easycore")}
    assert names == set(CHECKS)


# --------------------------------------------------------------------------- each check fires


@dataclass(frozen=True)
class _P:
    direction: Direction = "hardest"
    class_balanced: bool = False


class _Good(ScoreBasedMethod):
    Params = _P
    signals = ("loss",)

    def hardness(self, ctx):
        return ctx.signals["loss"].mean(axis=0)


class _UnknownSignal(_Good):
    signals = ("entropy",)


class _ReadsUndeclared(_Good):
    def hardness(self, ctx):
        return ctx.signals["el2n"].mean(axis=0)


class _ReadsNothing(_Good):
    def hardness(self, ctx):
        return np.arange(ctx.n, dtype=np.float64)


class _Floats(CoresetMethod):
    def select(self, ctx, fraction):
        return np.arange(ctx.budget(fraction), dtype=np.float64)


class _OffByOne(CoresetMethod):
    def select(self, ctx, fraction):
        return np.arange(max(0, ctx.budget(fraction) - 1))


class _GlobalRandom(CoresetMethod):
    def select(self, ctx, fraction):
        return np.sort(np.random.default_rng().choice(ctx.n, ctx.budget(fraction), replace=False))


class _FailsForSeed11(CoresetMethod):
    def select(self, ctx, fraction):
        if ctx.seed == 11:
            raise ValueError("cannot handle seed 11")
        return np.arange(ctx.budget(fraction))


class _IgnoresClassBalance(_Good):
    def select(self, ctx, fraction):
        return ctx.keep_highest(self.hardness(ctx), fraction, class_balanced=False)


class _SwallowsNaN(_Good):
    def hardness(self, ctx):
        return np.nan_to_num(ctx.signals["loss"].mean(axis=0), nan=0.0)


class _NoClassBalance(_Good):
    Params = NoParams

    def select(self, ctx, fraction):
        return ctx.keep_highest(self.hardness(ctx), fraction)


class _PluginSignalUser(_Good):
    signals = ("kit_plugin_signal",)

    def hardness(self, ctx):
        return ctx.signals["kit_plugin_signal"][-1].astype(np.float64)


FIRES = {  # method -> (the check that fails, text its detail names)
    "kit_unknown": (_UnknownSignal, "signals known", "declares ['entropy'] which no scoring run records"),
    "kit_undeclared": (_ReadsUndeclared, "signals read", "reads signal 'el2n', which it did not declare"),
    "kit_reads_nothing": (_ReadsNothing, "signals read", "declares ['loss'] but reads none of them"),
    "kit_floats": (_Floats, "budget@0.1", "expected an integer ndarray"),
    "kit_off_by_one": (_OffByOne, "budget@0.1", "returned 49 indices, expected exactly 50"),
    "kit_global_random": (_GlobalRandom, "deterministic", "two calls with seed 3 differ"),
    "kit_seed_11": (_FailsForSeed11, "other seed", "raised ValueError: cannot handle seed 11"),
    "kit_ignores_balance": (_IgnoresClassBalance, "class_balanced", "class counts"),
    "kit_no_balance": (_NoClassBalance, "class_balanced", "has no `class_balanced` parameter"),
    "kit_swallows_nan": (_SwallowsNaN, "nan", "NaN in 'loss' (sample 7) gave no MethodError"),
}


@pytest.fixture
def kit_methods():
    for name, (cls, _, _) in FIRES.items():
        register_method(name)(type(cls.__name__ + "_" + name, (cls,), {}))
    yield
    for name in FIRES:
        _REGISTRY.pop(name, None)


@pytest.mark.parametrize("name", list(FIRES))
def test_each_check_fires(kit_methods, name):
    _, check, text = FIRES[name]
    results = {r.name: r for r in check_method(name)}
    assert not results[check].passed, results[check]
    assert text in results[check].detail, results[check].detail


def test_unknown_signal_stops_the_other_checks(kit_methods):
    assert [r.name for r in check_method("kit_unknown")] == ["signals known"]


@pytest.fixture
def plugin_signal(monkeypatch):
    before = dict(signals._REGISTRY)
    register_method("kit_plugin_user")(_PluginSignalUser)
    yield
    _REGISTRY.pop("kit_plugin_user", None)
    signals._REGISTRY.clear()
    signals._REGISTRY.update(before)


def test_a_plugin_signal_without_a_fake_gets_one_of_its_declared_shape(plugin_signal):
    register_signal(Signal("kit_plugin_signal", ("K", "N"), "snapshot", "float32", "x", compute="m:f", distribution="p"))
    results = check_method("kit_plugin_user")
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    ctx = fake_context(create_method("kit_plugin_user"), n=50)
    assert ctx.signals["kit_plugin_signal"].shape == (ctx.signals["snapshot_epochs"].size, 50)


def test_a_plugin_fake_of_the_wrong_shape_fails_signals_known(plugin_signal, tmp_path, monkeypatch):
    (tmp_path / "kitfake.py").write_text("import numpy as np\ndef fake(t):\n    return np.zeros(t.n, dtype=np.float32)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    register_signal(Signal("kit_plugin_signal", ("K", "N"), "snapshot", "float32", "x", compute="m:f",
                           fake="kitfake:fake", distribution="p"))
    (result,) = check_method("kit_plugin_user")
    assert result.name == "signals known" and not result.passed
    assert "signal 'kit_plugin_signal' (p): its fake has shape (500,) and dtype float32, declared [K, N] float32" in result.detail


def test_kit_checks_a_method_reading_a_signal_another_method_records(kit_methods):
    """Isolation: even when the run holds el2n (here: every signal), an undeclared read fails."""
    ctx = fake_context(create_method("kit_undeclared"), n=60, signals=ALL_SIGNALS)
    from corebench.core.errors import MethodError
    from corebench.methods import run_selection

    with pytest.raises(MethodError, match=r"method 'kit_undeclared' reads signal 'el2n', which it did not declare \(declared: loss\)"):
        run_selection(create_method("kit_undeclared"), ctx, 0.3)
    view = ctx.only("kit_undeclared", ("loss",))
    assert "el2n" not in view.signals and set(view.signals) == {"loss"}
    assert isinstance(SelectionContext, type)
