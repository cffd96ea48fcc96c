"""`corebench plan GRID`: what a grid will cost before it runs (a dry run: nothing is trained).

It counts the cells per axis and the scoring runs, says which scoring runs the cache already
holds (reused, not made again) and which cells already have a valid record, then times a few
training and attack steps of every architecture on every dataset of the grid, on this
machine's CPU (with the grid's `threads`) and on its GPU when one is present, and turns the
timings into compute estimates and the memory one cell needs.

The estimates are per-sample costs times the samples a run touches:
- training: epochs × kept samples × (one training step, on a batch gathered and augmented as
  training does; PGD-AT adds `attack.steps` attack steps, TRADES as many plus a second
  forward-backward), plus the checkpoint saved after each pass;
- scoring: scoring epochs × N training steps (plus the eval-mode input-gradient pass and
  full-parameter GraNd when the grid's methods need them);
- evaluation: clean + PGD-k + AutoAttack's iterations (pyautoattack's defaults), the first
  attack on the points classified right and each later one on the points still robust at that
  ε (the grid's records' shares when it has some, else the prior `PRIOR_ROBUST_SHARE`), each
  AutoAttack iteration at the cost the probe measures for pyautoattack's APGD, per point and per
  iteration (its bookkeeping, whatever the points: benchmarks/README.md); the upper bound attacks
  every point with every attack.
The memory is the Python/torch runtime (this process), the dataset, the model's weights,
gradients and momentum, and the activations of one training batch (measured on the GPU,
summed from every layer's output on the CPU).
"""

from __future__ import annotations

import math
import os
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from corebench.boards.board import Board, build_boards, comparison_sides
from corebench.boards.significance import PRIOR_TEXT, compare, power_of, prior_detectable
from corebench.boards.stats import SEEDS_ONLY
from corebench.compute.checkpoint import Checkpoint, save_run
from corebench.compute.data import Dataset
from corebench.compute.fastpath import (
    DeviceData,
    autocast,
    lay_out_for_evaluation,
    prepare_model,
    resolve,
)
from corebench.compute.kernels import in_portable_process, kernels_in_effect, needs_portable_process
from corebench.compute.models import create_model
from corebench.compute.optim import make_optimizer, torch_threads
from corebench.compute.scoring import seeded
from corebench.core.protocol import eps_text
from corebench.core.spec import (
    FULL_DATA,
    AttackConfig,
    CpuKernels,
    DatasetSpec,
    GridSpec,
    TrainingConfig,
    slug,
)
from corebench.drivers.cell import default_cache_dir
from corebench.drivers.scoring_runs import run_label
from corebench.drivers.work import Work, plan_work
from corebench.methods import facts
from corebench.methods.base import budget_for
from corebench.store.results import scan

# gradient steps per attacked test example for each AutoAttack attack, from the resolved budget
# (`AutoAttackConfig.resolved`: restarts r, iterations i, target classes t of the C − 1 others);
# Square's 5,000 queries are forward passes only (pyautoattack's defaults)
AA_GRADIENT_STEPS: dict[str, Callable[[int, int, int, int], float]] = {
    "apgd-ce": lambda r, i, t, c: r * i, "apgd-dlr": lambda r, i, t, c: r * i,
    "apgd-t": lambda r, i, t, c: i * min(t, c - 1), "fab": lambda r, i, t, c: r * i * 2,
    "fab-t": lambda r, i, t, c: 2 * i * min(t, c - 1), "square": lambda r, i, t, c: 0,
}  # fmt: skip
AA_FORWARDS = {"square": 5000}
# Before records exist, the share of evaluated points AutoAttack attacks (those classified right)
# and of those the share still robust after its first attack, by regime: a prior, the mean over
# the committed boards' records and their ε (2026-12-06: quickstart, the CIFAR-10 split board (cifar10_cpu's design),
# cifar10_adversarial; robust after the first attack 0.04-0.77 standard, 0.35-0.90 TRADES, by
# board and ε; PGD-AT, with no committed records, takes TRADES'). With records of the grid in the
# results folder, their means per regime and ε are used.
PRIOR_CLEAN_SHARE = {"standard": 0.55, "pgd_at": 0.35, "trades": 0.35}
PRIOR_ROBUST_SHARE = {"standard": 0.35, "pgd_at": 0.7, "trades": 0.7}
PROBE_SECONDS = 0.3  # time each measured step at least this long (after a warm-up step)
AA_PROBE_ITERATIONS = (2, 12)  # APGD-CE timed at both (the faster of two runs): the slope is one iteration, without the fixed cost
AA_PROBE_FEW_POINTS = 4  # and on this many points: an iteration's cost apart from its points (APGD's bookkeeping)


