"""evaluate + the AutoAttack adapter: accuracies, the protocol recorded, isolation, clear errors."""

from __future__ import annotations

import copy
import dataclasses
import random
import sys
import time

import numpy as np
import pytest
import torch

from corebench.compute.autoattack_adapter import run_autoattack
from corebench.compute.evaluate import EvalResult, evaluate
from corebench.compute.robustbench_adapter import load_reference_model
from corebench.compute.train import train_model
from corebench.core.checked import build
from corebench.core.errors import BenchError, ConfigError
from corebench.core.spec import (
    AUTOATTACK_ATTACKS,
    AttackConfig,
    AutoAttackConfig,
    EvaluationConfig,
    TrainingConfig,
)

from helpers import tiny_model

CPU = torch.device("cpu")
APGD_CE = AutoAttackConfig(version="custom", attacks=("apgd-ce",))






@pytest.fixture(scope="module")
def model(digits):
    """A standard-trained tiny net (about 90% clean accuracy on digits)."""
    m = tiny_model(digits.info)
    train_model(m, digits, np.arange(len(digits.x_train)), regime="standard",
                training=TrainingConfig(epochs=3), attack=AttackConfig().resolved(digits.info.eps),
                seed=0, device=CPU, progress=False)
    return m


def test_resolve_evaluation_fills_defaults_from_the_dataset(digits):
    cfg = EvaluationConfig().resolved(digits.info.eps)
    assert cfg.eps == pytest.approx((32 / 255,)) and cfg.pgd_step_size == pytest.approx((8 / 255,))
    assert cfg.autoattack.attacks == ("apgd-ce", "apgd-t", "fab-t", "square")
    assert cfg.resolved(digits.info.eps) == cfg  # a resolved config resolves to itself
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.eps = 0.5  # type: ignore[misc]
    custom = EvaluationConfig(eps=0.1, pgd_step_size=0.02, autoattack=APGD_CE).resolved(digits.info.eps)
    assert (custom.eps, custom.pgd_step_size, custom.autoattack.attacks) == ((0.1,), (0.02,), ("apgd-ce",))


def attacks_for(version: str, attacks: list[str] | None) -> tuple[str, ...]:
    return build(AutoAttackConfig, {"version": version, "attacks": attacks}, "evaluation.autoattack").run_list()


def test_attack_lists_per_version():
    assert attacks_for("standard", None) == ("apgd-ce", "apgd-t", "fab-t", "square")
    assert attacks_for("rand", None) == ("apgd-ce", "apgd-dlr")
    assert set(attacks_for("plus", None)) == set(AUTOATTACK_ATTACKS)
    assert attacks_for("custom", ["square", "apgd-ce"]) == ("square", "apgd-ce")
    with pytest.raises(ConfigError, match="allowed: apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square"):
        attacks_for("custom", ["apgd-ce", "pgd"])
    with pytest.raises(ConfigError, match="only with version: custom"):
        attacks_for("standard", ["apgd-ce"])
    with pytest.raises(ConfigError, match="each attack at most once"):
        attacks_for("custom", ["apgd-ce", "apgd-ce"])


def test_evaluate_reports_consistent_accuracies(model, digits):
    cfg = EvaluationConfig(n_examples=80, batch_size=32, pgd_steps=10, autoattack=APGD_CE)
    res = evaluate(model, digits, cfg, CPU, progress=False)
    assert isinstance(res, EvalResult)
    assert res.n_eval == 80 and res.eps == pytest.approx(32 / 255) and res.norm == "Linf"
    assert (res.pgd_steps, res.pgd_step_size) == (10, pytest.approx(8 / 255))
    assert res.autoattack_version == "custom" and res.autoattack_attacks == ("apgd-ce",)
    assert list(res.autoattack_per_attack) == ["clean", "apgd-ce"]
    assert res.clean_acc > 60
    assert res.autoattack_per_attack["clean"] == pytest.approx(res.clean_acc)
    assert res.autoattack_acc == res.autoattack_per_attack["apgd-ce"]
    assert 0 <= res.autoattack_acc <= res.clean_acc and 0 <= res.pgd_acc <= res.clean_acc
    assert res.pgd_acc < res.clean_acc  # ε = 32/255 breaks a standard-trained net
    with torch.no_grad():
        expected_clean = (model(digits.x_test[:80]).argmax(1) == digits.y_test[:80]).float().mean().item()
    assert res.clean_acc == pytest.approx(100 * expected_clean)
    with torch.no_grad():  # the clean predictions per class (a degenerate model piles them in one)
        predicted = torch.bincount(model(digits.x_test[:80]).argmax(1), minlength=10).tolist()
    assert list(res.predicted_histogram) == predicted and sum(predicted) == 80
    assert not model.training
    assert evaluate(model, digits, cfg, CPU, progress=False) == res  # deterministic


