"""The scoring run: ONE proxy training on the full train set that records every signal.

Every score-based method reads per-sample signals from here, so adding a method or a
fraction costs a selection, not a training run. The run records only the signals asked for
and is cached on disk under a hash of everything that made it (dataset, scoring architecture,
scoring settings, seed); a later request for more signals re-runs it and stores the union.

A run trains only as long as its signals need: `train_epochs` = k stops the E-epoch schedule
(`scoring.epochs` = E, per-step cosine over all E epochs) after k epochs, so GraNd at
initialisation trains 0 epochs and EL2N at epoch 20 trains 20, while AIGN and forgetting
(every epoch) and features (the final model) need all E. The schedule length E is part of the
cache key, k is not: the first k epochs of a run are the same whatever k it stops at (the
learning rate at step t depends on E, not on k; nothing recorded draws from the run's
generator), so a cached run that trained k' ≥ k epochs serves a need for k, cut to its
first k epochs (`until`); a need for more than the entry trained re-runs it longer, with the
union of the signals. A 20-epoch run of a 20-epoch schedule is a different run (another
learning-rate curve) and has another key.

What it records, and when: each signal is declared once, with its shape, dtype, when it is
taken and its cost, in `corebench.signals` (`python -m corebench.signals` prints the table).
The training-pass signals read the step's own forward (the PGD example under PGD-AT) as the
run trains under `cfg.regime` the way `corebench.compute.train` does (`_step`); the adversarial
ones read the step's attack in eval mode before the update (`_adversarial_recorder`); the
eval-mode passes (exact input gradients, snapshots, the final model) are
`corebench.compute.signal_passes`. A run stopped after k epochs has k rows of the per-epoch
signals and the snapshots up to epoch k (`until`); one that records final-model signals trains
the whole schedule.

A plug-in signal declared in `corebench.signals` names a `compute` hook that this module
imports and calls (`_hook`):
    train_pass:                    hook(logits [B, C], y [B], losses [B]) -> [B], under no_grad
    eval_pass, snapshot, final:    hook(model, x [B, ...], y [B]) -> [B] or [B, C] / [B, D],
                                   model in eval mode, inputs un-augmented in [0, 1]
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from corebench.compute import signal_passes as passes
from corebench.compute.attacks import pgd_attack, trades_adversary, trades_loss
from corebench.compute.checkpoint import Checkpoint, resume_run, save_run
from corebench.compute.data import Dataset, host_to_device
from corebench.compute.fastpath import DeviceData, Execution, autocast, prepare_model, resolve
from corebench.compute.kernels import kernels_in_effect, portable_active
from corebench.compute.models import NormalizedModel, create_model
from corebench.compute.optim import batch_order, make_optimizer, steps_per_epoch
from corebench.core.faults import fault_point
from corebench.core.files import confined
from corebench.core.spec import (
    ArchSpec,
    AttackConfig,
    DatasetSpec,
    ScoringConfig,
    scoring_seed,
    stable_hash,
)
from corebench.signals import (  # noqa: F401  ALL_SIGNALS, EVAL_PASS, TRAIN_PASS: re-exported
    ADVERSARIAL,
    ALL_SIGNALS,
    BUILTIN,
    EVAL_PASS,
    FINAL,
    SNAPSHOT,
    SNAPSHOT_EPOCHS,
    TRAIN_PASS,
    check_signals,
    companions,
    get_signal,
    import_hook,
    list_signals,
    signal_code,
    taken_at,
    unimportable_hooks,
    until,
)
from corebench.store.cache_entry import meta_file, read_checked, remove_entry, write_entry

log = logging.getLogger(__name__)



@contextmanager
def seeded(seed: int, device: torch.device | None = None):
    """Seed torch's global RNG inside the block only (timm initialises with it)."""
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class ScoringResult:
    signals: dict[str, np.ndarray]  # cut to the epochs asked for (`until`)
    seconds: float  # time of the run that made them (read from the cache's metadata when reused)
    cached: bool
    key: str
    epochs: int = 0  # epochs the run that made them trained (>= the epochs asked for)
    failed: dict[str, str] = field(default_factory=dict)  # plug-in signals not recorded -> why