@dataclass
class Probe:
    """Measured costs of one architecture on one dataset and device, in seconds per sample."""

    dataset: str
    arch: str
    device: str
    train_step: float  # forward, backward and optimiser step, train mode, at the training batch size
    attack_step: float  # forward and backward to the input, eval mode, at the evaluation batch size
    forward: float  # eval-mode forward, at the evaluation batch size
    batch: tuple[int, int]  # (training, evaluation) batch sizes timed
    params: int
    memory: dict[str, int]  # bytes: runtime, data, model (weights, gradients, momentum), activations
    # one APGD iteration in pyautoattack: seconds per point, and seconds per iteration whatever its
    # points (None: `attack_step` and 0); the later attacks iterate on the few points left standing
    autoattack_step: float | None = None
    autoattack_iteration: float = 0.0
    pass_overhead: float = 0.0  # seconds per pass over the coreset beyond its steps: the checkpoint saved

    def regime_step(self, regime: str, attack: AttackConfig) -> float:
        if regime == "standard":
            return self.train_step
        if regime == "pgd_at":
            return self.train_step + attack.steps * self.attack_step
        return 2 * self.train_step + attack.steps * self.attack_step  # trades: natural and adversarial passes


@dataclass
class Estimate:
    device: str
    scoring_s: float = 0.0
    training_s: float = 0.0
    evaluation_s: float = 0.0
    evaluation_bound_s: float = 0.0  # every AutoAttack iteration on every test point
    runs_s: dict[str, float] = field(default_factory=dict)  # each scoring run to make (`run_label`)

    @property
    def total_s(self) -> float:
        return self.scoring_s + self.training_s + self.evaluation_s


@dataclass
class Plan:
    name: str
    cells: int
    axes: dict[str, Counter]  # axis -> label -> cells
    done: int
    scoring_runs: list[tuple[str, tuple[str, ...], str]]  # (label, signals to make or read, ScoringCache.source)
    probes: list[Probe] = field(default_factory=list)
    estimates: list[Estimate] = field(default_factory=list)
    power: list[str] = field(default_factory=list)  # one line per declared comparison (`power_lines`)


def make_plan(spec: GridSpec, results_dir: str | Path | None = None, cache_dir: str | Path | None = None,
              *, probe: bool = True, devices: list[str] | None = None, cpu_kernels: CpuKernels = "native") -> Plan:
    """Count, look up the cache and the records, and (with `probe`) time the grid's models.
    `cpu_kernels` "portable" makes the plan in a process on the portable kernels, as `run
    --cpu-kernels portable` runs: their own cached scoring runs, their own (slower) CPU probe."""
    if needs_portable_process(cpu_kernels, torch.device("cpu")):
        return in_portable_process(make_plan, spec, results_dir, cache_dir, probe=probe, devices=devices,
                                   cpu_kernels=cpu_kernels)
    results = Path(results_dir) if results_dir is not None and Path(results_dir).is_dir() else None
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    work = plan_work(spec, results, cache=cache)
    cells = [s.cell for s in work.states]
    axes = {
        "datasets": Counter(c.dataset.label for c in cells), "architectures": Counter(c.arch.label for c in cells),
        "scoring_architectures": Counter(c.scoring_arch.label for c in cells if c.method.name != FULL_DATA),
        "regimes": Counter(c.regime for c in cells), "methods": Counter(c.method_label for c in cells),
        "fractions": Counter(f"{c.fraction:g}" for c in cells), "seeds": Counter(str(c.seed) for c in cells),
    }  # fmt: skip
    scorer, datasets = work.scorer, work.datasets
    runs = []
    for k in work.runs():
        source = scorer.source(k, datasets[k[0]])
        signals = scorer.needs[k] - (scorer.published_part(k, datasets[k[0]])[0] if source == "to make" else set())
        runs.append((run_label(k), tuple(sorted(signals)), source))
    plan = Plan(spec.name, len(cells), axes, len(work.done), runs, power=power_lines(spec, results))
    if not probe:
        return plan
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    pairs = dict.fromkeys((c.dataset, c.arch) for c in cells) | dict.fromkeys((k[0], k[1]) for k in work.runs())
    shares = observed_shares(spec, results)
    for device in devices:
        dev = torch.device(device)
        with kernels_in_effect():  # oneDNN off on the portable kernels, as in their run
            probes = {(ds, arch): probe_model(spec, datasets[ds], ds, arch, dev) for ds, arch in pairs}
        plan.probes += probes.values()
        plan.estimates.append(estimate(spec, work, probes, dev, shares))
    return plan


