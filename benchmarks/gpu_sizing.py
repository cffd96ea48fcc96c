"""Size a grid to one GPU run: seconds per seed, and how many seeds fit a budget.

The GPU board (configs/cifar10_gpu.yaml) gets one short run (issue 21: about 9 minutes of an
H200). Its seeds run one after the other under `corebench run --deadline`, so the question is
how long one seed takes: its scoring run, its cells' training and evaluation (the arithmetic of
`corebench plan`, `plan.estimate`), and k-center's greedy selection, which runs on the CPU.

Per-sample costs come from one of two sources:

- default, on any machine: ESTIMATES. FLOPs and activation bytes per sample are counted here on
  the CPU (torch.utils.flop_counter; every leaf module's output) and turned into seconds with
  the card's figures (bf16 matrix throughput, memory bandwidth: `CARD`) and the stated
  efficiencies and per-pass overhead below. None of those three is measured on a GPU: the
  sizing says "estimate" until `--measure` replaces it.
- `--measure`, on the GPU: `plan.probe_model`'s timed training step, attack step and forward
  pass on the device, and one k-center step timed on the machine's CPU.

    python benchmarks/gpu_sizing.py configs/cifar10_gpu.yaml --budget 390
    python benchmarks/gpu_sizing.py configs/cifar10_gpu.yaml --budget 390 --measure --json sizing.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from corebench.cells.grid import load_grid
from corebench.compute.data import Dataset, DatasetInfo
from corebench.compute.models import create_model
from corebench.core.spec import GridSpec
from corebench.drivers.plan import (
    Probe,
    _activation_bytes,
    estimate,
    greedy_step_s,
    observed_shares,
    probe_model,
)
from corebench.drivers.work import plan_work
from corebench.methods.base import budget_for

# The card (issue 21; /work/.library/device/KINDS.md, measured there on an H200: 788-798 TFLOP/s
# for an 8192³ bf16 matrix product, 4.3 TB/s device-to-device). Evaluation runs in fp32, whose
# convolutions use TF32 by default (torch.backends.cudnn.allow_tf32): the spec sheet's 495 dense
# TF32 TFLOP/s times the 0.8 that bf16 reached of its 989.
CARD = {"name": "NVIDIA H200", "bf16_flops": 790e12, "tf32_flops": 395e12, "bandwidth": 4.3e12}
# ASSUMED, not measured (replaced by --measure): the share of the matrix peak a small ResNet's
# convolutions reach, the share of the bandwidth its element-wise kernels reach, and the fixed
# cost of one forward-backward pass (about 100 kernel launches and the Python around them).
MATRIX_EFFICIENCY = 0.25
BANDWIDTH_EFFICIENCY = 0.5
PASS_OVERHEAD_S = 2e-3
# Each activation is written in the forward pass, read again in the backward pass and its
# gradient written: about 3 times its bytes in a training or attack step, once in a forward.
TRAFFIC = {"train": 3, "attack": 3, "forward": 1}
FIXED_S = 45  # per run, not per seed: loading and checking the data, the guard's probe, the boards


@dataclasses.dataclass
class Sizing:
    grid: str
    source: str  # "estimate (...)" or "measured on <card>"
    probe: dict
    seed_s: dict  # scoring, training, evaluation, selection, total: seconds of one seed
    budget_s: float
    seeds_fit: int
    seeds_in_grid: int


def shaped(info: DatasetInfo, n_train: int, n_test: int) -> Dataset:
    """A dataset with the real one's shape and no real content: one random image repeated
    (no memory), for probes and the budget arithmetic."""
    x = torch.rand((1, *info.input_shape), generator=torch.Generator().manual_seed(0))
    y_tr, y_te = torch.arange(n_train) % info.num_classes, torch.arange(n_test) % info.num_classes
    return Dataset(info, x.expand(n_train, *info.input_shape), y_tr, x.expand(n_test, *info.input_shape), y_te)


def counted(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """FLOPs per sample of a training step (weights' gradients), an attack step (input gradient
    only) and a forward pass, counted on the CPU."""
    out = {}
    with FlopCounterMode(display=False) as fc:
        model.train()
        F.cross_entropy(model(x), y).backward()
    out["train"] = fc.get_total_flops() / len(x)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with FlopCounterMode(display=False) as fc:
        xa = x.clone().requires_grad_(True)
        F.cross_entropy(model(xa), y).backward()  # weights frozen: the input's gradient only
    out["attack"] = fc.get_total_flops() / len(x)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x)
    out["forward"] = fc.get_total_flops() / len(x)
    for p in model.parameters():
        p.requires_grad_(True)
    return out


def estimated_probe(spec: GridSpec, data: Dataset, arch) -> Probe:
    """Per-sample seconds from FLOPs and bytes counted here and the card's figures (ESTIMATES)."""
    model = create_model(arch, data.info)
    x, y = data.x_train[:8].contiguous(), data.y_train[:8]
    flops = counted(model, x, y)
    act = _activation_bytes(model, x) / len(x)  # fp32 bytes; bf16 training moves half of them
    train_batch, eval_batch = spec.training.batch_size, min(spec.evaluation.batch_size, spec.evaluation.n_examples)

    def seconds(kind: str, peak: float, bytes_per_value: int, batch: int) -> float:
        compute = flops[kind] / (peak * MATRIX_EFFICIENCY)
        memory = act * bytes_per_value / 4 * TRAFFIC[kind] / (CARD["bandwidth"] * BANDWIDTH_EFFICIENCY)
        return max(compute, memory) + PASS_OVERHEAD_S / batch

    train = seconds("train", CARD["bf16_flops"], 2, train_batch)
    attack, forward = (seconds(k, CARD["tf32_flops"], 4, eval_batch) for k in ("attack", "forward"))
    params = sum(p.numel() for p in model.parameters())
    return Probe(data.info.name, arch.label, f"{CARD['name']} (estimate)", train, attack, forward,
                 (train_batch, eval_batch), params, {"flops_per_sample": flops, "activation_bytes": act})


