"""create_model: timm architectures sized for the dataset, normalising inside, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from corebench.compute.data import DatasetInfo
from corebench.compute.models import NormalizedModel, create_model
from corebench.core.errors import ConfigError
from corebench.core.spec import ArchSpec

NARROW = {"channels": [8, 16, 32, 64]}
DIGITS = DatasetInfo("digits", 10, (1, 8, 8), (0.3047,), (0.3835,), 32 / 255, augment=("crop",), crop_padding=1)
CIFAR = DatasetInfo("c32", 10, (3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), 8 / 255)
STL = DatasetInfo("c96", 7, (3, 96, 96), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 8 / 255)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def test_resnet18_on_digits_gets_the_small_input_stem():
    model = create_model(ArchSpec("resnet18", NARROW), DIGITS)
    assert isinstance(model, NormalizedModel) and model.training  # left in train mode, ready for the loop
    net = model.net
    assert net.conv1.in_channels == 1 and net.conv1.out_channels == 64  # timm stem_width
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.padding == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)
    assert [net.layer1[0].conv1.out_channels, net.layer4[0].conv1.out_channels] == [8, 64]
    x = torch.rand(5, 1, 8, 8)
    assert model(x).shape == (5, 10)


@pytest.mark.parametrize(
    ("info", "small", "expect_small"),
    [(CIFAR, None, True), (STL, None, False), (STL, True, True), (CIFAR, False, False)],
)
def test_small_input_stem_default_and_override(info, small, expect_small):
    net = create_model(ArchSpec("resnet18", NARROW, small_input_stem=small), info).net
    if expect_small:
        assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
        assert isinstance(net.maxpool, nn.Identity)
    else:
        assert net.conv1.kernel_size == (7, 7) and net.conv1.stride == (2, 2)
        assert isinstance(net.maxpool, nn.MaxPool2d)
    assert net.conv1.in_channels == 3 and net.fc.out_features == info.num_classes


def test_normalisation_lives_inside_the_model():
    model = create_model(ArchSpec("resnet18", NARROW), CIFAR).eval()
    assert model.mean.flatten().tolist() == pytest.approx(CIFAR.mean)
    assert model.std.flatten().tolist() == pytest.approx(CIFAR.std)
    x = torch.rand(4, 3, 32, 32)
    mean, std = torch.tensor(CIFAR.mean).view(1, 3, 1, 1), torch.tensor(CIFAR.std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net((x - mean) / std))
        assert not torch.allclose(model(x), model.net(x))
    # mean/std are buffers: they follow .to() and are saved with the weights
    assert {"mean", "std"} <= set(model.state_dict())


def test_features_are_the_penultimate_layer():
    model = create_model(ArchSpec("resnet18", NARROW), DIGITS).eval()
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        feats = model.features(x)
        assert feats.shape == (3, 64)
        assert model.classifier() is model.net.fc
        torch.testing.assert_close(model.classifier()(feats), model(x))


def test_unknown_architecture_names_close_matches():
    with pytest.raises(ConfigError) as exc:
        create_model(ArchSpec("resnet81"), CIFAR)
    msg = str(exc.value)
    assert "\n" not in msg and "'resnet81'" in msg and "resnet18" in msg and "timm" in msg


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"chanels": [8, 16, 32, 64]}, ("chanels", "not accepted by timm")),
        ({"layers": "abc"}, ("layers",)),
        ({"channels": [8, 16]}, ("channels", "cannot run")),  # only breaks at forward time
    ],
)
def test_bad_timm_kwargs_are_config_errors(kwargs, words):
    with pytest.raises(ConfigError) as exc:
        create_model(ArchSpec("resnet18", kwargs, id="r18"), DIGITS)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("architectures.r18.kwargs:") and all(w in msg for w in words), msg


def test_tiny_vit_builds_for_the_dataset_size():
    model = create_model(ArchSpec("vit_tiny_patch16_224", {"patch_size": 4, "depth": 2}), CIFAR)
    assert model.net.patch_embed.img_size == (32, 32) and model.net.patch_embed.num_patches == 64
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 10) and model.features(x).shape == (2, 192)
    model(x).sum().backward()  # trainable end to end
    assert model.net.patch_embed.proj.weight.grad is not None


def test_vit_img_size_follows_larger_inputs_too():
    model = create_model(ArchSpec("vit_tiny_patch16_224", {"depth": 1}), STL)
    assert model.net.patch_embed.img_size == (96, 96)
    assert model(torch.rand(2, 3, 96, 96)).shape == (2, 7)


def test_convnext_runs_on_32px():
    model = create_model(ArchSpec("convnext_atto"), CIFAR)
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 10) and model.features(x).shape == (2, 320)


def test_name_that_looks_like_a_transformer_but_takes_no_img_size():
    # TinyVit is a conv/attention hybrid whose constructor has no img_size: built without it
    model = create_model(ArchSpec("tiny_vit_5m_224"), CIFAR)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="img_size"):  # but an explicit img_size is the user's: reported
        create_model(ArchSpec("tiny_vit_5m_224", {"img_size": 32}), CIFAR)


def test_small_input_stem_is_initialised_like_timm_resnets():
    """kaiming_normal(fan_out, relu), as timm's ResNet.init_weights does for every conv."""
    import math

    from corebench.compute.data import DatasetInfo
    from corebench.compute.models import create_model
    from corebench.core.spec import ArchSpec

    info = DatasetInfo("cifar_like", 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3, 8 / 255)
    torch.manual_seed(0)
    conv1 = create_model(ArchSpec("resnet18"), info).net.conv1
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1)
    expected = math.sqrt(2.0 / (conv1.out_channels * 9))
    assert abs(float(conv1.weight.detach().std()) - expected) < 0.1 * expected
