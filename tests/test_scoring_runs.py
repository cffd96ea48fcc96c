"""Scoring runs as long as their signals need, shared through the cache, seeded apart from the target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from corebench.compute.models import create_model
from corebench.compute.scoring import get_signals, run_scoring, seeded
from corebench.compute.signal_passes import input_grad_norms
from corebench.core.spec import ArchSpec, DatasetSpec, ScoringConfig, scoring_seed
from corebench.methods import create_method
from corebench.signals import until

CPU = torch.device("cpu")
TINY = ArchSpec("resnet18", {"channels": [4, 8, 16, 32]})
SPEC = DatasetSpec("digits")


@pytest.fixture(scope="module")
def small(digits):
    from corebench.compute.data import Dataset

    return Dataset(digits.info, digits.x_train[:200], digits.y_train[:200], digits.x_test, digits.y_test)


def test_scoring_seeds_are_distinct_from_the_cell_seed_and_each_other():
    seeds = {(s, r): scoring_seed(s, r) for s in range(20) for r in range(10)}
    assert len(set(seeds.values())) == len(seeds)  # every (cell seed, run) its own
    assert not set(seeds.values()) & set(range(10_000))  # never a small cell seed, i.e. a target's init seed
    assert scoring_seed(3, 1) == scoring_seed(3, 1) and 0 <= scoring_seed(3, 1) < 2**31  # fixed, fits int32


def test_a_stopped_run_is_the_start_of_the_full_run(small):
    """The schedule is per step over all E epochs: stopping after k changes nothing before k, and
    what else is recorded does not change the training either."""
    cfg = ScoringConfig(epochs=3, batch_size=64, snapshot_epochs=(0, 1, 3))
    full = run_scoring(small, TINY, cfg, 5, {"loss", "correct", "el2n_eval", "input_grad_norm_eval", "features"},
                       device=CPU, progress=False)
    short = run_scoring(small, TINY, cfg, 5, {"loss", "el2n_eval", "input_grad_norm"}, device=CPU, progress=False,
                        train_epochs=1)
    assert short["loss"].shape == (1, 200) and short["snapshot_epochs"].tolist() == [0, 1]
    np.testing.assert_array_equal(short["loss"], full["loss"][:1])
    np.testing.assert_array_equal(short["el2n_eval"], full["el2n_eval"][:2])
    cut = until(full, 1)
    assert cut["correct"].shape == (1, 200) and cut["snapshot_epochs"].tolist() == [0, 1]
    assert cut["features"] is full["features"]  # the final model's: a run recording them trains all epochs
    other_schedule = run_scoring(small, TINY, ScoringConfig(epochs=1, batch_size=64), 5, {"loss"}, device=CPU,
                                 progress=False)
    assert not np.array_equal(other_schedule["loss"], full["loss"][:1])  # another learning-rate curve


def test_grand_at_initialisation_trains_no_step(small):
    cfg = ScoringConfig(epochs=4, batch_size=64)
    grand = create_method("grand", params="last_layer")
    epochs = grand.scoring_epochs(cfg.epochs, cfg.snapshots())
    assert epochs == 0
    out = run_scoring(small, TINY, cfg, 1, {"grand_last", "correct"}, device=CPU, progress=False, train_epochs=epochs)
    assert out["snapshot_epochs"].tolist() == [0] and out["grand_last"].shape == (1, 200)
    assert out["correct"].shape == (0, 200)
    assert create_method("el2n").scoring_epochs(200, (0, 20)) == 20  # EL2N at epoch 20 of 200
    assert create_method("el2n", score_pass="train", epoch=7).scoring_epochs(200, (0, 20)) == 7
    assert create_method("easycore").scoring_epochs(200, (0, 20)) == 200  # AIGN: every epoch
    assert create_method("forgetting").scoring_epochs(200, (0, 20)) == 200
    assert create_method("ccs", score="el2n", cutoff_by="score").scoring_epochs(200, (0, 20)) == 10


def test_cache_serves_a_shorter_need_from_a_longer_run_and_extends_a_short_one(small, tmp_path):
    cfg = ScoringConfig(epochs=3, batch_size=64, snapshot_epochs=(0, 1))

    def get(signals, epochs):
        return get_signals(small, SPEC, TINY, cfg, 0, signals, cache_dir=tmp_path, device=CPU, progress=False,
                           train_epochs=epochs)

    first = get({"loss", "el2n_eval"}, 1)
    assert not first.cached and first.epochs == 1 and first.signals["loss"].shape == (1, 200)
    again = get({"el2n_eval"}, 0)
    assert again.cached and again.epochs == 1 and again.signals["snapshot_epochs"].tolist() == [0]
    longer = get({"loss"}, 3)  # longer than the entry: made again, as long as asked, with the union
    assert not longer.cached and longer.epochs == 3 and longer.signals["loss"].shape == (3, 200)
    np.testing.assert_array_equal(longer.signals["loss"][:1], first.signals["loss"])
    served = get({"loss", "el2n_eval"}, 1)
    assert served.cached and served.epochs == 3 and served.seconds == pytest.approx(longer.seconds, abs=1e-3)
    np.testing.assert_array_equal(served.signals["loss"], first.signals["loss"])
    np.testing.assert_array_equal(served.signals["el2n_eval"], first.signals["el2n_eval"])
    assert len(list(tmp_path.glob("*.npz"))) == 1


def test_the_exact_input_gradient_pass_leaves_the_parameters_alone(small):
    with seeded(0):
        model = create_model(TINY, small.info)
    params = list(model.parameters())
    params[0].requires_grad_(False)  # a frozen parameter stays frozen, the others trainable
    norms = input_grad_norms(model, small.x_train[:50], small.y_train[:50], CPU, batch_size=16)
    assert [p.requires_grad for p in params] == [False] + [True] * (len(params) - 1)
    assert all(p.grad is None for p in params)  # no parameter gradient was computed
    model.eval()
    for i in (0, 17, 49):  # equals the gradient of that sample's own loss, alone
        x = small.x_train[i : i + 1].clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x), small.y_train[i : i + 1])
        (grad,) = torch.autograd.grad(loss, x)
        assert norms[i] == pytest.approx(float(grad.norm()), rel=1e-4)
