"""The GPU path against the loop users write: epoch times and AutoAttack throughput on one GPU.

On CIFAR-10-shaped synthetic data (50,000 random 3 × 32 × 32 uint8 images, 10 random labels)
with timm's ResNet-18 (small-input stem), batch 128 as the paper grids train, it measures

- the epoch time of standard training, PGD-AT and TRADES (ε 8/255, 10 steps of 2/255, β 6);
- AutoAttack (version standard) throughput in images per second, on 500 images labelled with
  the model's own predictions (so every image enters the attacks; the model is untrained, so
  the figure is the attacks' cost on a model they break quickly, not on a robust one),

each against a reference in the same run: a torchvision DataLoader over the images (PIL, the
usual RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor; 8 worker processes, pinned
memory), fp32, the default memory format, torch's default SGD, a loop that reads the loss
with `.item()` every step as the PyTorch tutorials do; for AutoAttack, `pyautoattack` called
directly on the fp32 model. The fast path is `corebench.compute.train.train_model` with the settings
`auto` resolves to on CUDA (bf16 autocast incl. the attack steps, channels_last, fused SGD, the
uint8 train split and its augmentation on the device); AutoAttack goes through the adapter in
fp32 (evaluation stays fp32) on the channels_last model. Target: at least 2× faster training.

Standard training is timed over a whole epoch (391 steps); PGD-AT and TRADES over the first
`--steps` batches of an epoch (default 64; one such step costs 11 forward-backward passes),
and their epoch time is that time × 391 / steps. A warm-up of a few steps precedes every timed
run. The whole script is meant to finish in under 8 minutes; sections that would start after
7 minutes are skipped and say so. `--compile` also times training with `torch.compile`.

    python benchmarks/gpu.py            # on a machine with CUDA; prints the card's name
    python benchmarks/gpu.py --smoke    # a tiny run of every code path on CPU (the test suite)

Without CUDA (and without --smoke) it refuses in one line and exits with status 2. Measured
figures, with the card and date: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from corebench.compute.attacks import pgd_attack, trades_loss
from corebench.compute.data import Dataset, DatasetInfo
from corebench.compute.models import create_model
from corebench.compute.train import train_model
from corebench.core.spec import ArchSpec, AttackConfig, TrainingConfig

BUDGET_S = 7 * 60  # start no section after this: the whole run stays under 8 minutes
TARGET = 2.0
INFO = DatasetInfo("synthetic_cifar10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 8 / 255)


@dataclasses.dataclass(frozen=True)
class Sizes:
    n: int
    batch: int
    steps: int  # timed steps of PGD-AT and TRADES
    warmup: int  # steps
    aa_n: int
    workers: int
    arch: ArchSpec


FULL = Sizes(50_000, 128, 64, 8, 500, min(8, os.cpu_count() or 1), ArchSpec("resnet18"))
SMOKE = Sizes(64, 32, 1, 1, 4, 0, ArchSpec("resnet10t", {"channels": [4, 8, 16, 32], "stem_width": 4}))


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 HWC images (as torchvision's CIFAR10 holds them) and labels."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.int64)


def as_dataset(x_hwc: np.ndarray, y: np.ndarray) -> Dataset:
    x = torch.from_numpy(np.ascontiguousarray(x_hwc.transpose(0, 3, 1, 2))).float().div_(255.0)
    t = torch.from_numpy(y)
    return Dataset(INFO, x, t, x[:1000], t[:1000])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ImagesHWC(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 is: uint8 HWC arrays, a PIL image per item, transforms."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def reference_loader(x: np.ndarray, y: np.ndarray, sizes: Sizes, seed: int = 0) -> torch.utils.data.DataLoader:
    import torchvision.transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    return torch.utils.data.DataLoader(
        ImagesHWC(x, y, transform), batch_size=sizes.batch, shuffle=True, num_workers=sizes.workers,
        pin_memory=torch.cuda.is_available(), persistent_workers=sizes.workers > 0,
        generator=torch.Generator().manual_seed(seed))


def reference_epoch(model: torch.nn.Module, loader, regime: str, attack: AttackConfig, device: torch.device,
                    max_steps: int) -> int:
    """The reference loop: fp32, default layout and SGD, `.item()` every step."""
    cfg = TrainingConfig()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                          weight_decay=cfg.weight_decay)
    model.train()
    running, steps = 0.0, 0
    for x, y in loader:
        if steps == max_steps:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if regime == "standard":
            loss = F.cross_entropy(model(x), y)
        elif regime == "pgd_at":
            x_adv = pgd_attack(model, x, y, eps=attack.eps, step_size=attack.step_size, steps=attack.steps)
            loss = F.cross_entropy(model(x_adv), y)
        else:
            loss, _ = trades_loss(model, x, y, beta=attack.trades_beta, eps=attack.eps, step_size=attack.step_size,
                                  steps=attack.steps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        running += loss.item()
        steps += 1
    return steps


def fresh_model(sizes: Sizes, device: torch.device, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(sizes.arch, INFO).to(device)


def time_training(regime: str, data: Dataset, x_hwc: np.ndarray, y: np.ndarray, sizes: Sizes,
                  device: torch.device, fast: TrainingConfig, steps: int) -> dict:
    """Seconds for `steps` steps of `regime`: the reference loop, then the fast path."""
    attack = AttackConfig().resolved(INFO.eps)
    n = min(len(y), steps * sizes.batch)
    loader = reference_loader(x_hwc[:n], y[:n], sizes)
    reference_epoch(fresh_model(sizes, device), loader, regime, attack, device, sizes.warmup)  # warm-up (workers too)
    model = fresh_model(sizes, device)
    sync(device)
    start = time.perf_counter()
    done = reference_epoch(model, loader, regime, attack, device, steps)
    sync(device)
    reference_s = time.perf_counter() - start

    warm = np.arange(sizes.warmup * sizes.batch)
    train_model(fresh_model(sizes, device), data, warm, regime=regime, training=dataclasses.replace(fast, epochs=1),
                attack=attack, seed=0, device=device, progress=False)
    model = fresh_model(sizes, device)
    sync(device)
    start = time.perf_counter()
    info = train_model(model, data, np.arange(n), regime=regime, training=dataclasses.replace(fast, epochs=1),
                       attack=attack, seed=0, device=device, progress=False)
    sync(device)
    fast_s = time.perf_counter() - start
    per_epoch = math.ceil(len(y) / sizes.batch)
    return {"regime": regime, "steps": done, "reference_s": reference_s, "fast_s": fast_s,
            "reference_epoch_s": reference_s * per_epoch / done, "fast_epoch_s": fast_s * per_epoch / info["steps"],
            "speedup": reference_s / fast_s, "execution": info.get("execution")}


def time_autoattack(data: Dataset, sizes: Sizes, device: torch.device, smoke: bool) -> dict:
    """Images per second of AutoAttack: pyautoattack directly (reference) and through the adapter
    on the channels_last model (the fast path's layout; fp32)."""
    from pyautoattack import AutoAttack

    from corebench.compute.autoattack_adapter import run_autoattack
    from corebench.core.spec import AutoAttackConfig

    attacks = ("apgd-ce",) if smoke else None
    cfg = AutoAttackConfig(version="custom", attacks=attacks) if smoke else AutoAttackConfig()
    model = fresh_model(sizes, device).eval()
    x = data.x_test[: sizes.aa_n].to(device)
    with torch.no_grad():
        y = model(x).argmax(1)  # every image starts correctly classified: all of them are attacked
    sync(device)
    start = time.perf_counter()
    adversary = AutoAttack(model, eps=INFO.eps, norm="Linf", seed=0, device=device,
                           **({"version": "custom", "attacks": list(attacks)} if smoke else {"version": "standard"}))
    _, y_ref = adversary.run_standard_evaluation(x, y, batch_size=sizes.aa_n)
    sync(device)
    reference_s = time.perf_counter() - start

    model = model.to(memory_format=torch.channels_last)
    sync(device)
    start = time.perf_counter()
    acc, _, _ = run_autoattack(model, x, y, eps=INFO.eps, autoattack=cfg, batch_size=sizes.aa_n, device=device)
    sync(device)
    fast_s = time.perf_counter() - start
    return {"images": sizes.aa_n, "reference_images_per_s": sizes.aa_n / reference_s,
            "fast_images_per_s": sizes.aa_n / fast_s, "speedup": reference_s / fast_s,
            "reference_robust": 100.0 * (y_ref == y).float().mean().item(), "fast_robust": acc}


def run(sizes: Sizes, device: torch.device, *, compile: bool, smoke: bool, budget: float = BUDGET_S) -> dict:
    t0 = time.perf_counter()
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke run: no figure)"
    print(f"card: {card}; torch {torch.__version__}; {sizes.n:,} synthetic 3x32x32 images, {sizes.arch.name}, "
          f"batch {sizes.batch}")
    x_hwc, y = synthetic(sizes.n)
    data = as_dataset(x_hwc, y)
    # On the GPU the fast path is what `auto` resolves to; the smoke run asks for it on CPU.
    fast = TrainingConfig(batch_size=sizes.batch, precision="bf16" if smoke else "auto",
                          channels_last=True if smoke else None)
    per_epoch = math.ceil(sizes.n / sizes.batch)
    plan = [("standard", fast, per_epoch), ("pgd_at", fast, sizes.steps), ("trades", fast, sizes.steps)]
    if compile:
        plan.append(("standard", dataclasses.replace(fast, compile=True), per_epoch))
    out: dict = {"card": card, "torch": torch.__version__, "sizes": dataclasses.asdict(sizes), "training": [],
                 "skipped": []}
    for regime, cfg, steps in plan:
        label = regime + (" + torch.compile" if cfg.compile else "")
        if time.perf_counter() - t0 > budget:
            out["skipped"].append(label)
            print(f"  {label}: skipped (the run is past {budget:.0f} s)")
            continue
        r = time_training(regime, data, x_hwc, y, sizes, device, cfg, steps)
        r["label"] = label
        out["training"].append(r)
        print(f"  {label:<26} epoch {r['reference_epoch_s']:7.2f} s reference, {r['fast_epoch_s']:7.2f} s fast path: "
              f"{r['speedup']:.2f}x (target >= {TARGET:g}x; timed {r['steps']} steps)  {r['execution']}")
    if time.perf_counter() - t0 > budget:
        out["skipped"].append("autoattack")
        print("  autoattack: skipped (the run is past the time budget)")
    else:
        a = time_autoattack(data, sizes, device, smoke)
        out["autoattack"] = a
        print(f"  AutoAttack {'apgd-ce' if smoke else 'standard'} on {a['images']} images: "
              f"{a['reference_images_per_s']:.1f} img/s pyautoattack directly, {a['fast_images_per_s']:.1f} img/s "
              f"adapter + channels_last: {a['speedup']:.2f}x (robust {a['reference_robust']:.1f}% / {a['fast_robust']:.1f}%)")
    out["seconds"] = time.perf_counter() - t0
    out["ok"] = all(r["speedup"] >= TARGET for r in out["training"]) and not out["skipped"]
    print(f"total {out['seconds']:.0f} s; training target {'met' if out['ok'] else 'MISSED'}"
          + (" (smoke run: sizes too small to mean anything)" if smoke else ""))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, runs on CPU: checks every code path")
    parser.add_argument("--compile", action="store_true", help="also time standard training with torch.compile")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--budget", type=float, default=BUDGET_S,
                        help=f"start no section after this many seconds (default {BUDGET_S})")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here, nothing measured (run it on a GPU; --smoke checks the code on CPU)",
              file=sys.stderr)
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.smoke:
        torch.set_num_threads(1)
    result = run(SMOKE if args.smoke else FULL, device, compile=args.compile, smoke=args.smoke, budget=args.budget)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0 if result["ok"] or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