def power_lines(spec: GridSpec, results: Path | None) -> list[str]:
    """Per declared comparison and dataset × architecture: the smallest true difference the
    grid's seeds and evaluation images detect at 80 % power (α = 0.05, two-sided), from the
    variance of the grid's records of both rows where the results hold some, from the stated prior
    otherwise; a comparison with fewer than two seeds is flagged as undecidable."""
    if not spec.primary:
        return []
    boards: dict[tuple[str, str, str], Board] = {}
    if results is not None:
        records, _ = scan(results)
        for board in build_boards([s for s in records if s.record.grid.name == spec.name], [], results, facts)[0]:
            boards.setdefault((board.dataset, board.arch, board.regime), board)
    images = spec.evaluation.n_examples
    out = []
    for ds in spec.datasets:
        for arch in spec.architectures:
            for c in spec.primary:
                seeds = len(spec.seeds_of(c.regime))
                board = boards.get((ds.label, arch.label, c.regime))
                sides = comparison_sides(board, c.method, c.against, c.fraction, c.eps) if board else None
                observed = sides is not None and compare(*sides).n >= 2
                delta = power_of(*sides, seeds=seeds, images=images) if observed else prior_detectable(seeds, images)
                where = PRIOR_TEXT
                if observed:
                    basis = "seeds × images" if compare(*sides).basis != SEEDS_ONLY else "seeds only: a lower bound"
                    where = f"the variance of the records' {compare(*sides).n} seeds, {basis}"
                head = f"  {ds.label} × {arch.label}: {c.text()} at ε = {eps_text(c.eps)}: "
                if not math.isfinite(delta):
                    out.append(head + f"UNDECIDABLE: {seeds} seed(s) give no interval; declare at least 2 seeds")
                else:
                    out.append(head + f"detects {delta:.1f} pp or more at 80% power with {seeds} seeds × {images} "
                                      f"images ({where})")
    return out


Shares = dict[str, tuple[float, dict[int, float]]]  # regime -> (clean share, ε's index -> robust share)


def observed_shares(spec: GridSpec, results: Path | None) -> Shares:
    """Per regime, the share of evaluated points classified right and, at each ε (by its index
    in the grid's list), the share of those still robust after AutoAttack's first attack: the
    means of the grid's finished records, else the prior (the same at every ε)."""
    shares: Shares = {r: (PRIOR_CLEAN_SHARE[r], {}) for r in PRIOR_CLEAN_SHARE}
    if results is None or not (results / slug(spec.name)).is_dir():
        return shares
    clean: dict[str, list[float]] = {}
    robust: dict[tuple[str, int], list[float]] = {}
    for _, record, _ in scan(results / slug(spec.name))[0]:
        m = record.metrics
        if record.status != "ok" or m is None or m.autoattack_acc is None or not m.clean_acc:
            continue
        clean.setdefault(record.cell.regime, []).append(m.clean_acc / 100)
        for i, at in enumerate(m.robust or [m]):
            first = next((at.autoattack_per_attack[a] for a in at.autoattack_per_attack if a != "clean"),
                         at.autoattack_acc)  # fmt: skip
            robust.setdefault((record.cell.regime, i), []).append((first or 0.0) / m.clean_acc)
    for regime, values in clean.items():
        by_eps = {i: sum(v) / len(v) for (r, i), v in robust.items() if r == regime}
        shares[regime] = (sum(values) / len(values), by_eps)
    return shares


