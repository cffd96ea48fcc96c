"""AutoAttack through corebench's adapter against `pyautoattack` called directly: target at most 1.02x.

Same model, same inputs, same ε, seed 0, the quickstart's attacks (version `custom`: APGD-CE
then APGD-T; `standard` adds FAB-T and Square, which multiplies the runtime, not the adapter's
share of it: the adapter adds a fixed cost per attack, the package's start-up checks and one
clean forward pass).
The baseline is the call a user makes: `AutoAttack(model, eps=..., version="custom",
attacks=[...], seed=0).run_standard_evaluation(x, y)` on the model in eval mode, in two forms: as is (FAB's
backward then also computes the parameters' gradients) and, the judged one, with the
parameters' `requires_grad` switched off as the adapter does (so the ratio is the adapter's
own overhead, not a saving it makes). The adapter
(`corebench.compute.autoattack_adapter.run_autoattack`) isolates the package's global state and runs
the same cascade one attack at a time to record each attack's robust accuracy; both must end
at the same robust accuracy, which the benchmark checks, so the ratio compares the same work.

The model is the quickstart's narrow ResNet-10t trained briefly with PGD-AT on digits, so that
some points survive APGD-CE and every attack of the cascade runs (an untrained model is broken
by the first attack and would time little but the package's start-up checks).

Timing: the two take turns `repeats` times; the judged ratio is the median over rounds of
adapter / direct in CPU seconds (one torch thread: the work done, whatever else the shared
cores run; the fastest run of each is printed beside it). Measured figures:
benchmarks/README.md.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from corebench.compute.autoattack_adapter import AA_LOGGER, run_autoattack
from corebench.compute.datasets import load_dataset
from corebench.compute.models import create_model
from corebench.compute.train import train_model
from corebench.core.spec import (
    ArchSpec,
    AttackConfig,
    AutoAttackConfig,
    DatasetSpec,
    TrainingConfig,
)

from common import alternate, paired_ratio

TARGET = 1.02
ATTACKS = ("apgd-ce", "apgd-t")
ARCH = ArchSpec("resnet10t", {"channels": [8, 16, 32, 64], "stem_width": 8})


def robust_model(epochs: int = 4, n_train: int | None = None) -> tuple[torch.nn.Module, object]:
    """A narrow ResNet-10t trained with PGD-AT (3 steps) on digits (the first `n_train`
    training images; all by default), and the data."""
    data = load_dataset(DatasetSpec("digits"))
    torch.manual_seed(0)
    model = create_model(ARCH, data.info)
    train_model(model, data, np.arange(n_train or data.x_train.shape[0]), regime="pgd_at",
                training=TrainingConfig(epochs=epochs, batch_size=64, lr=0.05),
                attack=AttackConfig(steps=3).resolved(data.info.eps), seed=0, device=torch.device("cpu"),
                progress=False)
    return model.eval(), data


def direct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, frozen: bool,
           attacks: tuple[str, ...] = ATTACKS) -> float:
    """The baseline: pyautoattack as its README calls it (with the parameters' gradients
    switched off when `frozen`, as the adapter does). Robust accuracy in percent."""
    from pyautoattack import AutoAttack

    for p in model.parameters():
        p.requires_grad_(not frozen)
    adversary = AutoAttack(model, eps=eps, norm="Linf", version="custom", attacks=list(attacks), seed=0, device="cpu")
    _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=len(x))
    for p in model.parameters():
        p.requires_grad_(True)
    return 100.0 * (y_adv == y).sum().item() / len(y)


def main(n: int = 16, repeats: int = 8, train_epochs: int = 4, n_train: int | None = None,
         attacks: tuple[str, ...] = ATTACKS) -> dict:
    torch.set_num_threads(1)
    model, data = robust_model(train_epochs, n_train)
    x, y = data.x_test[:n], data.y_test[:n]
    eps = data.info.eps
    logging.getLogger(AA_LOGGER).setLevel(logging.WARNING)  # both quiet: the package logs every step

    def adapter() -> float:
        acc, _, _ = run_autoattack(model, x, y, eps=eps, autoattack=AutoAttackConfig(version="custom", attacks=attacks),
                                   batch_size=n)
        return acc

    plain = alternate({"plain": lambda: direct(model, x, y, eps, False, attacks)}, 1)["plain"]
    timed = alternate({"direct": lambda: direct(model, x, y, eps, True, attacks), "adapter": adapter}, repeats)
    base, ours = timed["direct"], timed["adapter"]
    ratio = paired_ratio(ours, base)
    same = plain.result == base.result == ours.result
    print(f"AutoAttack {', '.join(attacks)}, digits, {n} test images, eps {eps:.4f}, {ARCH.name} {dict(ARCH.kwargs)} "
          f"after PGD-AT, 1 thread, fastest of {repeats} (CPU s; wall s); ratio: median of the rounds")
    print(f"  pyautoattack directly                    {plain.cpu_s:6.2f}; {plain.wall_s:6.2f}  robust {plain.result:.2f}%  "
          f"(one run; adapter = {ours.cpu_s / plain.cpu_s:.3f}x this)")
    print(f"  the same, parameter grads off (baseline) {base.cpu_s:6.2f}; {base.wall_s:6.2f}  robust {base.result:.2f}%")
    print(f"  corebench adapter                        {ours.cpu_s:6.2f}; {ours.wall_s:6.2f}  robust {ours.result:.2f}%  "
          f"ratio {ratio:.3f} (wall {ours.wall_s / base.wall_s:.3f}; target <= {TARGET})")
    rounds = sorted(a / b for a, b in zip(ours.cpu, base.cpu, strict=True))
    print(f"  rounds' ratios from {rounds[0]:.3f} to {rounds[-1]:.3f}; same robust accuracy: {same}")
    return {"plain_cpu_s": plain.cpu_s, "plain_ratio": ours.cpu_s / plain.cpu_s, "baseline_cpu_s": base.cpu_s, "adapter_cpu_s": ours.cpu_s, "ratio": ratio,
            "wall_ratio": ours.wall_s / base.wall_s, "robust_acc": ours.result, "same_result": same,
            "target": TARGET, "ok": ratio <= TARGET and same}


if __name__ == "__main__":
    main()