def needed_epochs(cfg: ScoringConfig, signals: Iterable[str], train_epochs: int | None) -> int:
    """Epochs a run must train: `train_epochs` (None: all), all when a final-model signal is asked for."""
    if train_epochs is None or taken_at("final", signals):
        return cfg.epochs
    return min(int(train_epochs), cfg.epochs)


def scoring_key(dataset: DatasetSpec, data: Dataset, arch: ArchSpec, cfg: ScoringConfig, seed: int,
                threads: int = 1, device: torch.device | None = None) -> str:
    """Hash of everything that changes the signals (not which signals were asked for): the
    dataset's full train contents (`Dataset.fingerprint`) and info, the architecture, the
    scoring settings, the seed, the torch threads (CPU results depend on them) and how the
    steps run on `device` (`execution`: `auto` is bf16 on a GPU, fp32 on CPU). Not where the
    data's files live (`path`, `root`, `download`): the same file spelled another way, or on
    another machine, is the same run, so a published run serves every clone. A run made on the
    portable CPU kernels (`corebench.compute.kernels`) computes other numbers: its key says so
    (left out on the native kernels, so their keys stay as they were)."""
    portable = {"kernels": "portable"} if (device is None or device.type == "cpu") and portable_active() else {}
    return stable_hash(
        {
            "dataset": without_location(dataset),
            "data": data.fingerprint("train"),
            "info": data.info,
            "arch": arch,
            "scoring": cfg.key_form(),
            "seed": seed,
            "threads": threads,
            "execution": execution(cfg, device or torch.device("cpu")).record(),
            "version": 3,
            **portable,
        }
    )


def without_location(dataset: DatasetSpec) -> DatasetSpec:
    """The dataset entry with its file locations at their defaults (its content is in the key)."""
    return dataclasses.replace(dataset, path=None, root=None, download=False)


def execution(cfg: ScoringConfig, device: torch.device) -> Execution:
    """How a scoring run's training steps run on `device` (`corebench.compute.fastpath.resolve`)."""
    return resolve(cfg.precision, cfg.channels_last, cfg.compile, device)


def get_signals(
    data: Dataset,
    dataset: DatasetSpec,
    arch: ArchSpec,
    cfg: ScoringConfig,
    seed: int,
    signals: Iterable[str],
    *,
    cache_dir: Path | None,
    device: torch.device,
    progress: bool = True,
    threads: int = 1,
    train_epochs: int | None = None,
) -> ScoringResult:
    """The requested signals of the first `train_epochs` epochs (None: the whole schedule) from
    the cache, or from a new scoring run (then cached).

    A cached run that trained at least that long and recorded every requested signal is reused;
    otherwise the run is made again, as long as the longer of the two needs, with the union of
    the signals, and replaces the entry. A cache entry is `<key>.npz` plus `<key>.json` (what
    made it, the epochs it trained and a checksum of the npz). An entry that is unreadable,
    incomplete or fails its checksum is reported once, removed and made again: a damaged file
    costs one scoring run, never the cells of its group.
    """
    asked = check_signals(signals)
    wanted = set(asked)
    need = needed_epochs(cfg, wanted, train_epochs)
    key = scoring_key(dataset, data, arch, cfg, seed, threads, device)
    path = confined(cache_dir, f"{key}.npz") if cache_dir else None
    have: dict[str, np.ndarray] = {}
    trained = 0
    outdated: set[str] = set()  # plug-in signals cached by code that has changed since
    entry = _load(path, key, data, outdated) if path is not None else None
    if entry is not None:
        have, seconds, trained, _ = entry
        have = {k: v for k, v in have.items() if k not in outdated}
        if trained < 0:
            trained = cfg.epochs  # entries written before stopped runs trained the whole schedule
        if wanted <= set(have) and need <= trained:
            served = until({k: have[k] for k in wanted | companions(wanted)}, need)
            return ScoringResult(served, seconds, True, key, trained)
        wanted |= {k for k in have if k in list_signals()}  # re-run once for the union
    if not wanted:
        return ScoringResult({}, 0.0, True, key, 0)
    run_for = max(need, trained) if have else need
    run_for = needed_epochs(cfg, wanted, run_for)
    start = time.perf_counter()
    failed: dict[str, str] = {}
    # the run's own checkpoint, beside the entry it will make (named by the signals it records and its length)
    checkpoint = Checkpoint(cache_dir, f"{key}-{stable_hash([sorted(wanted), run_for], 8)}") if cache_dir else None
    with kernels_in_effect():
        made = run_scoring(data, arch, cfg, seed, wanted, device=device, progress=progress, failed=failed,
                           checkpoint=checkpoint, train_epochs=run_for)
    seconds = time.perf_counter() - start
    if path is not None:
        write_entry(path, made, {"key": key, "dataset": dataset, "data": data.fingerprint("train"), "arch": arch,
                           "scoring": cfg, "seed": seed, "threads": threads, "signals": sorted(made),
                           "execution": execution(cfg, device).record(), "device": device.type,
                           "seconds": round(seconds, 3), "trained_epochs": run_for,
                           "signal_code": codes_of(made)}, root=cache_dir)
    if checkpoint is not None:
        checkpoint.delete()
    served = until({k: made[k] for k in asked | companions(asked) if k in made}, need)
    return ScoringResult(served, seconds, False, key, run_for, failed)


