"""The fast path's logic, on CPU: exact uint8 storage, on-device batches and augmentation equal to
the float path, seeded determinism, the resolution of `auto`, autocast only where asked,
channels_last, torch.compile plumbing and the SGD implementations."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from corebench import fastpath
from corebench.data import DatasetInfo, augment_batch
from corebench.errors import ConfigError
from corebench.fastpath import (
    LEVELS,
    DeviceData,
    Execution,
    as_uint8,
    autocast,
    prepare_model,
    resolve,
)
from corebench.optim import make_optimizer

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
    assert DeviceData(images(), torch.zeros(64, dtype=torch.long), CPU, info=CIFAR, augment=False).storage == "uint8"
    d = DeviceData(digits.x_train, digits.y_train, CPU, info=digits.info, augment=False)
    assert d.storage == "float32" and d.x.dtype == torch.float32


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("kind", ["uint8", "float32"])
def test_a_batch_is_the_float_path_batch_bit_for_bit(augment, kind, digits):
    """The same generator draws give the same crops and flips: the device batch equals
    `augment_batch(x[index])` of the float path, for uint8 and float storage."""
    if kind == "uint8":
        x, y, info = images(128), torch.arange(128) % 10, CIFAR
    else:
        x, y, info = digits.x_train[:128], digits.y_train[:128], digits.info
    data = DeviceData(x, y, CPU, info=info, augment=augment)
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
    data = DeviceData(x, torch.zeros(256, dtype=torch.long), CPU, info=CIFAR, augment=True)
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
    data = DeviceData(images(64), torch.zeros(64, dtype=torch.long), CPU, info=CIFAR, augment=True)
    index = torch.arange(64)
    a, _ = data.batch(index, torch.Generator().manual_seed(1))
    b, _ = data.batch(index, torch.Generator().manual_seed(1))
    c, _ = data.batch(index, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_channels_last_batches_hold_the_same_values():
    x = images(16)
    data = DeviceData(x, torch.zeros(16, dtype=torch.long), CPU, info=CIFAR, augment=False, channels_last=True)
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
