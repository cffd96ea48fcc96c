"""The cost of an adversarial scoring run (issue 22), as a ratio to a standard one.

A scoring run trains its proxy under `scoring.regime`; PGD-AT and TRADES pay for their attack
in every step. Measured here as the CPU seconds of one scoring epoch under each regime, with
the settings of configs/cifar10_adversarial.yaml (resnet10t_w8, batch 128, an attack of 2
steps of 4/255 at ε = 8/255), with and without the signals its methods record there
(standard: EasyCore's exact input-gradient pass, loss, margins, per-epoch logits; PGD-AT:
Dong et al.'s adversarial correctness; TRADES: those plus the adversarial loss and margin).
Each figure is the median over `repeats` interleaved rounds of one epoch minus the run's fixed
cost (its 0-epoch time). No target: the figures go to benchmarks/README.md and the board's
cost table reads the real runs' seconds from the records.

Data: real CIFAR-10 images from the shared cifar10_test_subset.npz when present, else digits.

    python benchmarks/bench_adversarial_scoring.py
"""

from __future__ import annotations

import numpy as np
import torch
from bench_scoring import _data, _say, _time

from corebench.core.spec import ArchSpec, AttackConfig, ScoringConfig

ARCH = ArchSpec("resnet10t", {"channels": [8, 16, 32, 64], "stem_width": 8, "zero_init_last": False})
ATTACK = AttackConfig(eps=8 / 255, step_size=4 / 255, steps=2)
SIGNALS = {  # what configs/cifar10_adversarial.yaml's methods record on each run
    "standard": {"input_grad_norm_eval", "loss", "margin_logits", "logits_train"},
    "pgd_at": {"adv_correct"},
    "trades": {"input_grad_norm_eval", "logits_train", "adv_correct", "adv_loss", "adv_margin"},
}


def main(n: int = 1000, repeats: int = 3) -> dict:
    torch.set_num_threads(1)
    data = _data(n)
    _say(f"data: {data.info.name}, N={data.x_train.shape[0]}, {ARCH.name} {dict(ARCH.kwargs)}, 1 thread")
    cfgs = {r: ScoringConfig(epochs=2, batch_size=128, lr=0.05, regime=r, attack=ATTACK) for r in SIGNALS}
    _time(data, ARCH, cfgs["standard"], set(), train_epochs=1)  # warm-up
    plain: dict[str, list[float]] = {r: [] for r in SIGNALS}
    recorded: dict[str, list[float]] = {r: [] for r in SIGNALS}
    for _ in range(repeats):
        for regime, cfg in cfgs.items():
            setup = _time(data, ARCH, cfg, set(), train_epochs=0)
            plain[regime].append(_time(data, ARCH, cfg, set(), train_epochs=1) - setup)
            recorded[regime].append(_time(data, ARCH, cfg, SIGNALS[regime], train_epochs=1) - setup)
    epoch = {r: float(np.median(t)) for r, t in plain.items()}
    with_signals = {r: float(np.median(t)) for r, t in recorded.items()}
    ratio = {r: epoch[r] / epoch["standard"] for r in SIGNALS}
    ratio_signals = {r: with_signals[r] / with_signals["standard"] for r in SIGNALS}
    for r in SIGNALS:
        _say(f"{r:<8} scoring epoch  {epoch[r]:6.2f} s  ({ratio[r]:.2f}x standard);  with its grid's signals "
             f"{with_signals[r]:6.2f} s  ({ratio_signals[r]:.2f}x the standard run's)")
    return {"n": int(data.x_train.shape[0]), "epoch_s": epoch, "ratio": ratio, "with_signals_s": with_signals,
            "ratio_with_signals": ratio_signals, "repeats": repeats, "ok": True}  # no target: figures only


if __name__ == "__main__":
    main()
