"""Resume inside a cell: per-epoch checkpoints give the uninterrupted run's weights exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from corebench.compute import train as train_module
from corebench.compute.checkpoint import Checkpoint
from corebench.compute.train import train_model
from corebench.core.spec import AttackConfig, TrainingConfig

from helpers import tiny_model


def _killed_after_epoch_2(point: str):
    """A stand-in for `fault_point` that raises Killed once `point` finishes epoch 2."""

    def fault_point(name, detail=""):
        if name == point and detail == "epoch 2":
            raise Killed

    return fault_point


class Killed(Exception):
    pass


def _train(digits, checkpoint=None, regime="pgd_at", epochs=3):
    model = tiny_model(digits.info, seed=0)
    attack = AttackConfig(steps=2).resolved(digits.info.eps)
    info = train_model(model, digits, np.arange(200), regime=regime, training=TrainingConfig(epochs=epochs, batch_size=64),
                       attack=attack, seed=3, device=torch.device("cpu"), progress=False, checkpoint=checkpoint)
    return model, info


@pytest.mark.parametrize("regime", ["standard", "pgd_at", "trades"])
def test_a_run_killed_after_an_epoch_resumes_to_the_same_weights(digits, tmp_path, monkeypatch, regime):
    reference, ref_info = _train(digits, regime=regime)
    ckpt = Checkpoint(tmp_path, "cell123")

    monkeypatch.setattr(train_module, "fault_point", _killed_after_epoch_2("training"))
    with pytest.raises(Killed):
        _train(digits, ckpt, regime=regime)
    assert ckpt.path.is_file() and ckpt.load()["epoch"] == 2
    monkeypatch.undo()
    resumed, info = _train(digits, ckpt, regime=regime)
    assert info["resumed_from"] == 2 and info["steps"] == ref_info["steps"]
    assert info["final_loss"] == ref_info["final_loss"]
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_finished_checkpoint_trains_nothing_again(digits, tmp_path):
    ckpt = Checkpoint(tmp_path, "cell")
    first, _ = _train(digits, ckpt, epochs=2)
    again, info = _train(digits, ckpt, epochs=2)
    assert info["resumed_from"] == 2
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_a_broken_or_foreign_checkpoint_is_removed_and_the_run_starts_over(digits, tmp_path, damage, caplog):
    ckpt = Checkpoint(tmp_path, "cell")
    _train(digits, ckpt, epochs=2)
    if damage == "truncate":
        ckpt.path.write_bytes(ckpt.path.read_bytes()[:100])
    elif damage == "garbage":
        ckpt.path.write_bytes(b"not a checkpoint")
    else:
        Checkpoint(tmp_path, "other").save({"epoch": 1})
        ckpt.path.unlink()
        (tmp_path / "other.pt").rename(ckpt.path)
    assert ckpt.load() is None and not ckpt.path.exists()
    assert "cannot be used" in caplog.text
    _, info = _train(digits, ckpt, epochs=2)
    assert info["resumed_from"] == 0


def test_checkpoints_hold_no_pickled_objects(digits, tmp_path):
    """weights_only loading refuses anything but tensors and plain containers."""
    ckpt = Checkpoint(tmp_path, "cell")
    _train(digits, ckpt, epochs=1)
    saved = torch.load(ckpt.path, weights_only=True)
    assert saved["tag"] == "cell" and saved["state"]["epoch"] == 1


def test_a_killed_scoring_run_resumes_to_the_same_signals(digits, tmp_path, monkeypatch):
    from corebench.compute import scoring
    from corebench.core.spec import ArchSpec, ScoringConfig

    arch = ArchSpec("resnet10t", {"channels": [4, 8, 16, 32], "stem_width": 4})
    cfg = ScoringConfig(epochs=3, batch_size=64, snapshot_epochs=(0, 2))
    wanted = {"input_grad_norm", "correct", "el2n_eval", "grand_last", "features", "margin_probs"}
    data = digits
    reference = scoring.run_scoring(data, arch, cfg, 0, wanted, device=torch.device("cpu"), progress=False)
    ckpt = Checkpoint(tmp_path, "scoring")

    monkeypatch.setattr(scoring, "fault_point", _killed_after_epoch_2("scoring"))
    with pytest.raises(Killed):
        scoring.run_scoring(data, arch, cfg, 0, wanted, device=torch.device("cpu"), progress=False, checkpoint=ckpt)
    monkeypatch.undo()
    assert ckpt.load()["epoch"] == 2
    resumed = scoring.run_scoring(data, arch, cfg, 0, wanted, device=torch.device("cpu"), progress=False, checkpoint=ckpt)
    assert sorted(resumed) == sorted(reference)
    for name in reference:
        np.testing.assert_array_equal(resumed[name], reference[name], err_msg=name)


@pytest.mark.gpu
def test_a_run_resumes_on_cuda(digits, tmp_path, monkeypatch):
    """The CUDA RNG state travels with the checkpoint and the state loads back onto the GPU
    (GPU kernels need not be bit-deterministic, so only the resume itself is checked)."""
    device = torch.device("cuda")
    ckpt = Checkpoint(tmp_path, "cuda-cell")

    def run():
        model = tiny_model(digits.info, seed=0)
        return train_model(model, digits, np.arange(200), regime="pgd_at",
                           training=TrainingConfig(epochs=2, batch_size=64),
                           attack=AttackConfig(steps=2).resolved(digits.info.eps), seed=3, device=device,
                           progress=False, checkpoint=ckpt)  # fmt: skip

    def die_after_epoch_1(name, detail=""):
        if name == "training" and detail == "epoch 1":
            raise Killed

    monkeypatch.setattr(train_module, "fault_point", die_after_epoch_1)
    with pytest.raises(Killed):
        run()
    assert "cuda" in ckpt.load()["rng"]
    monkeypatch.undo()
    info = run()
    assert info["resumed_from"] == 1 and math.isfinite(info["final_loss"])
