"""The fast path's logic, on CPU: exact uint8 storage, on-device batches and augmentation equal to
the float path, seeded determinism, the resolution of `auto`, autocast only where asked,
channels_last, torch.compile plumbing and the SGD implementations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from corebench.compute import fastpath
from corebench.compute.data import DatasetInfo, augment_batch
from corebench.compute.fastpath import (
    LEVELS,
    DeviceData,
    Execution,
    as_uint8,
    autocast,
    prepare_model,
    resolve,
)
from corebench.compute.optim import make_optimizer
from corebench.core.errors import ConfigError

CIFAR = DatasetInfo("c", 10, (3, 32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 8 / 255)
CPU = torch.device("cpu")


def images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """uint8 pixels loaded the way every 8-bit dataset is: float32(k) / 255."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8).float().div_(255.0)


# --------------------------------------------------------------------------- storage and conversion


def test_uint8_storage_gives_back_every_bit_of_the_float_images():
    x = images()
    u8 = as_uint8(x)
    assert u8 is not None and u8.dtype == torch.uint8 and u8.shape == x.shape
    assert torch.equal(LEVELS[u8.long()], x)
    assert torch.equal(u8.float().div(255.0), x)  # the loaders' own formula, the same bits


@pytest.mark.parametrize("make", [
    lambda x: (torch.arange(64 * 64) % 17).float().div(16).view(64, 1, 8, 8),  # digits' 17 grey levels
    lambda x: (x + 1e-7).clamp(0, 1),  # floats between the levels
    lambda x: x * 1.5,  # outside [0, 1]
    lambda x: x.double(),
], ids=["digits-levels", "between-levels", "out-of-range", "float64"])
def test_images_that_are_not_8_bit_levels_are_kept_as_float(make):
    assert as_uint8(make(images())) is None


def test_device_data_stores_uint8_when_lossless_and_float32_otherwise(digits):
    x = images()
    assert DeviceData(x, torch.zeros(64, dtype=torch.long), CPU, info=CIFAR, augment=False, compact=True).storage == "uint8"
    d = DeviceData(digits.x_train, digits.y_train, CPU, info=digits.info, augment=False, compact=True)
    assert d.storage == "float32" and d.x.dtype == torch.float32


def test_on_the_cpu_the_float_images_are_the_device_copy(digits):
    """No second copy on the host: uint8 storage is for accelerators."""
    x = images()
    d = DeviceData(x, torch.zeros(64, dtype=torch.long), CPU, info=CIFAR, augment=False)
    assert d.storage == "float32" and d.x is x
    assert fastpath.compact_on(torch.device("cuda")) and not fastpath.compact_on(CPU)


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("kind", ["uint8", "float32"])
def test_a_batch_is_the_float_path_batch_bit_for_bit(augment, kind, digits):
    """The same generator draws give the same crops and flips: the device batch equals
    `augment_batch(x[index])` of the float path, for uint8 and float storage."""
    if kind == "uint8":
        x, y, info = images(128), torch.arange(128) % 10, CIFAR
    else:
        x, y, info = digits.x_train[:128], digits.y_train[:128], digits.info
    data = DeviceData(x, y, CPU, info=info, augment=augment, compact=True)
    assert data.storage == kind
    index = torch.randperm(128, generator=torch.Generator().manual_seed(3))[:50]
    g_fast, g_float = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    xb, yb = data.batch(index, g_fast)
    expected = augment_batch(x[index], info, g_float) if augment else x[index]
    assert xb.dtype == torch.float32 and torch.equal(xb, expected) and torch.equal(yb, y[index])
    assert torch.equal(g_fast.get_state(), g_float.get_state())  # the same draws were consumed