def size(spec: GridSpec, budget_s: float, *, n_train: int, n_test: int, measure: bool) -> Sizing:
    first = spec.seeds[0]
    cells = [c for c in spec.cells() if c.seed == first]
    info = DatasetInfo("cifar10_jpeg", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 8 / 255)
    datasets = {c.dataset: shaped(dataclasses.replace(info, name=c.dataset.label), n_train, n_test) for c in cells}
    work = plan_work(spec, None, cells=cells, datasets=datasets)
    device = torch.device("cuda" if measure else "cpu")
    pairs = dict.fromkeys((c.dataset, c.arch) for c in cells) | dict.fromkeys((k[0], k[1]) for k in work.runs())
    if measure:
        probes = {(ds, arch): probe_model(spec, datasets[ds], ds, arch, device) for ds, arch in pairs}
        source = f"measured on {torch.cuda.get_device_name(device)}"
    else:
        probes = {(ds, arch): estimated_probe(spec, datasets[ds], arch) for ds, arch in pairs}
        source = (f"ESTIMATE from FLOPs counted on the CPU and {CARD['name']}'s figures (matrix efficiency "
                  f"{MATRIX_EFFICIENCY} and bandwidth efficiency {BANDWIDTH_EFFICIENCY} assumed, "
                  f"{PASS_OVERHEAD_S * 1e3:g} ms per pass assumed): not measured")
    est = estimate(spec, work, probes, device, observed_shares(spec, None))
    selection = 0.0
    kcenter = [c for c in cells if c.method.name == "kcenter"]
    if kcenter:  # one traversal per seed, extended to the largest budget (methods/kcenter.py)
        arch = kcenter[0].scoring_arch
        width = create_model(arch, info).net.num_features
        selection = budget_for(max(c.fraction for c in kcenter), n_train) * greedy_step_s(n_train, width)
    seed_s = {"scoring": est.scoring_s, "training": est.training_s, "evaluation": est.evaluation_s,
              "selection": selection}
    seed_s["total"] = sum(seed_s.values())
    fit = max(0, math.floor((budget_s - FIXED_S) / seed_s["total"]))
    probe = {f"{p.dataset} × {p.arch}": {"train_step_ms": 1e3 * p.train_step, "attack_step_ms": 1e3 * p.attack_step,
                                         "forward_ms": 1e3 * p.forward, "batch": p.batch, "params": p.params}
             for p in probes.values()}
    return Sizing(spec.name, source, probe, seed_s, budget_s, fit, len(spec.seeds))


def render(s: Sizing) -> str:
    lines = [f"sizing of grid {s.grid} ({s.source}):"]
    for label, p in s.probe.items():
        lines.append(f"  {label}: per sample {p['train_step_ms']:.4f} ms training step, {p['attack_step_ms']:.4f} ms "
                     f"attack step, {p['forward_ms']:.4f} ms forward (batches {p['batch'][0]}, {p['batch'][1]}; "
                     f"{p['params']:,} parameters)")
    t = s.seed_s
    lines.append(f"  one seed: scoring {t['scoring']:.0f} s + training {t['training']:.0f} s + evaluation "
                 f"{t['evaluation']:.0f} s + k-center selection (CPU) {t['selection']:.0f} s = {t['total']:.0f} s")
    lines.append(f"  budget {s.budget_s:.0f} s - {FIXED_S} s fixed: {s.seeds_fit} of the grid's {s.seeds_in_grid} "
                 "seeds fit (cells run seed by seed under --deadline; the rest are deferred)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", type=Path)
    parser.add_argument("--budget", type=float, default=390.0, help="seconds of the run for the grid (default 390)")
    parser.add_argument("--n-train", type=int, default=50_000, help="train images (default: CIFAR-10's 50,000)")
    parser.add_argument("--n-test", type=int, default=2_000, help="test images carried (default 2,000)")
    parser.add_argument("--measure", action="store_true", help="time the probes on this machine's GPU")
    parser.add_argument("--json", type=Path, help="also write the sizing here")
    args = parser.parse_args(argv)
    if args.measure and not torch.cuda.is_available():
        print("gpu_sizing: --measure needs a CUDA device (none here); without it the figures are estimates",
              file=sys.stderr)
        return 2
    sizing = size(load_grid(args.grid), args.budget, n_train=args.n_train, n_test=args.n_test, measure=args.measure)
    print(render(sizing))
    if args.json:
        args.json.write_text(json.dumps(dataclasses.asdict(sizing), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