def test_the_attacks_run_in_the_layout_the_evaluation_asks_whatever_training_left(model, digits):
    """`evaluation.channels_last: true` attacks a channels_last model; the CPU default attacks the
    default layout even when training left the model channels_last, so a resumed model and a
    freshly trained one are attacked alike. The two layouts differ only in float rounding."""
    cfg = EvaluationConfig(n_examples=80, batch_size=32, pgd_steps=10, autoattack=APGD_CE)
    net = copy.deepcopy(model)
    default = evaluate(net, digits, cfg, CPU, progress=False)
    fast = evaluate(net, digits, dataclasses.replace(cfg, channels_last=True), CPU, progress=False)
    assert net.net[3].weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.clean_acc == default.clean_acc and fast.predicted_histogram == default.predicted_histogram
    assert abs(fast.pgd_acc - default.pgd_acc) <= 2.5 and abs(fast.autoattack_acc - default.autoattack_acc) <= 2.5
    assert evaluate(net, digits, cfg, CPU, progress=False) == default  # laid back: the same numbers exactly
    assert net.net[3].weight.is_contiguous() and not net.net[3].weight.is_contiguous(memory_format=torch.channels_last)


def test_several_eps_give_one_robust_entry_each_and_the_largest_on_top(model, digits):
    radii = (32 / 255, 8 / 255, 16 / 255)
    cfg = EvaluationConfig(n_examples=40, batch_size=16, pgd_steps=5, eps=radii, autoattack=APGD_CE)
    res = evaluate(model, digits, cfg, CPU, progress=False)
    assert [r.eps for r in res.robust] == sorted(radii)  # ascending
    assert [r.pgd_step_size for r in res.robust] == pytest.approx([e / 4 for e in sorted(radii)])
    assert (res.eps, res.pgd_acc, res.autoattack_acc) == (radii[0], res.robust[-1].pgd_acc, res.robust[-1].autoattack_acc)
    pgd = [r.pgd_acc for r in res.robust]
    assert pgd[0] >= pgd[-1] and all(0 <= p <= res.clean_acc for p in pgd)
    for entry in res.robust:  # one ε of a list is measured exactly as that ε alone
        alone = evaluate(model, digits, dataclasses.replace(cfg, eps=(entry.eps,)), CPU, progress=False)
        assert (alone.clean_acc, alone.pgd_acc, alone.autoattack_acc) == (res.clean_acc, entry.pgd_acc, entry.autoattack_acc)
        assert alone.autoattack_per_attack == entry.autoattack_per_attack


def test_evaluate_caps_at_test_size_and_can_skip_autoattack(model, digits):
    cfg = EvaluationConfig(n_examples=10_000, pgd_steps=2, autoattack=AutoAttackConfig(enabled=False))
    res = evaluate(model, digits, cfg, CPU, progress=False)
    assert res.n_eval == len(digits.x_test) == 450
    assert res.autoattack_acc is None and res.autoattack_per_attack == {} and res.autoattack_attacks == ()


def test_cascade_matches_one_autoattack_run(model, digits):
    """Per-attack numbers come from running the attacks one by one; the final number must equal
    what a single pyautoattack run gives."""
    from pyautoattack import AutoAttack

    x, y = digits.x_test[:40], digits.y_test[:40]
    acc, per_attack, ran = run_autoattack(model, x, y, autoattack=AutoAttackConfig(version="custom", attacks=["apgd-ce", "apgd-t"], seed=0), eps=32 / 255, batch_size=16)
    assert ran == ("apgd-ce", "apgd-t")
    assert per_attack["clean"] >= per_attack["apgd-ce"] >= per_attack["apgd-t"] == acc
    reference = copy.deepcopy(model).eval()
    adversary = AutoAttack(reference, attacks=["apgd-ce", "apgd-t"], eps=32 / 255, seed=0, version="custom")
    _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=16)
    assert acc == pytest.approx(100 * (y_adv == y).float().mean().item())


def test_the_package_checks_run_once_per_evaluation_and_are_restored(model, digits, monkeypatch):
    """The start-up checks run with the first attack only (a direct call runs them once too);
    the package's functions are its own again afterwards."""
    from pyautoattack import checks

    originals = {name: getattr(checks, name) for name in ("check_randomized", "check_dynamic")}
    calls = []
    for name, fn in originals.items():
        monkeypatch.setattr(checks, name, lambda *a, _n=name, _f=fn, **k: calls.append(_n) or _f(*a, **k))
    patched = {name: getattr(checks, name) for name in originals}
    run_autoattack(model, digits.x_test[:40], digits.y_test[:40], eps=32 / 255, batch_size=40,
                   autoattack=AutoAttackConfig(version="custom", attacks=["apgd-ce", "apgd-t", "fab-t"], seed=0))
    assert sorted(calls) == ["check_dynamic", "check_randomized"]
    assert {name: getattr(checks, name) for name in originals} == patched