def estimate(spec: GridSpec, work: Work, probes: dict, device: torch.device, shares: Shares) -> Estimate:
    """Seconds of compute for the work to do, from per-sample probe timings and the same budget
    arithmetic as training (`budget_for`, `TrainingConfig.total_steps`)."""
    est = Estimate(_device_name(device, spec.threads))
    runs = run_seconds(spec, work, probes)
    est.runs_s = {run_label(k): v for k, v in runs.items()}
    est.scoring_s = sum(runs.values())
    for s in work.todo:
        training_s, evaluation_s, bound_s = _cell_parts(spec, work, probes, shares, s.cell)
        est.training_s += training_s
        est.evaluation_s += evaluation_s
        est.evaluation_bound_s += bound_s
    return est


def run_seconds(spec: GridSpec, work: Work, probes: dict) -> dict[tuple, float]:
    """Seconds of each scoring run the cells to do need and the cache does not hold."""
    datasets, scorer, out = work.datasets, work.scorer, {}
    for key in work.missing_runs():
        signals = scorer.needs[key]
        p, n = probes[(key[0], key[1])], datasets[key[0]].x_train.shape[0]
        cfg = scorer.cfg_for(key)  # an adversarial scoring run steps as its regime trains
        per_epoch = n * p.regime_step(cfg.regime, cfg.attack) + ("input_grad_norm_eval" in signals) * n * p.attack_step
        grand = ("grand_all" in signals) * len(spec.scoring.snapshots()) * n * p.train_step * 3
        out[key] = scorer.epochs.get(key, spec.scoring.epochs) * per_epoch + grand
    return out


def _cell_parts(spec: GridSpec, work: Work, probes: dict, shares: Shares, cell) -> tuple[float, float, float]:
    """A cell's training, evaluation and evaluation-bound seconds."""
    p, data = probes[(cell.dataset, cell.arch)], work.datasets[cell.dataset]
    n = data.x_train.shape[0]
    training_s = training_samples(spec.training, cell, n) * p.regime_step(cell.regime, spec.attack)
    training_s += training_passes(spec.training, cell, n) * p.pass_overhead
    n_test, classes = len(data.y_test), data.info.num_classes
    clean, robust = shares[cell.regime]
    prior = PRIOR_ROBUST_SHARE[cell.regime]
    return (training_s, _evaluation_s(spec, p, classes, n_test, clean, lambda i: robust.get(i, prior), data.info.eps),
            _evaluation_s(spec, p, classes, n_test, 1.0, lambda i: 1.0, data.info.eps))


def cell_seconds(work: Work, device: torch.device, results_dir: Path | None = None) -> dict[str, float]:
    """Each cell to do's expected seconds by cell id, for `corebench run --deadline`: training
    and evaluation from a probe on `device`, plus every missing scoring run on the first cell
    (in run order) that reads it."""
    spec = work.spec
    pairs = dict.fromkeys((s.cell.dataset, s.cell.arch) for s in work.todo)
    pairs |= dict.fromkeys((k[0], k[1]) for k in work.runs())
    probes = {(ds, arch): probe_model(spec, work.datasets[ds], ds, arch, device) for ds, arch in pairs}
    runs = run_seconds(spec, work, probes)
    shares = observed_shares(spec, results_dir)
    out, step_s = {}, {}
    for s in work.todo:
        training_s, evaluation_s, _ = _cell_parts(spec, work, probes, shares, s.cell)
        method = work.methods.get(s.cell.method)
        keys = work.scorer.keys(s.cell, method) if method is not None else []
        out[s.cell_id] = training_s + evaluation_s + sum(runs.pop(k, 0.0) for k in keys)
        if method is not None and method.selection_cost == "greedy":  # k-center: one CPU step per kept point
            n = work.datasets[s.cell.dataset].x_train.shape[0]
            if s.cell.scoring_arch not in step_s:
                width = create_model(s.cell.scoring_arch, work.datasets[s.cell.dataset].info).net.num_features
                step_s[s.cell.scoring_arch] = greedy_step_s(n, width)
            out[s.cell_id] += budget_for(s.cell.fraction, n) * step_s[s.cell.scoring_arch]
    return out