def test_augmented_batches_are_padded_crops_and_flips_of_their_images():
    """Shape and bounds kept; each image is one of the (2p+1)² windows of its zero-padded
    image, mirrored or not; over many draws flips and offsets are spread as uniform draws are."""
    x = images(256)
    data = DeviceData(x, torch.zeros(256, dtype=torch.long), CPU, info=CIFAR, augment=True, compact=True)
    p = CIFAR.crop_padding
    padded = nn.functional.pad(x, (p, p, p, p))
    flips, offsets = 0, torch.zeros(2 * p + 1, 2 * p + 1)
    gen = torch.Generator().manual_seed(0)
    xb, _ = data.batch(torch.arange(256), gen)
    assert xb.shape == x.shape and float(xb.min()) >= 0 and float(xb.max()) <= 1
    for i in range(256):
        found = [(dy, dx, f) for dy in range(2 * p + 1) for dx in range(2 * p + 1) for f in (False, True)
                 if torch.equal(xb[i], (padded[i].flip(2) if f else padded[i])[:, dy : dy + 32, dx : dx + 32])]
        assert found, f"image {i} is no padded window of its source"
        dy, dx, f = found[0]
        flips += f
        offsets[dy, dx] += 1
    assert 0.35 < flips / 256 < 0.65
    rows, cols = offsets.sum(1) / 256, offsets.sum(0) / 256
    assert float(rows.min()) > 0.03 and float(cols.min()) > 0.03  # every shift occurs (uniform: 1/9 each)


def test_batches_are_determined_by_the_generator_seed():
    data = DeviceData(images(64), torch.zeros(64, dtype=torch.long), CPU, info=CIFAR, augment=True, compact=True)
    index = torch.arange(64)
    a, _ = data.batch(index, torch.Generator().manual_seed(1))
    b, _ = data.batch(index, torch.Generator().manual_seed(1))
    c, _ = data.batch(index, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_channels_last_batches_hold_the_same_values():
    x = images(16)
    data = DeviceData(x, torch.zeros(16, dtype=torch.long), CPU, info=CIFAR, augment=False, channels_last=True,
                      compact=True)
    xb, _ = data.batch(torch.arange(16))
    assert xb.is_contiguous(memory_format=torch.channels_last) and torch.equal(xb, x)


# --------------------------------------------------------------------------- settings


def test_auto_settings_leave_the_cpu_path_as_it_was():
    assert resolve("auto", None, False, CPU) == Execution("fp32", False, False, "for-loop")


def test_auto_settings_on_cuda_take_bf16_channels_last_and_fused_sgd(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = torch.device("cuda")
    assert resolve("auto", None, False, cuda) == Execution("bf16", True, False, "fused")
    assert resolve("fp32", False, True, cuda) == Execution("fp32", False, True, "fused")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Old GPU")
    assert resolve("auto", None, False, cuda).precision == "fp32"
    with pytest.raises(ConfigError, match="bf16 is not supported by Old GPU"):
        resolve("bf16", None, False, cuda)


def test_bf16_can_be_asked_for_on_cpu():
    assert resolve("bf16", True, False, CPU) == Execution("bf16", True, False, "for-loop")


def test_an_execution_is_recorded_as_plain_values():
    assert Execution("bf16", True, False, "fused", "uint8").record() == {
        "precision": "bf16", "channels_last": True, "compile": False, "sgd": "fused", "data": "uint8"}


# --------------------------------------------------------------------------- autocast, layout, compile


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).relu().mean((2, 3)))


def test_autocast_is_bf16_only_when_asked():
    model, x = Tiny(), images(4)
    seen = []
    model.conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with autocast(CPU, "fp32"):
        model(x)
    with autocast(CPU, "bf16"):
        model(x)
    model(x)  # outside any context again
    assert seen == [torch.float32, torch.bfloat16, torch.float32]


def test_channels_last_model_computes_the_same_function():
    torch.manual_seed(0)
    model, x = Tiny().eval(), images(4)
    before = model(x)
    step = prepare_model(model, Execution("fp32", True, False, "for-loop"))
    assert step is model and model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), before)