def test_autoattack_is_isolated_from_global_state(model, digits):
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    model.train()
    model.zero_grad(set_to_none=True)
    flags = [p.requires_grad for p in model.parameters()]

    def tracer(frame, event, arg):  # a stand-in for a debugger or coverage
        return None

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        run_autoattack(model, digits.x_test[:20], digits.y_test[:20], autoattack=AutoAttackConfig(version="custom", attacks=["fab-t"], seed=5), eps=32 / 255, batch_size=20)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(old)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == py_state
    saved = np.random.get_state()
    assert saved[0] == np_state[0] and np.array_equal(saved[1], np_state[1]) and saved[2:] == np_state[2:]
    assert model.training
    model.eval()
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())  # FAB's backward() left nothing behind


def test_standard_autoattack_on_a_few_examples(model, digits):
    start = time.perf_counter()
    acc, per_attack, ran = run_autoattack(model, digits.x_test[:20], digits.y_test[:20], autoattack=AutoAttackConfig(version="standard", seed=0), eps=32 / 255)
    assert ran == ("apgd-ce", "apgd-t", "fab-t", "square")
    assert list(per_attack) == ["clean", *ran]
    values = list(per_attack.values())
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))  # each attack only removes points
    assert acc == values[-1]
    assert time.perf_counter() - start < 60


def test_dlr_attacks_need_enough_classes(digits):
    two_class = tiny_model(digits.info, num_classes=2)
    y = (digits.y_test[:8] % 2).long()
    with pytest.raises(ConfigError, match="'apgd-t' is not allowed with 2 classes"):
        run_autoattack(two_class, digits.x_test[:8], y, autoattack=AutoAttackConfig(version="standard"), eps=0.1)
    acc, per_attack, _ = run_autoattack(two_class, digits.x_test[:8], y, autoattack=AutoAttackConfig(version="custom", attacks=["apgd-ce", "fab-t"]), eps=0.1)
    assert 0 <= acc <= per_attack["clean"]


def test_robustbench_missing_is_one_clean_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "robustbench", None)  # absent, whatever is installed
    with pytest.raises(BenchError) as info:
        load_reference_model("Standard", "cifar10")
    message = str(info.value)
    assert "robustbench is not installed or does not import" in message
    assert "pip install 'corebench[robustbench]'" in message and "\n" not in message


def test_autoattack_budget_is_applied_and_equals_pyautoattack_set_the_same_way(model, digits):
    """A cheaper AutoAttack (1 APGD restart × 10 iterations, 3 target classes) is what the adapter
    runs: the same number as pyautoattack given those settings directly."""
    from pyautoattack import AutoAttack

    x, y = digits.x_test[:40], digits.y_test[:40]
    cheap = AutoAttackConfig(version="custom", attacks=("apgd-ce", "apgd-t"), apgd_restarts=1,
                             apgd_iterations=10, target_classes=3)  # fmt: skip
    acc, _, _ = run_autoattack(model, x, y, autoattack=cheap, eps=32 / 255, batch_size=16)
    reference = AutoAttack(copy.deepcopy(model).eval(), attacks=["apgd-ce", "apgd-t"], eps=32 / 255, seed=0,
                           version="custom")  # fmt: skip
    reference.apgd.n_restarts, reference.apgd.n_iter = 1, 10
    reference.apgd_targeted.n_iter, reference.apgd_targeted.n_target_classes = 10, 3
    _, y_adv = reference.run_standard_evaluation(x, y, batch_size=16)
    assert acc == pytest.approx(100 * (y_adv == y).float().mean().item())


def test_the_autoattack_budget_is_part_of_the_protocol():
    from corebench.core.protocol import Protocol

    def protocol(**budget) -> Protocol:
        aa = AutoAttackConfig(version="custom", attacks=("apgd-ce", "apgd-t"), **budget)
        ev = EvaluationConfig(eps=8 / 255, n_examples=100, autoattack=aa).resolved(8 / 255)
        return Protocol.of(dataclasses.asdict(ev))

    default, cheap = protocol(), protocol(apgd_restarts=1, target_classes=3)
    assert default == protocol(apgd_restarts=5, apgd_iterations=100, target_classes=9)  # custom's own budget
    assert default.key != cheap.key and default.tag() != cheap.tag()
    assert "AutoAttack `custom` (apgd-ce, apgd-t), first 100" in default.text()
    assert "(apgd-ce, apgd-t; APGD 1 restart × 100 iterations, 3 target classes)" in cheap.text()
    assert EvaluationConfig().resolved(0.1).autoattack.apgd_restarts == 1  # standard restarts once