def greedy_step_s(n: int, width: int) -> float:
    """Seconds of one greedy k-center step (`methods/kcenter.py`: a matrix-vector product over
    N × D float32 features and a float64 minimum), timed on this machine's CPU."""
    import numpy as np

    points = np.random.default_rng(0).random((n, width), dtype=np.float32)
    sq = np.einsum("ij,ij->i", points, points, dtype=np.float64)
    mins = np.full(n, np.inf)
    start, steps = time.perf_counter(), 0
    while steps < 3 or time.perf_counter() - start < PROBE_SECONDS:
        d = sq - 2.0 * (points @ points[steps % n]).astype(np.float64) + sq[steps % n]
        mins = np.minimum(mins, np.maximum(d, 0.0))
        steps += 1
    return (time.perf_counter() - start) / steps


def _training_steps(training: TrainingConfig, cell, n: int) -> tuple[int, int, int]:
    """The cell's coreset size (`budget_for`), steps per pass and SGD steps (`TrainingConfig.total_steps`)."""
    kept = n if cell.method.name == FULL_DATA else budget_for(cell.fraction, n)
    per_epoch = math.ceil(kept / training.batch_size)
    return kept, per_epoch, training.total_steps(per_epoch, math.ceil(n / training.batch_size))


def training_passes(training: TrainingConfig, cell, n: int) -> int:
    """Passes over the coreset the cell's training starts (each ends with a checkpoint)."""
    _, per_epoch, steps = _training_steps(training, cell, n)
    return math.ceil(steps / per_epoch)


def training_samples(training: TrainingConfig, cell, n: int) -> int:
    """Samples the cell's training passes through: its SGD steps times the batch, the last batch
    of an epoch short."""
    kept, per_epoch, steps = _training_steps(training, cell, n)
    return round(steps * kept / per_epoch)


def _evaluation_s(spec: GridSpec, p: Probe, classes: int, n_test: int, clean_share: float,
                  robust_share: Callable[[int], float], default_eps: float) -> float:
    """Clean once; at each ε PGD-k on every point, AutoAttack's first attack on the points
    classified right, each later one on the `robust_share(ε's index)` of those still standing."""
    ev = spec.evaluation.resolved(default_eps)
    n = min(ev.n_examples, n_test)
    aa = ev.autoattack
    aa_step = p.autoattack_step if p.autoattack_step is not None else p.attack_step
    total = n * p.forward
    for e in range(len(ev.eps)):
        total += n * (ev.pgd_steps * p.attack_step + p.forward)
        for i, name in enumerate(aa.run_list() if aa.enabled else ()):
            points = n * clean_share * (1.0 if i == 0 else robust_share(e))
            iterations = AA_GRADIENT_STEPS[name](aa.apgd_restarts, aa.apgd_iterations, aa.target_classes, classes)
            batches = math.ceil(points / ev.batch_size) if points >= 1 else points  # none left: no iterations
            total += iterations * (points * aa_step + batches * p.autoattack_iteration)
            total += points * AA_FORWARDS.get(name, 0) * p.forward
    return total


