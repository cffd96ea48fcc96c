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

from corebench.compute.data import DatasetInfo
from corebench.core.checked import suggest
from corebench.core.errors import ConfigError
from corebench.core.spec import ArchSpec

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
        raise ConfigError(f"architectures: {arch.name!r} is not a timm architecture; allowed: {suggest(arch.name, list(_all_timm()))}")
    c, h, w = info.input_shape
    kwargs = dict(arch.kwargs)
    for key in ("channels",):
        if key in kwargs and isinstance(kwargs[key], list):
            kwargs[key] = tuple(kwargs[key])
    small = arch.small_input_stem if arch.small_input_stem is not None else max(h, w) <= SMALL_INPUT_PX
    # Transformers fix their token grid at build time: size it for the dataset at every size.
    auto_img_size = "img_size" not in kwargs and _takes_img_size(arch.name)
    if auto_img_size:
        kwargs["img_size"] = h if h == w else (h, w)
    where = f"architectures.{arch.label}.kwargs"
    try:
        try:
            net = timm.create_model(arch.name, pretrained=False, num_classes=info.num_classes, in_chans=c, **kwargs)
        except TypeError as exc:
            if not (auto_img_size and "img_size" in str(exc)):
                raise
            del kwargs["img_size"]  # the name looked like a transformer, the class takes no img_size
            net = timm.create_model(arch.name, pretrained=False, num_classes=info.num_classes, in_chans=c, **kwargs)
    except Exception as exc:  # timm raises many types for kwargs it cannot use
        raise ConfigError(f"{where}: {dict(arch.kwargs)!r} is not accepted by timm "
                          f"({type(exc).__name__}: {_first_line(exc)}); allowed: keyword arguments of "
                          f"timm's {arch.name} constructor") from None
    if small:
        _apply_small_input_stem(net, arch.name)
    model = NormalizedModel(net, info.mean, info.std)
    _check_forward(model, info, where, arch)
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else ""


def _check_forward(model: NormalizedModel, info: DatasetInfo, where: str, arch: ArchSpec) -> None:
    """One eval-mode forward of two blank images, so a model that cannot take the dataset's
    input size (or kwargs that only break at run time) fails here, before any training."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *info.input_shape))
    except Exception as exc:
        raise ConfigError(
            f"{where}: {arch.name} with {dict(arch.kwargs)!r} cannot run on {info.name} inputs of shape "
            f"{info.input_shape} ({type(exc).__name__}: {_first_line(exc)}); allowed: kwargs that fit the input size"
        ) from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (2, info.num_classes):
        raise ConfigError(f"{where}: {arch.name} gives outputs of shape {tuple(out.shape)}, "
                          f"expected [B, {info.num_classes}]; allowed: kwargs that keep num_classes")


def _takes_img_size(name: str) -> bool:
    return any(key in name for key in ("vit", "deit", "swin", "mixer", "beit", "eva"))


def _apply_small_input_stem(net: nn.Module, name: str) -> None:
    """3×3 stride-1 first conv and no max-pool (ResNet-family stems); a no-op elsewhere."""
    conv = getattr(net, "conv1", None)
    if isinstance(conv, nn.Conv2d) and hasattr(net, "maxpool"):
        net.conv1 = _small_conv(conv)
        net.maxpool = nn.Identity()
        return
    if isinstance(conv, nn.Sequential) and hasattr(net, "maxpool"):  # deep stems (resnet*d, *t)
        conv[0] = _small_conv(conv[0])
        net.maxpool = nn.Identity()
        return
    log.info("architecture %s: no small-input stem known; using timm's default stem", name)


def _small_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A 3×3 stride-1 replacement, initialised as timm's ResNet initialises its convs."""
    small = nn.Conv2d(conv.in_channels, conv.out_channels, 3, 1, 1, bias=conv.bias is not None)
    nn.init.kaiming_normal_(small.weight, mode="fan_out", nonlinearity="relu")
    if small.bias is not None:
        nn.init.zeros_(small.bias)
    return small


def default_scoring_arch(info: DatasetInfo) -> ArchSpec:
    """A scoring model sized for the dataset, for `corebench select` without a grid.

    Inputs of 16 px or less (8×8 digits): the quickstart's narrow ResNet-10 (timm `resnet10t`,
    widths 8-64), which scores digits in seconds on a CPU. Larger inputs: ResNet-18, the
    selection model of DeepCore's k-center (`specific_model="ResNet18"`) and a common CIFAR proxy.
    """
    _, h, w = info.input_shape
    if max(h, w) <= 16:
        return ArchSpec("resnet10t", {"channels": [8, 16, 32, 64], "stem_width": 8}, id="resnet10t_w8")
    return ArchSpec("resnet18")