def codes_of(signals: Iterable[str]) -> dict[str, str]:
    """The code hash of each plug-in signal among `signals` (`signals.signal_code`): stored with
    a cache entry, so a value made by a plug-in's older code is not served."""
    return {name: code for name in sorted(signals) if (code := signal_code(name)) is not None}


def outdated_signals(meta: dict) -> set[str]:
    """The plug-in signals of a cache entry whose code changed since they were made."""
    made = meta.get("signal_code") or {}
    return {name for name in meta.get("signals", ()) if name in list_signals() and made.get(name) != signal_code(name)}


def read_entry(path: Path, key: str, data: Dataset) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """A cache entry's arrays (without plug-in signals made by older code) and its metadata;
    None when there is none or it is damaged (`_load`: reported and removed)."""
    outdated: set[str] = set()
    entry = _load(path, key, data, outdated)
    if entry is None:
        return None
    return {k: v for k, v in entry[0].items() if k not in outdated}, entry[3]


def _load(path: Path, key: str, data: Dataset, outdated: set[str] | None = None
          ) -> tuple[dict[str, np.ndarray], float, int, dict[str, Any]] | None:
    """A cache entry's arrays, the seconds its run took, the epochs it trained (-1: not
    recorded) and its metadata; None when there is none, or when it is damaged (then it is
    reported and removed; the format: `store.cache_entry`). The plug-in signals whose code
    changed since (`outdated_signals`) are added to `outdated`."""
    if not path.exists() and not meta_file(path).exists():
        return None
    problem = ""
    for _ in range(2):  # a second look: another process may have replaced the entry meanwhile
        try:
            arrays, meta = read_checked(path, key)
            n = data.x_train.shape[0]
            for name, arr in arrays.items():
                if name in list_signals():
                    shape = get_signal(name).shape
                    if arr.ndim != len(shape) or arr.shape[shape.index("N")] != n:
                        raise ValueError(f"signal {name} has shape {arr.shape} for {n} samples")
            if outdated is not None:
                outdated |= outdated_signals(meta)
            return arrays, float(meta.get("seconds", 0.0)), int(meta.get("trained_epochs", -1)), meta
        except Exception as exc:  # unreadable, truncated, tampered, half written
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    log.warning("scoring cache entry %s is damaged or incomplete (%s); removed, its signals are made again",
                path, problem)
    remove_entry(path)
    return None