def probe_model(spec: GridSpec, data: Dataset, ds: DatasetSpec, arch, device: torch.device) -> Probe:
    """Time a training step, an attack step and a forward pass of `arch` on a batch of `data`."""
    training: TrainingConfig = spec.training
    batch = min(training.batch_size, data.x_train.shape[0])  # per-sample costs depend on the batch size
    eval_batch = min(spec.evaluation.batch_size, spec.evaluation.n_examples, data.x_test.shape[0])
    # the training steps as the cells run them (precision, layout, SGD); never compiled in a probe
    execution = resolve(training.precision, training.channels_last, False, device)
    with torch_threads(spec.threads), seeded(0, device):
        model = create_model(arch, data.info).to(device)
        prepare_model(model, execution)
        optimizer, scheduler = make_optimizer(model, lr=training.lr, momentum=training.momentum,
                                              nesterov=training.nesterov, weight_decay=training.weight_decay,
                                              total_steps=10**6, schedule=training.schedule, sgd=execution.sgd)  # fmt: skip
        # a batch as training draws it: gathered, augmented as the grid says, laid out on the device
        train_data = DeviceData(data.x_train[:batch], data.y_train[:batch], device, info=data.info,
                                augment=training.augment and bool(data.info.augment),
                                channels_last=execution.channels_last)  # fmt: skip
        index, generator = torch.arange(batch, device=device), torch.Generator().manual_seed(0)
        x, y = train_data.batch(index, generator)
        xe, ye = data.x_test[:eval_batch].to(device), data.y_test[:eval_batch].to(device)

        def train_step() -> None:
            model.train()
            xb, yb = train_data.batch(index, generator)
            with autocast(device, execution.precision):
                loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()

        def attack_step() -> None:
            model.eval()
            xa = xe.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xa), ye), xa)

        def forward() -> None:
            model.eval()
            with torch.no_grad():
                model(xe)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        train_s = _timed(train_step, device) / batch
        lay_out_for_evaluation(model, spec.evaluation.channels_last, device)  # the attacks' layout, as evaluate()
        times = [train_s, _timed(attack_step, device) / eval_batch, _timed(forward, device) / eval_batch]
        aa_step = _autoattack_step(model, xe, data.info.eps, spec.evaluation.batch_size, device)
        with tempfile.TemporaryDirectory(prefix="corebench-probe-") as folder:
            checkpoint = Checkpoint(folder, "probe")
            pass_overhead = _timed(lambda: save_run(checkpoint, epoch=1, model=model, optimizer=optimizer,
                                                    scheduler=scheduler, generator=generator, device=device,
                                                    steps=1, final_loss=0.0), device)  # fmt: skip
        params = sum(p.numel() for p in model.parameters())
        state = sum(p.numel() * p.element_size() for p in model.parameters()) * 3  # weights, grads, momentum
        state += sum(b.numel() * b.element_size() for b in model.buffers())
        if device.type == "cuda":
            activations = max(0, torch.cuda.max_memory_allocated(device) - state - x.numel() * x.element_size())
        else:
            activations = _activation_bytes(model, x)
    data_bytes = sum(t.numel() * t.element_size() for t in (data.x_train, data.y_train, data.x_test, data.y_test))
    memory = {"runtime": _rss_bytes(), "data": data_bytes, "model": state, "activations": activations}
    return Probe(ds.label, arch.label, _device_name(device, spec.threads), *times, (batch, eval_batch), params, memory,
                 *aa_step, pass_overhead)


