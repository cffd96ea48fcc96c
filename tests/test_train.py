"""train_model: every regime trains, standard training learns, a seed gives the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from corebench.compute.models import create_model
from corebench.compute.train import train_model
from corebench.core.spec import REGIMES, ArchSpec, AttackConfig, TrainingConfig

from helpers import tiny_model

CPU = torch.device("cpu")




@pytest.fixture(scope="module")
def attack(digits):
    return AttackConfig(steps=3).resolved(digits.info.eps)




def weights(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def test_regimes_are_the_config_regimes():
    assert REGIMES == ("standard", "pgd_at", "trades")


@pytest.mark.parametrize("regime", REGIMES)
def test_each_regime_trains_and_changes_weights(digits, attack, regime):
    model = tiny_model(digits.info)
    before = weights(model)
    indices = np.arange(0, 400, 2)  # 200 samples: 2 batches of 128 and 72
    out = train_model(model, digits, indices, regime=regime, training=TrainingConfig(epochs=2),
                      attack=attack, seed=0, device=CPU, progress=False)
    assert out["epochs"] == 2 and out["steps"] == 4
    assert np.isfinite(out["final_loss"]) and out["final_loss"] > 0 and out["seconds"] > 0
    after = weights(model)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert not model.training


def test_training_is_deterministic_for_a_seed_and_leaves_global_rng_alone(digits, attack):
    indices = np.arange(300)
    cfg = TrainingConfig(epochs=1, batch_size=64)
    runs = []
    for seed in (7, 7, 8):
        model = tiny_model(digits.info, seed=0)
        state = torch.get_rng_state()
        train_model(model, digits, indices, regime="pgd_at", training=cfg, attack=attack, seed=seed,
                    device=CPU, progress=False)
        assert torch.equal(state, torch.get_rng_state())
        runs.append(weights(model))
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(runs[0], runs[2], strict=True))


def test_standard_training_learns_digits(digits, attack):
    model = tiny_model(digits.info)
    indices = np.arange(len(digits.x_train))
    train_model(model, digits, indices, regime="standard", training=TrainingConfig(epochs=3),
                attack=attack, seed=0, device=CPU, progress=False)
    with torch.no_grad():
        acc = (model(digits.x_test).argmax(1) == digits.y_test).float().mean().item()
    assert acc > 0.7  # chance is 0.1; about 0.9 measured


def test_a_last_batch_of_one_joins_the_batch_before(digits, attack):
    """BatchNorm cannot train on one sample (the ResNet's last stage is 1×1 on 8×8 digits);
    129 samples at batch 128 make one step of 129 per epoch, and every sample is seen."""
    from corebench.compute.optim import batch_order

    batches = list(batch_order(np.arange(129), 128, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [129]
    assert [len(b) for b in batch_order(np.arange(130), 128, torch.Generator().manual_seed(0))] == [128, 2]
    model = create_model(ArchSpec("resnet18", {"channels": [8, 16, 32, 64]}), digits.info)
    out = train_model(model, digits, np.arange(129), regime="standard", training=TrainingConfig(epochs=2),
                      attack=attack, seed=0, device=CPU, progress=False)
    assert out["steps"] == 2