def run_scoring(
    data: Dataset,
    arch: ArchSpec,
    cfg: ScoringConfig,
    seed: int,
    signals: set[str],
    *,
    device: torch.device,
    progress: bool = True,
    failed: dict[str, str] | None = None,
    checkpoint: Checkpoint | None = None,
    train_epochs: int | None = None,
) -> dict[str, np.ndarray]:
    """Train `arch` on the full train set for the first `train_epochs` epochs (None: all) of
    the cfg.epochs-epoch schedule, recording `signals` (see `until` for what a stopped run has).

    A plug-in signal whose hook fails is left out of the result, its error put in `failed`.
    With a `checkpoint`, the run's state and the signals recorded so far are saved after every
    epoch and a saved state is resumed from (`corebench.compute.checkpoint`): a killed scoring run
    continues at its last epoch and records the same signals.
    """
    n = data.x_train.shape[0]
    signals = check_signals(signals)
    epochs = needed_epochs(cfg, signals, train_epochs)
    snapshot_epochs = [e for e in cfg.snapshots() if e <= epochs]
    out = _allocate(signals, n, epochs, len(snapshot_epochs), data.info.num_classes)
    if companions(signals):
        out[SNAPSHOT_EPOCHS] = np.asarray(snapshot_epochs, dtype=np.int64)
    plugins = Plugins(signals)

    run = execution(cfg, device)
    attack = cfg.attack.resolved(data.info.eps)
    with seeded(seed, device):
        model = create_model(arch, data.info).to(device)
        step_model = prepare_model(model, run)
        generator = torch.Generator().manual_seed(seed)
        opt, sched = make_optimizer(
            model, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay,
            total_steps=cfg.epochs * steps_per_epoch(n, cfg.batch_size), schedule="cosine", sgd=run.sgd,
        )
        train_set = DeviceData(data.x_train, data.y_train, device, info=data.info,
                               augment=cfg.augment and bool(data.info.augment), channels_last=run.channels_last)
        saved = resume_run(checkpoint, model=model, optimizer=opt, scheduler=sched, generator=generator, device=device)
        if saved is not None:  # its tag names the signal set, so the arrays are the ones of `out`
            out = {k: v.numpy() for k, v in saved["signals"].items()}
            plugins.failed.update(saved["plugin_failures"])
            first = int(saved["epoch"])
            log.info("resuming the scoring run of %s at epoch %d of %d", arch.label, first, epochs)
        else:
            first = 0
            passes.snapshot(model, data, signals, out, snapshot_epochs, epoch=0, device=device)
            if 0 in snapshot_epochs:
                plugins.model_pass(model, data, "snapshot", out, 0, device)
        bar = tqdm(range(first, epochs), desc=f"scoring {arch.label}", disable=not progress, leave=False)
        for epoch in bar:
            step_model.train()
            want_input_grad = "input_grad_norm" in signals
            batches = list(batch_order(np.arange(n), cfg.batch_size, generator))
            order, start = host_to_device(torch.from_numpy(np.concatenate(batches)), device), 0
            signal_attack = torch.Generator().manual_seed(scoring_seed(seed, epoch))  # never the run's own
            for idx in batches:
                x, y = train_set.batch(order[start : start + len(idx)], generator)
                start += len(idx)
                x_in, loss, logits, losses = _step(step_model, model, x, y, cfg.regime, attack, generator,
                                                   run.precision, device, want_input_grad,
                                                   _adversarial_recorder(out, epoch, idx, signal_attack, attack))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                with torch.no_grad():
                    _record_outputs(out, epoch, idx, logits.detach(), y, losses.detach())
                    for name in plugins.at("train_pass"):
                        plugins.store(out, name, (epoch, idx), (logits.detach(), y, losses.detach()))
                    if want_input_grad:
                        # mean-loss gradient × batch size = gradient of each sample's own loss
                        norms = x_in.grad.flatten(1).norm(dim=1) * x_in.shape[0]
                        out["input_grad_norm"][epoch, idx] = norms.cpu().numpy()
            if "input_grad_norm_eval" in signals:
                passes.eval_pass(model, data, signals, out, epoch, device)
            plugins.model_pass(model, data, "eval_pass", out, epoch, device)
            passes.snapshot(model, data, signals, out, snapshot_epochs, epoch=epoch + 1, device=device)
            if epoch + 1 in snapshot_epochs:
                plugins.model_pass(model, data, "snapshot", out, snapshot_epochs.index(epoch + 1), device)
            save_run(checkpoint, epoch=epoch + 1, model=model, optimizer=opt, scheduler=sched, generator=generator,
                     device=device, signals={k: torch.from_numpy(v) for k, v in out.items()},
                     plugin_failures=dict(plugins.failed))
            fault_point("scoring", f"epoch {epoch + 1}")
        if signals & set(FINAL):
            passes.final_pass(model, data, signals, out, device)
        plugins.model_pass(model, data, "final", out, None, device)
    for name in plugins.failed:
        out.pop(name, None)
        log.error("scoring run: plug-in signal %r is not recorded: %s", name, plugins.failed[name])
    if failed is not None:
        failed.update(plugins.failed)
    return out