def _autoattack_step(model: torch.nn.Module, x: torch.Tensor, eps: float, batch_size: int,
                     device: torch.device) -> tuple[float | None, float]:
    """One APGD-CE iteration as pyautoattack runs it (through the adapter): (seconds per point,
    seconds per iteration whatever its points). Each is a difference between runs of
    `AA_PROBE_ITERATIONS`, so the fixed checks drop out, on all of `x` and on
    `AA_PROBE_FEW_POINTS` of it. Every point is attacked: each is labelled with the model's own
    prediction. When noise hides the points' share, all of an iteration counts per point; (None,
    0) when it leaves no positive cost at all."""
    from corebench.compute.autoattack_adapter import run_autoattack_per_image
    from corebench.core.spec import AutoAttackConfig

    model.eval()
    with torch.no_grad():
        y = model(x).argmax(1)

    def seconds(iterations: int, points: int) -> float:
        config = AutoAttackConfig(version="custom", attacks=["apgd-ce"], apgd_iterations=iterations, apgd_restarts=1)
        start = time.perf_counter()
        run_autoattack_per_image(model, x[:points], y[:points], eps=eps, autoattack=config, batch_size=batch_size,
                                 device=device)  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    def per_iteration(points: int) -> float:
        few, many = AA_PROBE_ITERATIONS
        return (min(seconds(many, points) for _ in range(2)) - min(seconds(few, points) for _ in range(2))) / (many - few)

    n, small = x.shape[0], min(AA_PROBE_FEW_POINTS, x.shape[0] - 1)
    seconds(AA_PROBE_ITERATIONS[0], n)  # a warm-up
    if small < 1:
        return None, 0.0
    on_all, on_few = per_iteration(n), per_iteration(small)
    per_point = (on_all - on_few) / (n - small)
    if per_point <= 0:  # a small model under load: the points' share is lost in the noise
        per_point = max(on_all, 0.0) / n
    if per_point <= 0:
        return None, 0.0
    return per_point, max(on_few - small * per_point, 0.0)


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds per call: one warm-up, then calls until PROBE_SECONDS have passed (at least two)."""
    fn()
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < PROBE_SECONDS:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        calls += 1
    return (time.perf_counter() - start) / calls


def _activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of every leaf module's output in one train-mode forward (what backward keeps)."""
    total = 0

    def hook(_module, _inputs, output) -> None:
        nonlocal total
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        model.train()
        model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def _rss_bytes() -> int:
    """This process's resident memory (torch, timm and Python loaded): a cell's runtime floor."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _device_name(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({threads} thread{'s' if threads != 1 else ''})"


# --------------------------------------------------------------------------- text


def render(plan: Plan) -> str:
    sources = Counter(source for _, _, source in plan.scoring_runs)
    out = [f"{plan.cells - plan.done} cells to run, {plan.done} done; scoring runs: {sources['published']} published, "
           f"{sources['cached']} cached, {sources['to make']} to make"]
    out.append(f"grid {plan.name}: {plan.cells} cells")
    for axis, counts in plan.axes.items():
        if counts:
            out.append(f"  {axis}: " + ", ".join(f"{label} ({n})" for label, n in counts.items()))
    if plan.scoring_runs:
        out.append("scoring runs the cells to run read (published: shipped beside the grid's records; cached: "
                   "this machine's cache):")
    for label, signals, source in plan.scoring_runs:
        cost = "; ".join(f"≈ {_hours(e.runs_s[label])} on {e.device}" for e in plan.estimates if label in e.runs_s)
        out.append(f"  {label}: {source} ({', '.join(signals)}{'; ' + cost if cost else ''})")
    if plan.power:
        out.append("declared comparisons: the smallest true difference detected at 80% power (α = 0.05, two-sided):")
        out += plan.power
    if plan.probes:
        out.append("throughput probe (this machine; ms per sample):")
        for p in plan.probes:
            aa = (f", AutoAttack iteration {1e3 * p.autoattack_step:.3g} + {1e3 * p.autoattack_iteration:.3g} ms "
                  "per iteration" if p.autoattack_step is not None else "")
            out.append(f"  {p.dataset} × {p.arch} on {p.device}: training step {1e3 * p.train_step:.3g}, "
                       f"attack step {1e3 * p.attack_step:.3g}{aa}, forward {1e3 * p.forward:.3g}, checkpoint "
                       f"{1e3 * p.pass_overhead:.3g} ms per pass "
                       f"(batches {p.batch[0]} and {p.batch[1]}, {p.params:,} parameters)")
        out.append("estimated compute for the cells to run, in one process (divide by the workers or array tasks):")
        for e in plan.estimates:
            out.append(f"  {e.device}: scoring {_hours(e.scoring_s)} + training {_hours(e.training_s)} + "
                       f"evaluation {_hours(e.evaluation_s)} = {_hours(e.total_s)} (evaluation at most "
                       f"{_hours(e.evaluation_bound_s)}, if AutoAttack attacked every point with every attack)")
        out.append("memory per cell (runtime + data + model states + activations of one training batch):")
        for p in plan.probes:
            m = p.memory
            out.append(f"  {p.dataset} × {p.arch} on {p.device}: {_size(sum(m.values()))} (runtime {_size(m['runtime'])}, "
                       f"data {_size(m['data'])}, model {_size(m['model'])}, activations {_size(m['activations'])})")
    return "\n".join(out)


def _hours(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
