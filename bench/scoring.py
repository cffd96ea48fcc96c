"""The scoring run: ONE proxy training on the full train set that records every signal.

Every score-based method reads per-sample signals from here, so adding a method or a
fraction costs a selection, not a training run. The run records only the signals asked for
and is cached on disk under a hash of everything that made it (dataset, scoring architecture,
scoring settings, seed); a later request for more signals re-runs it and stores the union.

Signals (E = scoring epochs, row e = epoch e+1, N = train size):
    input_grad_norm      [E, N]  ‖∇ₓ CE‖₂ in the training pass (train mode, augmented input).
                                 One backward gives parameter and input gradients; with
                                 train-mode BatchNorm the batch couples samples, so this is
                                 ∇ₓᵢ Σⱼ CEⱼ (the cheap reading, ~free).
    input_grad_norm_eval [E, N]  exact per-sample ‖∇ₓ CE‖₂ in an eval-mode pass over
                                 un-augmented inputs after each epoch (the faithful, costly one).
    correct              [E, N]  prediction correct in the training pass (bool).
    loss                 [E, N]  per-sample CE in the training pass.
    el2n                 [E, N]  ‖softmax − onehot‖₂ in the training pass.
    margin_logits        [E, N]  AUM margin logit_y − max_{k≠y} logit_k, training pass.
    margin_probs         [E, N]  the same margin on softmax probabilities.
  snapshots, eval mode on un-augmented inputs at scoring.snapshot_epochs (0 = initialisation):
    el2n_eval            [K, N]  ‖softmax − onehot‖₂.
    grand_all            [K, N]  per-sample ‖∇_θ CE‖₂ over all parameters.
    grand_last           [K, N]  the same over the classifier layer only (closed form).
    snapshot_epochs      [K]     the epochs the snapshot rows were taken at (int64).
    features             [N, D]  penultimate features of the final model (eval, un-augmented).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from corebench.data import Dataset, augment_batch
from corebench.faults import fault_point
from corebench.files import confined, write_atomic
from corebench.models import NormalizedModel, create_model
from corebench.optim import batch_order, make_optimizer, steps_per_epoch
from corebench.signals import (
    ALL_SIGNALS,
    EVAL_PASS,
    SNAPSHOT,
    TRAIN_PASS,
    check_signals,
    companions,
)
from corebench.spec import ArchSpec, DatasetSpec, ScoringConfig, stable_hash, to_jsonable

log = logging.getLogger(__name__)

EVAL_BATCH = 512


@contextmanager
def seeded(seed: int, device: torch.device | None = None):
    """Seed torch's global RNG inside the block only (timm initialises with it)."""
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class ScoringResult:
    signals: dict[str, np.ndarray]
    seconds: float  # time of the run that made them (0 reused from cache is not 0: see cached)
    cached: bool
    key: str


def scoring_key(dataset: DatasetSpec, data: Dataset, arch: ArchSpec, cfg: ScoringConfig, seed: int,
                threads: int = 1) -> str:
    """Hash of everything that changes the signals (not which signals were asked for): the
    dataset's full train contents (`Dataset.fingerprint`) and info, the architecture, the
    scoring settings, the seed and the torch threads (CPU results depend on them)."""
    return stable_hash(
        {
            "dataset": dataset,
            "data": data.fingerprint("train"),
            "info": data.info,
            "arch": arch,
            "scoring": cfg,
            "seed": seed,
            "threads": threads,
            "version": 2,
        }
    )


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
) -> ScoringResult:
    """The requested signals from the cache, or from a new scoring run (then cached).

    A cache entry is `<key>.npz` plus `<key>.json` (what made it and a checksum of the npz). An
    entry that is unreadable, incomplete or fails its checksum is reported once, removed and
    made again: a damaged file costs one scoring run, never the cells of its group.
    """
    wanted = check_signals(signals)
    key = scoring_key(dataset, data, arch, cfg, seed, threads)
    path = confined(cache_dir, f"{key}.npz") if cache_dir else None
    have: dict[str, np.ndarray] = {}
    seconds = 0.0
    entry = _load(path, key, data) if path is not None else None
    if entry is not None:
        have, seconds = entry
        if wanted <= set(have):
            return ScoringResult({k: have[k] for k in wanted | companions(wanted)}, seconds, True, key)
        wanted |= {k for k in have if k in ALL_SIGNALS}  # re-run once for the union
    if not wanted:
        return ScoringResult({}, 0.0, True, key)
    start = time.perf_counter()
    made = run_scoring(data, arch, cfg, seed, wanted, device=device, progress=progress)
    seconds = time.perf_counter() - start
    if path is not None:
        _save(path, made, {"key": key, "dataset": dataset, "data": data.fingerprint("train"), "arch": arch,
                           "scoring": cfg, "seed": seed, "threads": threads, "signals": sorted(made),
                           "seconds": round(seconds, 3)}, root=cache_dir)
    return ScoringResult(made, seconds, False, key)


