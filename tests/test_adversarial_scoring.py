"""Adversarial scoring runs (issue 22): the regime trains the proxy, the adversarial signals,
and a standard run's cache key unchanged by the new settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from corebench.compute.models import create_model
from corebench.compute.scoring import run_scoring, scoring_key, seeded
from corebench.compute.train import train_model
from corebench.core.spec import (
    ArchSpec,
    AttackConfig,
    DatasetSpec,
    ScoringConfig,
    TrainingConfig,
    stable_hash,
)

CPU = torch.device("cpu")
TINY = ArchSpec("resnet18", {"channels": [4, 8, 16, 32]})
ADV = {"adv_loss", "adv_margin", "adv_correct", "adv_input_grad_norm"}
ATTACK = AttackConfig(eps=8 / 255, steps=2)


@pytest.fixture(scope="module")
def small(digits):
    from corebench.compute.data import Dataset

    return Dataset(digits.info, digits.x_train[:128], digits.y_train[:128], digits.x_test, digits.y_test)


def test_a_standard_run_keeps_its_cache_key():
    """The new fields are left out at their defaults: the key hashes the settings as before."""
    old_form = {"epochs": 10, "batch_size": 128, "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005,
                "augment": True, "snapshot_epochs": None, "precision": "auto", "channels_last": None, "compile": False}
    assert ScoringConfig().key_form() == old_form
    assert stable_hash(ScoringConfig(regime="trades").key_form()) != stable_hash(old_form)
    assert ScoringConfig(attack=AttackConfig(steps=3)).key_form()["attack"]["steps"] == 3


def test_the_regime_is_part_of_the_key(digits):
    keys = {scoring_key(DatasetSpec("digits"), digits, TINY, ScoringConfig(regime=r), 0) for r in
            ("standard", "pgd_at", "trades")}
    assert len(keys) == 3


@pytest.mark.parametrize("regime", ["pgd_at", "trades"])
def test_an_adversarial_run_trains_as_the_regime_trains(small, regime):
    """The scoring run's proxy is the model `corebench.compute.train` trains under that regime (same
    steps, same generator draws), whatever adversarial signals it records."""
    cfg = ScoringConfig(epochs=1, batch_size=64, augment=False, regime=regime, attack=ATTACK)
    out = run_scoring(small, TINY, cfg, 3, {"loss"} | ADV, device=CPU, progress=False)
    plain = run_scoring(small, TINY, cfg, 3, {"loss"}, device=CPU, progress=False)
    np.testing.assert_array_equal(out["loss"], plain["loss"])  # the signals' attack changes nothing
    with seeded(3, CPU):
        model = create_model(TINY, small.info)
    final = run_scoring(small, TINY, cfg, 3, {"features"}, device=CPU, progress=False)["features"]
    with seeded(3, CPU):
        model = create_model(TINY, small.info)
    training = TrainingConfig(epochs=1, batch_size=64, augment=False)
    train_model(model, small, np.arange(128), regime=regime, training=training, attack=ATTACK.resolved(0.1), seed=3,
                device=CPU, progress=False)
    with torch.no_grad():
        np.testing.assert_allclose(model.features(small.x_train).numpy(), final, rtol=1e-5, atol=1e-6)
    standard = run_scoring(small, TINY, ScoringConfig(epochs=1, batch_size=64, augment=False), 3, {"features"},
                           device=CPU, progress=False)["features"]
    assert not np.allclose(standard, final)


def test_adversarial_signals_are_the_attack_seen_in_eval_mode(small):
    """Known answers on a trained-for-one-epoch proxy: the adversarial loss is at least the
    clean one for most samples, the margin's sign is the correctness, the gradient is positive."""
    cfg = ScoringConfig(epochs=2, batch_size=64, augment=False, regime="pgd_at", attack=ATTACK)
    out = run_scoring(small, TINY, cfg, 0, ADV | {"loss"}, device=CPU, progress=False)
    for name in ADV:
        assert out[name].shape == (2, 128)
    assert out["adv_correct"].dtype == bool
    np.testing.assert_array_equal(out["adv_margin"] > 0, out["adv_correct"])
    assert np.all(out["adv_input_grad_norm"] > 0) and np.all(np.isfinite(out["adv_loss"]))


def test_a_standard_run_attacks_for_its_adversarial_signals_without_changing_its_training(small):
    cfg = ScoringConfig(epochs=1, batch_size=64, attack=ATTACK)
    with_adv = run_scoring(small, TINY, cfg, 1, {"loss", "adv_loss", "adv_correct"}, device=CPU, progress=False)
    without = run_scoring(small, TINY, cfg, 1, {"loss"}, device=CPU, progress=False)
    np.testing.assert_array_equal(with_adv["loss"], without["loss"])


