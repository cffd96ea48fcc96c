"""The scoring run: each signal against a direct computation, caching, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corebench.compute.datasets import load_dataset
from corebench.compute.models import create_model
from corebench.compute.scoring import (
    ALL_SIGNALS,
    TRAIN_PASS,
    get_signals,
    run_scoring,
    seeded,
)
from corebench.compute.signal_passes import el2n, margin
from corebench.core.errors import ConfigError
from corebench.core.spec import ArchSpec, DatasetSpec, ScoringConfig

from helpers import final_scoring_model

CPU = torch.device("cpu")
TINY = ArchSpec("resnet18", {"channels": [4, 8, 16, 32]})


@pytest.fixture(scope="module")
def digits():
    data = load_dataset(DatasetSpec("digits"))
    data.x_train, data.y_train = data.x_train[:160], data.y_train[:160]
    return data


def test_margin_and_el2n_match_their_definitions():
    logits = torch.tensor([[2.0, 1.0, -1.0], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 2])
    assert margin(logits, y).tolist() == pytest.approx([1.0, -2.0])
    probs = logits.softmax(1)
    expected = [float(torch.linalg.norm(probs[i] - F.one_hot(y[i], 3))) for i in range(2)]
    assert el2n(probs, y).tolist() == pytest.approx(expected)


def test_every_signal_has_its_shape_and_is_deterministic(digits):
    cfg = ScoringConfig(epochs=2, batch_size=64, snapshot_epochs=(0, 2))
    wanted = set(ALL_SIGNALS)
    a = run_scoring(digits, TINY, cfg, 0, wanted, device=CPU, progress=False)
    b = run_scoring(digits, TINY, cfg, 0, wanted, device=CPU, progress=False)
    n = digits.x_train.shape[0]
    for name in TRAIN_PASS + ("input_grad_norm_eval",):
        assert a[name].shape == ((2, n, 10) if name == "logits_train" else (2, n)), name
    assert a["correct"].dtype == bool
    assert a["grand_all"].shape == a["grand_last"].shape == a["el2n_eval"].shape == (2, n)
    assert a["snapshot_epochs"].tolist() == [0, 2]
    assert a["features"].shape[0] == n and a["features"].ndim == 2
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    c = run_scoring(digits, TINY, cfg, 1, {"loss"}, device=CPU, progress=False)
    assert not np.array_equal(a["loss"], c["loss"])  # the seed matters


def test_training_pass_loss_is_the_per_sample_cross_entropy(digits):
    """With lr 1e-30 the weights cannot move in float32, so the recorded loss equals a direct
    evaluation... in train mode (a grid rejects lr 0)."""
    cfg = ScoringConfig(epochs=1, batch_size=1000, lr=1e-30, augment=False, weight_decay=0.0)
    out = run_scoring(digits, TINY, cfg, 3, {"loss", "correct", "input_grad_norm"}, device=CPU, progress=False)
    with seeded(3):
        model = create_model(TINY, digits.info)
    model.train()
    x = digits.x_train.clone().requires_grad_(True)
    logits = model(x)
    losses = F.cross_entropy(logits, digits.y_train, reduction="none")
    # one batch holds every sample (batch_size > N), in a shuffled order: compare by index
    np.testing.assert_allclose(out["loss"][0], losses.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out["correct"][0], (logits.argmax(1) == digits.y_train).numpy())
    (grad,) = torch.autograd.grad(losses.sum(), x)
    np.testing.assert_allclose(out["input_grad_norm"][0], grad.flatten(1).norm(dim=1).numpy(), rtol=1e-3, atol=1e-6)


def test_eval_pass_and_grand_match_per_sample_autograd(digits):
    cfg = ScoringConfig(epochs=1, batch_size=64, snapshot_epochs=(1,))
    out = run_scoring(digits, TINY, cfg, 0, {"input_grad_norm_eval", "grand_all", "grand_last", "el2n_eval"},
                      device=CPU, progress=False)
    model = final_scoring_model(digits, TINY, cfg, 0)  # the same seeded run, kept
    head = model.classifier()
    for i in (0, 7, 42):
        x = digits.x_train[i : i + 1].clone().requires_grad_(True)
        loss = F.cross_entropy(model(x), digits.y_train[i : i + 1])
        grads = torch.autograd.grad(loss, [x, *model.parameters()])
        assert out["input_grad_norm_eval"][0, i] == pytest.approx(float(grads[0].norm()), rel=1e-3)
        full = torch.sqrt(sum(g.pow(2).sum() for g in grads[1:]))
        assert out["grand_all"][0, i] == pytest.approx(float(full), rel=1e-3)
        last = torch.autograd.grad(F.cross_entropy(model(digits.x_train[i : i + 1]), digits.y_train[i : i + 1]), list(head.parameters()))
        assert out["grand_last"][0, i] == pytest.approx(float(torch.sqrt(sum(g.pow(2).sum() for g in last))), rel=1e-3)
        with torch.no_grad():
            probs = model(digits.x_train[i : i + 1]).softmax(1)
        assert out["el2n_eval"][0, i] == pytest.approx(float(el2n(probs, digits.y_train[i : i + 1])), rel=1e-4)


def test_snapshots_default_to_initialisation_and_ten_percent_into_training():
    assert ScoringConfig(epochs=200).snapshots() == (0, 20)
    assert ScoringConfig(epochs=8).snapshots() == (0, 1)
    assert ScoringConfig(epochs=8, snapshot_epochs=(3, 0, 3)).snapshots() == (0, 3)


def test_cache_reuses_runs_and_stores_the_union(digits, tmp_path):
    cfg = ScoringConfig(epochs=1, batch_size=128)
    spec = DatasetSpec("digits")
    first = get_signals(digits, spec, TINY, cfg, 0, {"loss"}, cache_dir=tmp_path, device=CPU, progress=False)
    assert not first.cached and set(first.signals) == {"loss"}
    again = get_signals(digits, spec, TINY, cfg, 0, {"loss"}, cache_dir=tmp_path, device=CPU, progress=False)
    assert again.cached
    np.testing.assert_array_equal(first.signals["loss"], again.signals["loss"])
    more = get_signals(digits, spec, TINY, cfg, 0, {"el2n"}, cache_dir=tmp_path, device=CPU, progress=False)
    assert not more.cached
    both = get_signals(digits, spec, TINY, cfg, 0, {"loss", "el2n"}, cache_dir=tmp_path, device=CPU, progress=False)
    assert both.cached and set(both.signals) == {"loss", "el2n"}
    other = get_signals(digits, spec, TINY, ScoringConfig(epochs=2, batch_size=128), 0, {"loss"},
                        cache_dir=tmp_path, device=CPU, progress=False)
    assert not other.cached and other.key != first.key
    assert len(list(tmp_path.glob("*.npz"))) == 2 and not list(tmp_path.glob(".*tmp*"))


def test_unknown_signal_is_a_config_error(digits, tmp_path):
    with pytest.raises(ConfigError, match="signals: 'aum'.*allowed: input_grad_norm"):
        get_signals(digits, DatasetSpec("digits"), TINY, ScoringConfig(epochs=1), 0, {"aum"},
                    cache_dir=tmp_path, device=CPU, progress=False)


def test_a_cached_plugin_signal_made_by_older_code_is_outdated(monkeypatch):
    """Plug-in signal values are keyed by their code's hash (`signals.signal_code`): a cache
    entry made by other code is not served (and `--force` remakes every scoring run)."""
    import corebench.compute.scoring as scoring

    codes = {"loss": None, "mine": "new"}
    monkeypatch.setattr(scoring, "signal_code", codes.get)
    monkeypatch.setattr(scoring, "list_signals", lambda: ["loss", "mine"])
    assert scoring.codes_of(["loss", "mine"]) == {"mine": "new"}
    assert scoring.outdated_signals({"signals": ["loss", "mine"], "signal_code": {"mine": "new"}}) == set()
    assert scoring.outdated_signals({"signals": ["loss", "mine"], "signal_code": {"mine": "old"}}) == {"mine"}
    assert scoring.outdated_signals({"signals": ["loss", "mine"]}) == {"mine"}  # made before codes were kept