def _step(step_model: torch.nn.Module, model: NormalizedModel, x: torch.Tensor, y: torch.Tensor, regime: str,
          attack: AttackConfig, generator: torch.Generator, precision: str, device: torch.device,
          want_input_grad: bool, adversarial: Callable[..., None] | None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training step's forward under `regime`, as `corebench.compute.train` trains it: returns (the
    input of the step's forward, the loss to minimise, its logits, per-sample CE).

    The step's forward reads the clean batch under standard and TRADES (its natural term) and
    the PGD example under PGD-AT (PGD in train mode, TRADES's adversary in eval mode, as in
    `corebench.compute.train`), so the training-pass signals are on that input. `adversarial`, when
    set, records the adversarial signals on the step's adversarial example before the update.
    """
    x_adv = None
    if regime != "standard":
        with autocast(device, precision):
            if regime == "pgd_at":
                x_adv = pgd_attack(step_model, x, y, eps=attack.eps, step_size=attack.step_size, steps=attack.steps,
                                   random_start=attack.random_start, generator=generator)
            else:
                model.eval()
                x_adv = trades_adversary(step_model, x, eps=attack.eps, step_size=attack.step_size, steps=attack.steps,
                                         generator=generator)
                model.train()
    if adversarial is not None:
        adversarial(model, x, y, x_adv)
        model.train()
    x_in = (x_adv if regime == "pgd_at" else x).requires_grad_(want_input_grad)
    with autocast(device, precision):  # signals are read in fp32
        if regime == "trades":
            loss, logits = trades_loss(step_model, x_in, y, beta=attack.trades_beta, eps=attack.eps,
                                       step_size=attack.step_size, steps=attack.steps, generator=generator, x_adv=x_adv)
            logits = logits.float()
            losses = F.cross_entropy(logits, y, reduction="none")
        else:
            logits = step_model(x_in).float()
            losses = F.cross_entropy(logits, y, reduction="none")
            loss = losses.mean()
    return x_in, loss, logits, losses


def _adversarial_recorder(out: dict, epoch: int, idx: np.ndarray, signal_attack: torch.Generator,
                          attack: AttackConfig) -> Callable[..., None] | None:
    """What records the adversarial signals of one batch, or None when none is asked for.

    On the training attack's example under PGD-AT and TRADES; under a standard run, on a PGD
    example made for the signals in eval mode (the scoring attack's settings, its own
    generator, so the run trains the same with or without them: the cache key's promise).
    The model reads the example in eval mode, as Dong et al.'s tracker under TRADES
    (shwinshaker/RobustDataProfiling `src/adversary/defender.py`, `__get_pgd_ad`).
    """
    wanted = [name for name in ADVERSARIAL if name in out]
    if not wanted:
        return None

    def record(model: NormalizedModel, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor | None) -> None:
        model.eval()
        if x_adv is None:
            x_adv = pgd_attack(model, x, y, eps=attack.eps, step_size=attack.step_size, steps=attack.steps,
                               random_start=attack.random_start, generator=signal_attack)
        want_grad = "adv_input_grad_norm" in out
        with torch.enable_grad() if want_grad else torch.no_grad():
            params = list(model.parameters())
            flags = [p.requires_grad for p in params]
            try:
                for p in params:
                    p.requires_grad_(False)
                xa = x_adv.detach().float().requires_grad_(want_grad)
                logits = model(xa).float()
                losses = F.cross_entropy(logits, y, reduction="none")
                if want_grad:
                    (grad,) = torch.autograd.grad(losses.sum(), xa)
                    out["adv_input_grad_norm"][epoch, idx] = grad.flatten(1).norm(dim=1).cpu().numpy()
            finally:
                for p, flag in zip(params, flags, strict=True):
                    p.requires_grad_(flag)
        with torch.no_grad():
            if "adv_loss" in out:
                out["adv_loss"][epoch, idx] = losses.detach().cpu().numpy()
            if "adv_margin" in out:
                out["adv_margin"][epoch, idx] = passes.margin(logits.detach(), y).cpu().numpy()
            if "adv_correct" in out:
                out["adv_correct"][epoch, idx] = (logits.argmax(1) == y).cpu().numpy()

    return record


def _allocate(signals: set[str], n: int, epochs: int, snapshots: int, classes: int) -> dict[str, np.ndarray]:
    """Arrays for the per-epoch and snapshot signals, shaped and typed as declared (final-model
    signals are made whole at the end, their width D known only then)."""
    sizes = {"E": epochs, "K": snapshots, "N": n, "C": classes}
    out = {}
    for name in sorted(signals):
        sig = get_signal(name)
        if sig.taken != "final":
            out[name] = np.zeros(tuple(sizes[a] for a in sig.shape), dtype=sig.dtype)
    return out


def _record_outputs(out: dict, epoch: int, idx: np.ndarray, logits: torch.Tensor, y: torch.Tensor, losses: torch.Tensor) -> None:
    """Training-pass signals from logits the step already computed."""
    if "loss" in out:
        out["loss"][epoch, idx] = losses.cpu().numpy()
    if "correct" in out:
        out["correct"][epoch, idx] = (logits.argmax(1) == y).cpu().numpy()
    if "logits_train" in out:
        out["logits_train"][epoch, idx] = logits.half().cpu().numpy()
    need_probs = "el2n" in out or "margin_probs" in out
    probs = logits.softmax(1) if need_probs else None
    if "el2n" in out:
        out["el2n"][epoch, idx] = passes.el2n(probs, y).cpu().numpy()
    if "margin_logits" in out:
        out["margin_logits"][epoch, idx] = passes.margin(logits, y).cpu().numpy()
    if "margin_probs" in out:
        out["margin_probs"][epoch, idx] = passes.margin(probs, y).cpu().numpy()


class Plugins:
    """The plug-in signals of one scoring run: their compute hooks, and the ones that failed.

    A hook that cannot be imported, raises, or returns the wrong shape is dropped for the rest
    of the run with its error kept in `failed`; the run goes on, so only the methods that
    declared that signal fail (with that error), never the others sharing the run.
    """

    def __init__(self, signals: Iterable[str]) -> None:
        self.failed: dict[str, str] = unimportable_hooks(signals)
        self.hooks: dict[str, Callable[..., torch.Tensor]] = {
            name: import_hook(name) for name in sorted(signals)
            if get_signal(name).distribution != BUILTIN and name not in self.failed
        }

    def at(self, taken: str) -> list[str]:
        return [n for n in self.hooks if get_signal(n).taken == taken]

    def store(self, out: dict[str, np.ndarray], name: str, where: Any, args: tuple, n: int = 0) -> None:
        """out[name][where] = hook(*args), or drop the signal with its error. A final-model
        signal's [n, ...] array is allocated from its first batch."""
        if name not in self.hooks:
            return
        try:
            value = self.hooks[name](*args)
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu()
                value = value.numpy() if value.dtype == torch.bool else value.float().numpy()
            value = np.asarray(value)
            sig = get_signal(name)
            per_batch = sig.shape[1:] if sig.taken != "final" else sig.shape  # a batch's part of one row
            if value.ndim != len(per_batch):
                raise ValueError(f"the hook gave shape {value.shape}, declared {sig.shape_text}")
            if name not in out:
                out[name] = np.zeros((n, *value.shape[1:]), dtype=get_signal(name).dtype)
            out[name][where] = value
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            self.failed[name] = f"its compute hook {get_signal(name).compute!r} failed ({type(exc).__name__}: {first})"
            self.hooks.pop(name)
            out.pop(name, None)

    def model_pass(self, model: NormalizedModel, data: Dataset, taken: str, out: dict[str, np.ndarray],
                   row: int | None, device: torch.device) -> None:
        """Every hook taken at `taken` over the un-augmented train set, eval mode, into row `row`
        of its signal (None: the final model's [N, ...] array, allocated from the first batch)."""
        names = self.at(taken)
        if not names:
            return
        model.eval()
        n = data.x_train.shape[0]
        for sl in passes.eval_batches(n):
            x, y = data.x_train[sl].to(device), data.y_train[sl].to(device)
            for name in names:
                self.store(out, name, (row, sl) if row is not None else sl, (model, x, y), n)
