"""Models: any timm architecture by name, sized for the dataset, normalising inside.

`timm.create_model(name, pretrained=False, num_classes=..., in_chans=..., **kwargs)`. For
inputs of 64 px or less a small-input stem is applied by default (3×3 stride-1 first conv,
no max-pool), the usual CIFAR adaptation of ImageNet ResNets. Normalisation is the model's
first layer so attacks and ε live in [0, 1] pixel space, as RobustBench requires.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import torch
from torch import nn

from bench.config import ArchSpec
from bench.data import DatasetInfo
from bench.errors import ConfigError

log = logging.getLogger(__name__)
SMALL_INPUT_PX = 64


@lru_cache(maxsize=1)
def _all_timm() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


def list_architectures() -> list[str]:
    return list(_all_timm())


class NormalizedModel(nn.Module):
    """(x - mean) / std, then the timm network. Inputs are images in [0, 1]."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (timm's pre-logits)."""
        net = self.net
        return net.forward_head(net.forward_features((x - self.mean) / self.std), pre_logits=True)

    def classifier(self) -> nn.Module:
        """The last (classification) layer, for last-layer gradient signals."""
        return self.net.get_classifier()


def create_model(arch: ArchSpec, info: DatasetInfo) -> NormalizedModel:
    """Build `arch` for the dataset; timm kwargs come from the grid file unchanged."""
    import timm

    if arch.name not in _all_timm():
        from bench.config import suggest

        raise ConfigError(f"architectures: {arch.name!r} is not a timm architecture; allowed: {suggest(arch.name, list(_all_timm()))}")
    c, h, w = info.input_shape
    kwargs = dict(arch.kwargs)
    for key in ("channels",):
        if key in kwargs and isinstance(kwargs[key], list):
            kwargs[key] = tuple(kwargs[key])
    small = arch.small_input_stem if arch.small_input_stem is not None else max(h, w) <= SMALL_INPUT_PX
    if small and "img_size" not in kwargs and _takes_img_size(arch.name):
        kwargs["img_size"] = h
    try:
        net = timm.create_model(arch.name, pretrained=False, num_classes=info.num_classes, in_chans=c, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"architectures.{arch.label}.kwargs: {dict(arch.kwargs)!r} is not accepted by timm ({exc})") from None
    if small:
        _apply_small_input_stem(net, arch.name)
    return NormalizedModel(net, info.mean, info.std)


def _takes_img_size(name: str) -> bool:
    return any(key in name for key in ("vit", "deit", "swin", "mixer", "beit", "eva"))


def _apply_small_input_stem(net: nn.Module, name: str) -> None:
    """3×3 stride-1 first conv and no max-pool (ResNet-family stems); a no-op elsewhere."""
    conv = getattr(net, "conv1", None)
    if isinstance(conv, nn.Conv2d) and hasattr(net, "maxpool"):
        net.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, 1, 1, bias=conv.bias is not None)
        net.maxpool = nn.Identity()
        return
    if isinstance(conv, nn.Sequential) and hasattr(net, "maxpool"):  # deep stems (resnet*d, *t)
        first = conv[0]
        conv[0] = nn.Conv2d(first.in_channels, first.out_channels, 3, 1, 1, bias=first.bias is not None)
        net.maxpool = nn.Identity()
        return
    log.info("architecture %s: no small-input stem known; using timm's default stem", name)