def _checksum(blob: bytes | memoryview) -> str:
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def _save(path: Path, arrays: dict[str, np.ndarray], meta: dict, root: Path) -> None:
    """Atomic writes, the npz first: an entry counts only once its metadata (with the npz's
    checksum) is written, so a crashed job never leaves a half entry that is read."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getbuffer()
    write_atomic(path, lambda f: f.write(blob), root=root)
    text = json.dumps(to_jsonable({**meta, "checksum": _checksum(blob)}), indent=1, sort_keys=True)
    write_atomic(path.with_suffix(".json"), lambda f: f.write(text.encode()), root=root)


def _load(path: Path, key: str, data: Dataset) -> tuple[dict[str, np.ndarray], float] | None:
    """A cache entry's arrays and the seconds its run took; None when there is none, or when
    it is damaged (then it is reported and removed)."""
    meta_path = path.with_suffix(".json")
    if not path.exists() and not meta_path.exists():
        return None
    problem = ""
    for _ in range(2):  # a second look: another process may have replaced the entry meanwhile
        try:
            meta = json.loads(meta_path.read_text())
            blob = path.read_bytes()
            if not isinstance(meta, dict) or meta.get("key") != key:
                raise ValueError("its metadata names another key")
            if meta.get("checksum") != _checksum(blob):
                raise ValueError("checksum mismatch")
            with np.load(io.BytesIO(blob), allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
            n = data.x_train.shape[0]
            for name, arr in arrays.items():
                if name in ALL_SIGNALS and (arr.ndim != 2 or arr.shape[0 if name == "features" else 1] != n):
                    raise ValueError(f"signal {name} has shape {arr.shape} for {n} samples")
            return arrays, float(meta.get("seconds", 0.0))
        except Exception as exc:  # unreadable, truncated, tampered, half written
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    log.warning("scoring cache entry %s is damaged or incomplete (%s); removed, its signals are made again",
                path, problem)
    path.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)
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
) -> dict[str, np.ndarray]:
    """Train `arch` on the full train set for cfg.epochs, recording `signals`."""
    n, epochs = data.x_train.shape[0], cfg.epochs
    out: dict[str, np.ndarray] = {}
    for name in signals & set(TRAIN_PASS + EVAL_PASS):
        out[name] = np.zeros((epochs, n), dtype=bool if name == "correct" else np.float32)
    snapshot_epochs = list(cfg.snapshots())
    if signals & set(SNAPSHOT):
        out["snapshot_epochs"] = np.asarray(snapshot_epochs, dtype=np.int64)
        for name in signals & set(SNAPSHOT):
            out[name] = np.zeros((len(snapshot_epochs), n), dtype=np.float32)

    with seeded(seed, device):
        model = create_model(arch, data.info).to(device)
        generator = torch.Generator().manual_seed(seed)
        opt, sched = make_optimizer(
            model, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay,
            total_steps=epochs * steps_per_epoch(n, cfg.batch_size), schedule="cosine",
        )
        x_all, y_all = data.x_train, data.y_train
        _snapshot(model, data, signals, out, snapshot_epochs, epoch=0, device=device)
        bar = tqdm(range(epochs), desc=f"scoring {arch.label}", disable=not progress, leave=False)
        for epoch in bar:
            model.train()
            want_input_grad = "input_grad_norm" in signals
            for idx in batch_order(np.arange(n), cfg.batch_size, generator):
                x = x_all[idx].to(device, non_blocking=True)
                y = y_all[idx].to(device, non_blocking=True)
                if cfg.augment and data.info.augment:
                    x = augment_batch(x, data.info, generator)
                x.requires_grad_(want_input_grad)
                logits = model(x)
                losses = F.cross_entropy(logits, y, reduction="none")
                opt.zero_grad(set_to_none=True)
                losses.mean().backward()
                opt.step()
                sched.step()
                with torch.no_grad():
                    _record_outputs(out, epoch, idx, logits.detach(), y, losses.detach())
                    if want_input_grad:
                        # mean-loss gradient × batch size = gradient of each sample's own loss
                        norms = x.grad.flatten(1).norm(dim=1) * x.shape[0]
                        out["input_grad_norm"][epoch, idx] = norms.cpu().numpy()
            if signals & set(EVAL_PASS):
                _eval_pass(model, data, signals, out, epoch, device)
            _snapshot(model, data, signals, out, snapshot_epochs, epoch=epoch + 1, device=device)
            fault_point("scoring", f"epoch {epoch + 1}")
        if "features" in signals:
            out["features"] = _features(model, data, device)
    return out


def _record_outputs(out: dict, epoch: int, idx: np.ndarray, logits: torch.Tensor, y: torch.Tensor, losses: torch.Tensor) -> None:
    """Training-pass signals from logits the step already computed."""
    if "loss" in out:
        out["loss"][epoch, idx] = losses.cpu().numpy()
    if "correct" in out:
        out["correct"][epoch, idx] = (logits.argmax(1) == y).cpu().numpy()
    need_probs = "el2n" in out or "margin_probs" in out
    probs = logits.softmax(1) if need_probs else None
    if "el2n" in out:
        out["el2n"][epoch, idx] = el2n(probs, y).cpu().numpy()
    if "margin_logits" in out:
        out["margin_logits"][epoch, idx] = margin(logits, y).cpu().numpy()
    if "margin_probs" in out:
        out["margin_probs"][epoch, idx] = margin(probs, y).cpu().numpy()


def el2n(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖softmax − onehot(y)‖₂ per sample (Paul et al. 2021)."""
    return (probs - F.one_hot(y, probs.shape[1]).to(probs.dtype)).norm(dim=1)


