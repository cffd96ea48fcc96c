"""One training module for every regime: standard, PGD-AT (Madry et al. 2018), TRADES (Zhang et al. 2019).

The target model is trained in place on the coreset `data.x_train[indices]` (like airbench's
mask): SGD with momentum, Nesterov and weight decay under a per-step cosine schedule
(`corebench.compute.optim`), shuffled mini-batches and augmentation drawn from one `torch.Generator`
seeded from `seed`, so a (model, data, indices, config, seed) gives the same weights twice
on the same device. No global RNG is touched; the caller seeds model initialisation.

The budget (`training.budget`): `epochs` trains `training.epochs` passes over the coreset;
`steps` trains exactly `training.steps` SGD steps (or, unset, as many as `training.epochs`
over the FULL train set would take), whatever the coreset's size: whole shuffled passes, the
last one cut off at the step budget. The cosine schedule spans the steps trained.

How the steps run (`corebench.compute.fastpath`): the coreset is held on the device (uint8 when
lossless) and each batch gathered, augmented and converted there; under `training.precision`
bf16 the forward pass, the loss and the attack steps of PGD-AT and TRADES run in bf16
autocast; the model may be laid out channels_last and its step compiled. The epoch's batch
order goes to the device once and the loss is summed there, read once per epoch, so nothing in
a step waits for the device. With the settings `auto` resolves to on CPU, every number is
the one the plain float loop computes, bit for bit.

Attack-mode choices, as the references:
- `pgd_at`: the PGD examples are generated with the model in train mode (BatchNorm uses
  batch statistics and updates its running statistics during the attack), as in
  locuslab/robust_overfitting `train_cifar.py` (Rice et al. 2020) and Madry et al.'s code.
- `trades`: the adversary is found in eval mode and the loss computed in train mode,
  as in yaodongyu/TRADES `trades.py` (see `corebench.compute.attacks.trades_loss`); its start is the
  reference's x + 0.001·N(0, 1), so `attack.random_start` applies to PGD-AT only.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from corebench.compute.attacks import pgd_attack, trades_loss
from corebench.compute.checkpoint import Checkpoint, resume_run, save_run
from corebench.compute.data import Dataset, host_to_device
from corebench.compute.fastpath import DeviceData, autocast, prepare_model, resolve
from corebench.compute.models import NormalizedModel
from corebench.compute.optim import batch_order, make_optimizer, steps_per_epoch
from corebench.core.faults import fault_point
from corebench.core.spec import AttackConfig, TrainingConfig

log = logging.getLogger(__name__)


def train_model(
    model: NormalizedModel,
    data: Dataset,
    indices: np.ndarray,
    *,
    regime: str,
    training: TrainingConfig,
    attack: AttackConfig,
    seed: int,
    device: torch.device,
    progress: bool = True,
    checkpoint: Checkpoint | None = None,
) -> dict:
    """Train `model` in place on `data.x_train[indices]` under `regime`.

    `regime` is one of `spec.REGIMES`, `attack` is resolved (ε and step set) and `indices` is a
    non-empty 1-D index array, as the runner hands them over. Returns {"budget", "epochs"
    (passes over the coreset, fractional when a step budget ends inside one), "steps",
    "final_loss" (mean training loss of the last, possibly partial, pass), "seconds",
    "resumed_from" (the pass a checkpoint resumed at, 0 for a fresh run), "execution" (how the steps
    ran, resolved: `fastpath.Execution.record()`)}. The model is left in
    eval mode, ready to be evaluated.

    With a `checkpoint`, the state after every pass is saved there, and a saved state is
    resumed from: the run continues as the interrupted one would have (see
    `corebench.compute.checkpoint`). The global RNG (dropout, stochastic depth) is seeded from `seed`
    inside this call and restored after it.
    """
    indices = np.asarray(indices, dtype=np.int64)
    start_time = time.perf_counter()
    n = int(indices.size)
    per_epoch = steps_per_epoch(n, training.batch_size)
    total_steps = training.total_steps(per_epoch, steps_per_epoch(int(data.x_train.shape[0]), training.batch_size))
    execution = resolve(training.precision, training.channels_last, training.compile, device)
    model.to(device)
    step_model = prepare_model(model, execution)
    optimizer, scheduler = make_optimizer(
        model,
        lr=training.lr,
        momentum=training.momentum,
        nesterov=training.nesterov,
        weight_decay=training.weight_decay,
        total_steps=total_steps,
        schedule=training.schedule,
        sgd=execution.sgd,
    )
    generator = torch.Generator().manual_seed(seed)
    subset = torch.from_numpy(indices)
    coreset = DeviceData(data.x_train[subset], data.y_train[subset], device, info=data.info,
                         augment=training.augment and bool(data.info.augment), channels_last=execution.channels_last)
    positions = np.arange(n)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        first, steps, final_loss = 0, 0, math.nan
        passes = math.ceil(total_steps / per_epoch)  # the last one cut off at a step budget
        saved = resume_run(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler, generator=generator,
                           device=device)
        if saved is not None:
            first, steps, final_loss = int(saved["epoch"]), int(saved["steps"]), float(saved["final_loss"])
            log.info("resuming %s training at pass %d of %d from %s", regime, first, passes, checkpoint.path)
        bar = tqdm(range(first, passes), desc=f"train {regime}", leave=False, disable=not progress)
        for epoch in bar:
            step_model.train()
            batches = list(batch_order(positions, training.batch_size, generator))
            order = host_to_device(torch.from_numpy(np.concatenate(batches)), device)
            loss_sum, seen = torch.zeros((), dtype=torch.float64, device=device), 0
            for batch in batches:
                if steps == total_steps:
                    break
                index = order[seen : seen + len(batch)]
                x, y = coreset.batch(index, generator)
                with autocast(device, execution.precision):
                    loss = _loss(step_model, x, y, regime, attack, generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                steps += 1
                loss_sum += loss.detach().double() * len(batch)  # float64 on the device: read once an epoch
                seen += len(batch)
            final_loss = loss_sum.item() / max(seen, 1)
            bar.set_postfix(loss=f"{final_loss:.3f}")
            # after the last epoch too: a kill in evaluation trains nothing again
            save_run(checkpoint, epoch=epoch + 1, model=model, optimizer=optimizer, scheduler=scheduler,
                     generator=generator, device=device, steps=steps, final_loss=final_loss)
            fault_point("training", f"epoch {epoch + 1}")
    optimizer.zero_grad(set_to_none=True)  # hand back a model without stale gradients
    model.eval()
    seconds = time.perf_counter() - start_time
    epochs = steps / per_epoch
    log.debug("trained %s on %d samples: %.4g epochs, %d steps (%s budget), loss %.4f, %.1fs",
              regime, n, epochs, steps, training.budget, final_loss, seconds)
    return {"budget": training.budget, "epochs": epochs, "steps": steps, "final_loss": float(final_loss),
            "seconds": seconds, "resumed_from": first,
            "execution": {**execution.record(), "data": coreset.storage}}


def _loss(
    model: NormalizedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    regime: str,
    attack: AttackConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """The regime's training loss on one batch (model in train mode)."""
    if regime == "standard":
        return F.cross_entropy(model(x), y)
    if regime == "pgd_at":
        x_adv = pgd_attack(model, x, y, eps=attack.eps, step_size=attack.step_size, steps=attack.steps,
                           random_start=attack.random_start, generator=generator)
        return F.cross_entropy(model(x_adv), y)
    loss, _ = trades_loss(model, x, y, beta=attack.trades_beta, eps=attack.eps,
                          step_size=attack.step_size, steps=attack.steps, generator=generator)
    return loss