def test_compile_wraps_only_the_step_and_keeps_the_weights_names():
    torch.manual_seed(0)
    model, x = Tiny().eval(), images(4)
    step = prepare_model(model, Execution("fp32", False, True, "for-loop"), backend="eager")
    assert step is not model and isinstance(step, torch._dynamo.eval_frame.OptimizedModule)
    torch.testing.assert_close(step(x), model(x))
    assert list(model.state_dict()) == ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean",
                                        "bn.running_var", "bn.num_batches_tracked", "fc.weight", "fc.bias"]


@pytest.mark.parametrize("impl", ["foreach", "fused"])
def test_sgd_implementations_agree_with_the_for_loop(impl):
    def train(sgd: str) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = Tiny()
        opt, sched = make_optimizer(model, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, total_steps=5,
                                    sgd=sgd)
        x, y = images(8), torch.arange(8)
        for _ in range(5):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            sched.step()
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(train("for-loop"), train(impl), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    opt, _ = make_optimizer(Tiny(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=0, total_steps=1, sgd=impl)
    assert opt.defaults[impl] is True


def test_the_for_loop_sgd_is_torch_default_on_cpu():
    opt, _ = make_optimizer(Tiny(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=0, total_steps=1)
    assert not opt.defaults["foreach"] and not opt.defaults["fused"]


def test_deterministic_mode_is_restored_after_the_block():
    before = torch.are_deterministic_algorithms_enabled()
    with fastpath.deterministic():
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert torch.are_deterministic_algorithms_enabled() == before


def test_execution_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Execution("fp32", False, False, "for-loop").precision = "bf16"  # type: ignore[misc]


# --------------------------------------------------------------------------- wired into training and scoring


def _train(data, regime="standard", indices=None, epochs=1, checkpoint=None, **settings):
    from corebench.compute.train import train_model
    from corebench.core.spec import AttackConfig, TrainingConfig

    from helpers import tiny_model

    model = tiny_model(data.info, seed=0)
    info = train_model(model, data, np.arange(96) if indices is None else indices, regime=regime,
                       training=TrainingConfig(epochs=epochs, batch_size=32, **settings),
                       attack=AttackConfig(steps=2).resolved(data.info.eps), seed=1, device=CPU, progress=False,
                       checkpoint=checkpoint)
    return model, info


def _conv_dtypes(model):
    seen = []
    model.net[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    return seen


@pytest.fixture(scope="module")
def cifar_like():
    from corebench.compute.data import Dataset

    x = images(128, seed=4)
    y = torch.arange(128) % 10
    return Dataset(CIFAR, x, y, x[:16], y[:16])


def test_training_records_how_it_ran_and_on_cpu_auto_is_the_plain_path(cifar_like):
    _, info = _train(cifar_like)
    assert info["execution"] == {"precision": "fp32", "channels_last": False, "compile": False, "sgd": "for-loop",
                                 "data": "float32"}


def test_uint8_storage_trains_the_same_weights_as_float_storage(cifar_like, monkeypatch):
    """The device copy in uint8 (and its augmentation on uint8 pixels), as on a GPU, changes no bit."""
    b, info_f = _train(cifar_like, regime="pgd_at")
    monkeypatch.setattr(fastpath, "compact_on", lambda device: True)
    a, info = _train(cifar_like, regime="pgd_at")
    assert (info["execution"]["data"], info_f["execution"]["data"]) == ("uint8", "float32")
    assert info["final_loss"] == info_f["final_loss"]
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("regime, forwards", [("standard", 1), ("pgd_at", 2 + 1), ("trades", 1 + 2 + 2)])
def test_bf16_covers_the_training_step_and_its_attack_steps_and_evaluation_stays_fp32(digits, regime, forwards):
    """Every forward pass of a training step (the PGD-AT / TRADES attack steps included) runs
    in bf16; the evaluation afterwards (clean, PGD, AutoAttack) runs in fp32."""
    from corebench.compute.evaluate import evaluate
    from corebench.compute.train import train_model
    from corebench.core.spec import AttackConfig, AutoAttackConfig, EvaluationConfig, TrainingConfig

    from helpers import tiny_model

    model = tiny_model(digits.info, seed=0)
    seen = _conv_dtypes(model)
    info = train_model(model, digits, np.arange(64), regime=regime, training=TrainingConfig(epochs=1, batch_size=32,
                       precision="bf16"), attack=AttackConfig(steps=2).resolved(digits.info.eps), seed=1, device=CPU,
                       progress=False)
    assert info["execution"]["precision"] == "bf16"
    assert seen == [torch.bfloat16] * (2 * forwards)  # 2 steps (64 / 32)
    seen.clear()
    evaluate(model, digits, EvaluationConfig(n_examples=8, pgd_steps=1, autoattack=AutoAttackConfig(
        version="custom", attacks=("apgd-ce",))), CPU, progress=False)
    assert seen and set(seen) == {torch.float32}


def test_evaluation_runs_in_bf16_only_when_asked(digits):
    from corebench.compute.evaluate import evaluate
    from corebench.core.spec import AutoAttackConfig, EvaluationConfig

    from helpers import tiny_model

    model = tiny_model(digits.info, seed=0)
    seen = _conv_dtypes(model)
    evaluate(model, digits, EvaluationConfig(n_examples=8, pgd_steps=1, precision="bf16", autoattack=AutoAttackConfig(
        enabled=False)), CPU, progress=False)
    assert seen and set(seen) == {torch.bfloat16}


def test_channels_last_and_bf16_training_resumes_to_the_same_weights(digits, tmp_path, monkeypatch):
    from corebench.compute import train as train_module
    from corebench.compute.checkpoint import Checkpoint

    settings = {"precision": "bf16", "channels_last": True}
    reference, ref_info = _train(digits, regime="pgd_at", epochs=2, **settings)
    assert ref_info["execution"]["channels_last"]
    assert reference.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    ckpt = Checkpoint(tmp_path, "cell")

    class Killed(Exception):
        pass

    def die(name, detail=""):
        if detail == "epoch 1":
            raise Killed

    monkeypatch.setattr(train_module, "fault_point", die)
    with pytest.raises(Killed):
        _train(digits, regime="pgd_at", epochs=2, checkpoint=ckpt, **settings)
    monkeypatch.undo()
    resumed, info = _train(digits, regime="pgd_at", epochs=2, checkpoint=ckpt, **settings)
    assert info["resumed_from"] == 1 and info["final_loss"] == ref_info["final_loss"]
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_compiled_step_trains_the_eager_weights_and_checkpoints_plain_names(digits, tmp_path, monkeypatch):
    """torch.compile (here with its eager backend: the plumbing, not inductor) wraps the step
    only: the same weights as without it, and checkpoints keyed by the model's own names."""
    from corebench.compute.checkpoint import Checkpoint

    calls = []
    real = torch.compile

    def eager_compile(model, **kwargs):
        calls.append(kwargs)
        return real(model, backend="eager")

    plain, _ = _train(digits, regime="trades")
    monkeypatch.setattr(torch, "compile", eager_compile)
    ckpt = Checkpoint(tmp_path, "cell")
    compiled, info = _train(digits, regime="trades", compile=True, checkpoint=ckpt)
    assert calls and info["execution"]["compile"]
    assert not any(k.startswith("_orig_mod") for k in ckpt.load()["model"])
    for a, b in zip(plain.state_dict().values(), compiled.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_scoring_runs_with_the_fast_settings_and_keys_them_apart(digits):
    from corebench.compute.scoring import run_scoring, scoring_key
    from corebench.core.spec import ArchSpec, DatasetSpec, ScoringConfig

    arch = ArchSpec("resnet10t", {"channels": [4, 8, 16, 32], "stem_width": 4})
    small = type(digits)(digits.info, digits.x_train[:64], digits.y_train[:64], digits.x_test, digits.y_test)
    fast = ScoringConfig(epochs=1, batch_size=32, precision="bf16", channels_last=True)
    out = run_scoring(small, arch, fast, 0, {"input_grad_norm", "el2n", "margin_probs", "el2n_eval"}, device=CPU,
                      progress=False)
    for name, arr in out.items():
        assert np.isfinite(np.asarray(arr, dtype=np.float64)).all(), name
    assert out["input_grad_norm"].dtype == np.float32 and (out["input_grad_norm"] > 0).all()
    ds = DatasetSpec("digits")
    plain = ScoringConfig(epochs=1, batch_size=32)
    assert scoring_key(ds, small, arch, plain, 0) != scoring_key(ds, small, arch, fast, 0)


def test_auto_scoring_settings_key_a_gpu_run_apart_from_a_cpu_run(digits, monkeypatch):
    from corebench.compute.scoring import scoring_key
    from corebench.core.spec import ArchSpec, DatasetSpec, ScoringConfig

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    args = (DatasetSpec("digits"), digits, ArchSpec("resnet10t"), ScoringConfig(), 0, 1)
    assert scoring_key(*args, CPU) != scoring_key(*args, torch.device("cuda"))
    assert scoring_key(*args, torch.device("cuda", 0)) == scoring_key(*args, torch.device("cuda", 1))


# --------------------------------------------------------------------------- local workers, one per GPU


def test_one_local_worker_per_gpu_by_default_and_each_takes_its_own(monkeypatch):
    from corebench.drivers.runner import default_workers, worker_devices

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    cuda = torch.device("cuda")
    assert default_workers(cuda) == 4 and default_workers(CPU) == 1 and default_workers(torch.device("cuda", 1)) == 1
    assert worker_devices(cuda, 4) == [torch.device("cuda", i) for i in range(4)]
    assert worker_devices(cuda, 6) == [torch.device("cuda", i % 4) for i in range(6)]
    assert worker_devices(torch.device("cuda", 2), 3) == [torch.device("cuda", 2)] * 3
    assert worker_devices(CPU, 2) == [CPU, CPU]


def test_a_grid_laid_out_channels_last_on_the_cpu_verifies_exactly_under_its_own_ids(tmp_path):
    """The CIFAR-10 board's CPU layout (channels_last in training, scoring and the attacks):
    its records say so, `verify` re-derives them exactly on this CPU, and the layout enters the
    cell ids, so they never pass for the default layout's cells."""
    import json

    from corebench.cli import main

    from helpers import FAST_GRID, write_fast_grid

    ids = {}
    for layout, folder in ((None, tmp_path / "default"), (True, tmp_path / "cl")):
        folder.mkdir()
        changes = {} if layout is None else {
            section: {**FAST_GRID[section], "channels_last": True} for section in ("scoring", "training", "evaluation")}
        grid = write_fast_grid(folder, full_data_reference=False, **changes)
        assert main(["run", str(grid), "--results", str(folder / "results"), "--cache", str(folder / "cache"),
                     "--no-progress"]) == 0  # fmt: skip
        records = {p.parent.parent.name: json.loads(p.read_text()) for p in (folder / "results").rglob("seed0.json")}
        ids[layout] = {method: rec["cell_id"] for method, rec in records.items()}
        if layout:
            assert all(rec["execution"]["channels_last"] for rec in records.values())
            assert all(rec["config"]["evaluation"]["channels_last"] is True for rec in records.values())
            assert main(["verify", str(folder / "results"), "--sample", "2", "--no-progress"]) == 0
    assert set(ids[None]) == set(ids[True]) == {"easycore", "random"}
    assert not set(ids[None].values()) & set(ids[True].values())