def margin(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """AUM margin: score of the assigned class minus the largest other score (Pleiss et al. 2020)."""
    assigned = scores.gather(1, y[:, None]).squeeze(1)
    others = scores.scatter(1, y[:, None], float("-inf"))
    return assigned - others.max(1).values


def _eval_batches(n: int) -> Iterable[slice]:
    for start in range(0, n, EVAL_BATCH):
        yield slice(start, min(n, start + EVAL_BATCH))


def _eval_pass(model: NormalizedModel, data: Dataset, signals: set[str], out: dict, epoch: int, device: torch.device) -> None:
    """Eval-mode, un-augmented: exact per-sample input gradients (samples are independent)."""
    model.eval()
    for sl in _eval_batches(data.x_train.shape[0]):
        x = data.x_train[sl].to(device).requires_grad_(True)
        y = data.y_train[sl].to(device)
        losses = F.cross_entropy(model(x), y, reduction="none")
        (grad,) = torch.autograd.grad(losses.sum(), x)
        out["input_grad_norm_eval"][epoch, sl] = grad.flatten(1).norm(dim=1).cpu().numpy()


def _snapshot(model: NormalizedModel, data: Dataset, signals: set[str], out: dict, snapshot_epochs: list[int],
              epoch: int, device: torch.device) -> None:
    """Snapshot rows at the chosen epochs (0 = before any training step), eval mode."""
    if epoch not in snapshot_epochs or not signals & set(SNAPSHOT):
        return
    row = snapshot_epochs.index(epoch)
    model.eval()
    if signals & {"el2n_eval", "grand_last"}:
        errors, last_layer = _head_pass(model, data, device)
        if "el2n_eval" in signals:
            out["el2n_eval"][row] = errors
        if "grand_last" in signals:
            out["grand_last"][row] = last_layer
    if "grand_all" in signals:
        out["grand_all"][row] = _grand_all(model, data, device)


def _head_pass(model: NormalizedModel, data: Dataset, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """EL2N and the last layer's gradient norm from one forward pass.

    For a linear classifier the per-sample gradient is (p − y) hᵀ (and p − y for the
    bias), so ‖∇‖² = ‖p − y‖² (‖h‖² + 1): the EL2N times a feature-norm factor.
    """
    head = model.classifier()
    has_bias = getattr(head, "bias", None) is not None
    errors, last = [], []
    with torch.no_grad():
        for sl in _eval_batches(data.x_train.shape[0]):
            h = model.features(data.x_train[sl].to(device))
            err = el2n(head(h).softmax(1), data.y_train[sl].to(device))
            errors.append(err.cpu())
            last.append((err * (h.pow(2).sum(1) + float(has_bias)).sqrt()).cpu())
    return torch.cat(errors).numpy(), torch.cat(last).numpy()


def _grand_all(model: NormalizedModel, data: Dataset, device: torch.device) -> np.ndarray:
    """Per-sample gradient norms over every parameter, with torch.func (vmap over grad)."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    n_params = sum(p.numel() for p in params.values())
    chunk = int(max(1, min(256, 2.5e8 // max(1, n_params))))

    def loss_one(p, x, y):
        logits = functional_call(model, (p, buffers), (x[None],))
        return F.cross_entropy(logits, y[None])

    per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))
    norms = []
    for start in range(0, data.x_train.shape[0], chunk):
        x = data.x_train[start : start + chunk].to(device)
        y = data.y_train[start : start + chunk].to(device)
        grads = per_sample(params, x, y)
        sq = sum(g.flatten(1).pow(2).sum(1) for g in grads.values())
        norms.append(sq.sqrt().cpu())
    return torch.cat(norms).numpy()


def _features(model: NormalizedModel, data: Dataset, device: torch.device) -> np.ndarray:
    model.eval()
    feats = []
    with torch.no_grad():
        for sl in _eval_batches(data.x_train.shape[0]):
            feats.append(model.features(data.x_train[sl].to(device)).float().cpu())
    return torch.cat(feats).numpy()