@pytest.mark.parametrize("eps", [1e-7, 8 / 255])
def test_adversarial_loss_before_the_first_step_is_the_eval_loss_under_attack(small, eps):
    """One batch of all N samples: epoch 1's row is read before the first update, on the initial
    model in eval mode. With ε ≈ 0 it is the clean eval-mode loss (snapshot 0), with ε > 0 PGD raises it."""
    cfg = ScoringConfig(epochs=1, batch_size=128, augment=False, snapshot_epochs=(0,),
                        attack=AttackConfig(eps=eps, step_size=eps / 4, steps=3))
    out = run_scoring(small, TINY, cfg, 2, {"adv_loss", "loss_eval"}, device=CPU, progress=False)
    if eps < 1e-6:
        np.testing.assert_allclose(out["adv_loss"][0], out["loss_eval"][0], rtol=1e-5, atol=1e-6)
    else:
        assert np.all(out["adv_loss"][0] >= out["loss_eval"][0] - 1e-6)
        assert out["adv_loss"][0].mean() > out["loss_eval"][0].mean()


def test_logits_train_are_the_training_pass_logits(small):
    cfg = ScoringConfig(epochs=2, batch_size=64)
    out = run_scoring(small, TINY, cfg, 0, {"logits_train", "loss"}, device=CPU, progress=False)
    assert out["logits_train"].shape == (2, 128, 10) and out["logits_train"].dtype == np.float16
    logits = out["logits_train"].astype(np.float64)
    z = logits - logits.max(-1, keepdims=True)
    ce = -(z - np.log(np.exp(z).sum(-1, keepdims=True)))[..., None]
    ce = np.take_along_axis(ce[..., 0], small.y_train.numpy()[None, :, None], axis=-1)[..., 0]
    np.testing.assert_allclose(ce, out["loss"], atol=0.02)


def test_scoring_runs_are_keyed_by_the_regime_each_method_reads():
    from corebench.core.spec import Cell, MethodSpec
    from corebench.drivers.scoring_runs import ScoringCache, run_label
    from corebench.methods import create_method

    scorer = ScoringCache(ScoringConfig(epochs=2), None, CPU, progress=False)
    cell = Cell(DatasetSpec("digits"), TINY, TINY, "trades", MethodSpec("friendly"), 0.1, 0)
    friendly, easycore = create_method("friendly"), create_method("easycore")
    assert [k[3] for k in scorer.keys(cell, friendly)] == ["pgd_at"]  # Dong et al.'s setting
    assert [k[3] for k in scorer.keys(cell, easycore)] == ["standard"]  # the grid's
    assert [k[3] for k in scorer.keys(cell, create_method("easycore", scoring_regime="trades"))] == ["trades"]
    assert scorer.cfg_for(scorer.keys(cell, friendly)[0]).regime == "pgd_at"
    assert run_label(scorer.keys(cell, friendly)[0]).endswith("× pgd_at scoring")
    trades_grid = ScoringCache(ScoringConfig(epochs=2, regime="trades"), None, CPU, progress=False)
    assert [k[3] for k in trades_grid.keys(cell, easycore)] == ["trades"]


def test_the_smoke_scoring_run_covers_the_longest_window():
    from corebench.cells.grid import load_grid
    from corebench.drivers.smoke import smoke_grid

    grid = load_grid("configs/cifar10_adversarial.yaml")
    assert smoke_grid(grid).scoring.epochs == 6  # windows of 5 epochs
    assert smoke_grid(load_grid("configs/quickstart.yaml")).scoring.epochs == 1


def test_the_adversarial_grid_runs_end_to_end_on_stand_in_data(tmp_path):
    """Every cell of configs/cifar10_adversarial.yaml's smoke grid runs, and each record names the
    regime of the scoring runs its selection read."""
    import json

    from corebench.cli import main

    assert main(["run", "configs/cifar10_adversarial.yaml", "--smoke", "--results", str(tmp_path / "res"),
                 "--cache", str(tmp_path / "cache"), "--no-progress"]) == 0
    regimes = {}
    for path in (tmp_path / "res").rglob("seed0.json"):
        record = json.loads(path.read_text())
        assert record["status"] == "ok", path
        regimes[record["cell"]["method_label"]] = {r["regime"] for r in record["cost"]["scoring_runs"]}
    assert regimes["friendly_pgd_at"] == {"pgd_at"} and regimes["easycore"] == {"standard"}
    assert regimes["easycore_trades"] == regimes["tdds_trades"] == {"trades"} and regimes["random"] == set()
