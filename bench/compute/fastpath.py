"""The fast path: how a training step runs on the device, decided in one place.

What a GPU needs to stay busy, as airbench (KellerJordan/cifar10-airbench) does it:
- the train split lives on the device (`DeviceData`), as uint8 when that is lossless (4x less
  memory and traffic; on a GPU, not on the CPU, where the float images are already in memory),
  and each batch is gathered and converted there: no DataLoader, no worker processes, no
  host-to-device copy per step;
- augmentation (padded random crop, horizontal flip) runs on the device, on the whole batch at
  once, on the uint8 pixels before conversion (`corebench.compute.data.augment_batch`, the one
  implementation: its random draws come from the run's CPU generator in the same order on
  every device, so a seed means the same crops and flips everywhere);
- channels_last memory format for the model and the batches;
- the same layout for the evaluation's attacks (`evaluation.channels_last`, None: on CUDA); on a
  2-core CPU it also pays, since oneDNN's channels_last convolutions of narrow layers are faster
  (docs/PROTOCOL.md, "Remade within 4 hours": measured figures);
- bf16 autocast for the training step, the attack steps of PGD-AT and TRADES included
  (`autocast`); evaluation attacks stay fp32 unless `evaluation.precision` says otherwise, so a
  reported robust accuracy is never weakened by low precision;
- fused SGD (one kernel for every parameter) on CUDA;
- `torch.compile` as an option (`training.compile`, off by default).

The settings (`training.precision`, `training.channels_last`, `training.compile` and the same
under `scoring`) are resolved once per run against the device (`resolve`): `auto` means bf16,
channels_last and fused SGD on CUDA, and fp32, the default layout and the for-loop SGD on CPU.
The uint8 storage a GPU uses is exact (a float image is stored as uint8 only when `LEVELS[u8]`
gives back its every bit, and augmenting uint8 pixels then converting equals converting then
augmenting), which the tests check on CPU by asking for it there (`compact=True`); on CPU with
the auto settings a run computes what it computed before this module existed, bit for bit.
What a run used is returned as an `Execution` and written into its record.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from corebench.compute.data import DatasetInfo, augment_batch
from corebench.core.errors import ConfigError

# Pixel level k of a uint8 image as the float path holds it: float32(k) / 255, computed on the
# CPU once. Converting by table look-up gives the same bits on every device.
LEVELS = torch.arange(256, dtype=torch.float32).div_(255.0)
CHUNK = 4096  # images per step of the exactness check (no full-size temporary)


@dataclass(frozen=True)
class Execution:
    """How a run executed, resolved: recorded beside the results it produced."""

    precision: str  # "fp32" or "bf16" (autocast of the training step)
    channels_last: bool
    compile: bool
    sgd: str  # "for-loop", "foreach" or "fused"
    data: str = "float32"  # storage of the train split on the device: "uint8" or "float32"

    def record(self) -> dict[str, Any]:
        return asdict(self)


def resolve(precision: str, channels_last: bool | None, compile: bool, device: torch.device) -> Execution:
    """The settings of a grid section (`auto` / None filled in) for `device`.

    auto precision: bf16 on a CUDA device that supports it, else fp32; channels_last None: on
    CUDA; SGD: fused on CUDA, torch's for-loop on CPU (the CPU default, unchanged).
    """
    cuda = device.type == "cuda"
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    elif precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision: bf16 is not supported by {torch.cuda.get_device_name(device)}; allowed: fp32, auto")
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision: {precision!r}; allowed: auto, fp32, bf16")
    return Execution(precision=precision, channels_last=cuda if channels_last is None else bool(channels_last),
                     compile=bool(compile), sgd="fused" if cuda else "for-loop")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` for "bf16", nothing for "fp32". Wrap the forward and the loss
    (attack steps included), not the backward or the optimiser step."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def as_uint8(x: torch.Tensor) -> torch.Tensor | None:
    """`x` (float32 in [0, 1]) as uint8 levels when `LEVELS[levels]` equals it bit for bit
    (images loaded from 8-bit files), else None (e.g. digits' 17 grey levels, user floats)."""
    if x.dtype != torch.float32 or x.numel() == 0:
        return None
    flat = x.reshape(x.shape[0], -1)
    out = torch.empty(flat.shape, dtype=torch.uint8, device=x.device)
    levels = LEVELS.to(x.device)
    for start in range(0, flat.shape[0], CHUNK):
        part = flat[start : start + CHUNK]
        if not bool(((part >= 0) & (part <= 1)).all()):
            return None
        q = part.mul(255.0).round_().to(torch.uint8)
        if not torch.equal(levels[q.long()], part):
            return None
        out[start : start + CHUNK] = q
    return out.view(x.shape)


def compact_on(device: torch.device) -> bool:
    """Whether a train split is stored as uint8 on `device`: on an accelerator (4x less memory
    and traffic), not on the CPU, where the float images the dataset holds already are the
    device copy and a uint8 one would only add memory."""
    return device.type != "cpu"


class DeviceData:
    """A train split (or a subset of it) held on the device, served as float32 batches.

    `batch(index, generator)` gathers the images at `index` (a long tensor on the device),
    augments them on the device when `augment` is on (drawing from `generator`, a CPU
    generator, as `augment_batch` does), converts them to float32 in [0, 1] and lays them out
    channels_last when asked. The values are those of `x[index]` augmented by the float path,
    bit for bit.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device, *, info: DatasetInfo,
                 augment: bool, channels_last: bool = False, compact: bool | None = None) -> None:
        x = x.to(device)  # checked and converted where it will live (fast on a GPU)
        u8 = as_uint8(x) if (compact_on(torch.device(device)) if compact is None else compact) else None
        self.storage = "uint8" if u8 is not None else "float32"
        self.x = u8 if u8 is not None else x
        self.y = y.to(device)
        self.info, self.augment, self.channels_last = info, augment, channels_last
        self.levels = LEVELS.to(device)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batch(self, index: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[index]
        if self.augment:
            x = augment_batch(x, self.info, generator)
        if x.dtype == torch.uint8:
            x = self.levels[x.long()]
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.y[index]


def prepare_model(model: nn.Module, execution: Execution, *, backend: str = "inductor") -> nn.Module:
    """Lay `model` out channels_last when asked (in place) and return what the training steps
    call: `torch.compile(model)` with `compile`, else the model itself. Weights, checkpoints and
    evaluation always use `model`, never the compiled wrapper."""
    if execution.channels_last:
        model.to(memory_format=torch.channels_last)
    if execution.compile:
        return torch.compile(model, backend=backend)
    return model


def lay_out_for_evaluation(model: nn.Module, channels_last: bool | None, device: torch.device) -> nn.Module:
    """Lay `model` out as the evaluation asks (`evaluation.channels_last`; None: channels_last on
    CUDA), in place, whatever layout its training left: a resumed model and a freshly trained one
    are attacked in the same layout. On a CPU with the default this changes nothing."""
    wanted = torch.device(device).type == "cuda" if channels_last is None else channels_last
    return model.to(memory_format=torch.channels_last if wanted else torch.contiguous_format)


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic kernels only, inside the block (cuDNN's deterministic algorithms, no
    benchmark search; torch raises, naming the op, where a kernel has no deterministic form).
    On CUDA, cuBLAS also needs CUBLAS_WORKSPACE_CONFIG=:4096:8 set before it starts."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1], before[2]
