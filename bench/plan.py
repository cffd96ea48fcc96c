"""`corebench plan GRID`: what a grid will cost before it runs (a dry run: nothing is trained).

It counts the cells per axis and the scoring runs, says which scoring runs the cache already
holds (reused, not made again) and which cells already have a valid record, then times a few
training and attack steps of every architecture on every dataset of the grid, on this
machine's CPU (with the grid's `threads`) and on its GPU when one is present, and turns the
timings into compute estimates and the memory one cell needs.

The estimates are per-sample costs times the samples a run touches:
- training: epochs × kept samples × (one training step; PGD-AT adds `attack.steps` attack
  steps, TRADES as many plus a second forward-backward);
- scoring: scoring epochs × N training steps (plus the eval-mode input-gradient pass and
  full-parameter GraNd when the grid's methods need them);
- evaluation: clean + PGD-k + AutoAttack's iterations (pyautoattack's defaults), the first
  attack on every test point and each later one on the points still robust (5 % after standard
  training, 50 % after PGD-AT or TRADES); the upper bound attacks every point with every attack.
The memory is the Python/torch runtime (this process), the dataset, the model's weights,
gradients and momentum, and the activations of one training batch (measured on the GPU,
summed from every layer's output on the CPU).
"""

from __future__ import annotations

import os
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from corebench.data import Dataset
from corebench.fastpath import autocast, prepare_model, resolve
from corebench.models import create_model
from corebench.optim import make_optimizer, torch_threads
from corebench.results import DONE
from corebench.runner import ScoringCache, cell_states, default_cache_dir, methods_of, prepare
from corebench.scoring import seeded
from corebench.spec import FULL_DATA, AttackConfig, DatasetSpec, GridSpec, TrainingConfig

# gradient steps per test example for each AutoAttack attack (pyautoattack's defaults: 100
# iterations, 9 target classes, 5,000 Square queries, which are forward passes only)
AA_GRADIENT_STEPS: dict[str, Callable[[int], int]] = {
    "apgd-ce": lambda c: 100, "apgd-dlr": lambda c: 100, "apgd-t": lambda c: 100 * min(9, c - 1),
    "fab": lambda c: 100 * c, "fab-t": lambda c: 200 * min(9, c - 1), "square": lambda c: 0,
}  # fmt: skip
AA_FORWARDS = {"square": 5000}
# the share of test points still robust after AutoAttack's first attack, by regime: each later
# attack only runs on these (typical of the literature: standard training keeps almost none)
ROBUST_SHARE = {"standard": 0.05, "pgd_at": 0.5, "trades": 0.5}
PROBE_SECONDS = 0.3  # time each measured step at least this long (after a warm-up step)


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

    @property
    def total_s(self) -> float:
        return self.scoring_s + self.training_s + self.evaluation_s


@dataclass
class Plan:
    name: str
    cells: int
    axes: dict[str, Counter]  # axis -> label -> cells
    done: int
    scoring_runs: list[tuple[str, tuple[str, ...], bool]]  # (label, signals, cached)
    probes: list[Probe] = field(default_factory=list)
    estimates: list[Estimate] = field(default_factory=list)


def make_plan(spec: GridSpec, results_dir: str | Path | None = None, cache_dir: str | Path | None = None,
              *, probe: bool = True, devices: list[str] | None = None) -> Plan:
    """Count, look up the cache and the records, and (with `probe`) time the grid's models."""
    cells = spec.cells()
    datasets = prepare(spec, [c.dataset for c in cells])
    methods = methods_of(cells)
    todo = cells
    if results_dir is not None and Path(results_dir).is_dir():
        states = cell_states(spec, cells, datasets, methods, Path(results_dir))
        todo = [cell for cell, _, state, _ in states if state != DONE]
    axes = {
        "datasets": Counter(c.dataset.label for c in cells), "architectures": Counter(c.arch.label for c in cells),
        "scoring_architectures": Counter(c.scoring_arch.label for c in cells if c.method.name != FULL_DATA),
        "regimes": Counter(c.regime for c in cells), "methods": Counter(c.method_label for c in cells),
        "fractions": Counter(f"{c.fraction:g}" for c in cells), "seeds": Counter(str(c.seed) for c in cells),
    }  # fmt: skip
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    scorer = ScoringCache(spec.scoring, cache / "scoring", torch.device("cpu"), False, threads=spec.threads)
    for cell in cells:
        if cell.method.name != FULL_DATA:
            scorer.request(cell, methods[cell.method])
    runs = [(f"{k[0].label} × {k[1].label} × seed {k[2]}", tuple(sorted(sig)), scorer.cached(k, datasets[k[0]]))
            for k, sig in scorer.needs.items() if sig]  # fmt: skip
    plan = Plan(spec.name, len(cells), axes, len(cells) - len(todo), runs)
    if not probe:
        return plan
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    pairs = dict.fromkeys((c.dataset, c.arch) for c in cells) | dict.fromkeys(
        (k[0], k[1]) for k, sig in scorer.needs.items() if sig)
    for device in devices:
        dev = torch.device(device)
        probes = {(ds, arch): probe_model(spec, datasets[ds], ds, arch, dev) for ds, arch in pairs}
        plan.probes += probes.values()
        plan.estimates.append(_estimate(spec, todo, scorer, methods, datasets, probes, dev))
    return plan


def _estimate(spec: GridSpec, todo: list, scorer: ScoringCache, methods: dict, datasets: dict[DatasetSpec, Dataset],
              probes: dict, device: torch.device) -> Estimate:
    est = Estimate(_device_name(device, spec.threads))
    for key, signals in scorer.needs.items():
        if signals and not scorer.cached(key, datasets[key[0]]):
            p, n = probes[(key[0], key[1])], datasets[key[0]].x_train.shape[0]
            per_epoch = n * p.train_step + ("input_grad_norm_eval" in signals) * n * p.attack_step
            grand = ("grand_all" in signals) * len(spec.scoring.snapshots()) * n * p.train_step * 3
            est.scoring_s += scorer.epochs.get(key, spec.scoring.epochs) * per_epoch + grand
    classes_of = {ds: d.info.num_classes for ds, d in datasets.items()}
    for cell in todo:
        p = probes[(cell.dataset, cell.arch)]
        n = datasets[cell.dataset].x_train.shape[0]
        kept = n if cell.method.name == FULL_DATA else max(1, round(cell.fraction * n))
        est.training_s += spec.training.epochs * kept * p.regime_step(cell.regime, spec.attack)
        n_test, classes = len(datasets[cell.dataset].y_test), classes_of[cell.dataset]
        est.evaluation_s += _evaluation_s(spec, p, classes, n_test, ROBUST_SHARE[cell.regime])
        est.evaluation_bound_s += _evaluation_s(spec, p, classes, n_test, 1.0)
    return est


def _evaluation_s(spec: GridSpec, p: Probe, classes: int, n_test: int, robust_share: float) -> float:
    """Clean and PGD-k on every test point, AutoAttack's first attack too, later attacks on the
    `robust_share` still standing."""
    ev = spec.evaluation
    steps, forwards = float(ev.pgd_steps), 1.0
    if ev.autoattack.enabled:
        for i, name in enumerate(ev.autoattack.run_list()):
            share = 1.0 if i == 0 else robust_share
            steps += share * AA_GRADIENT_STEPS[name](classes)
            forwards += share * AA_FORWARDS.get(name, 0)
    return min(ev.n_examples, n_test) * (steps * p.attack_step + forwards * p.forward)


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
        optimizer, _ = make_optimizer(model, lr=training.lr, momentum=training.momentum, nesterov=training.nesterov,
                                      weight_decay=training.weight_decay, total_steps=10, sgd=execution.sgd)  # fmt: skip
        x, y = data.x_train[:batch].to(device), data.y_train[:batch].to(device)
        xe, ye = data.x_test[:eval_batch].to(device), data.y_test[:eval_batch].to(device)

        def train_step() -> None:
            model.train()
            with autocast(device, execution.precision):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

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
        times = [_timed(train_step, device) / batch, _timed(attack_step, device) / eval_batch,
                 _timed(forward, device) / eval_batch]  # fmt: skip
        params = sum(p.numel() for p in model.parameters())
        state = sum(p.numel() * p.element_size() for p in model.parameters()) * 3  # weights, grads, momentum
        state += sum(b.numel() * b.element_size() for b in model.buffers())
        if device.type == "cuda":
            activations = max(0, torch.cuda.max_memory_allocated(device) - state - x.numel() * x.element_size())
        else:
            activations = _activation_bytes(model, x)
    data_bytes = sum(t.numel() * t.element_size() for t in (data.x_train, data.y_train, data.x_test, data.y_test))
    memory = {"runtime": _rss_bytes(), "data": data_bytes, "model": state, "activations": activations}
    return Probe(ds.label, arch.label, _device_name(device, spec.threads), *times, (batch, eval_batch), params, memory)


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
    out = [f"grid {plan.name}: {plan.cells} cells, {plan.done} already done, {plan.cells - plan.done} to run"]
    for axis, counts in plan.axes.items():
        if counts:
            out.append(f"  {axis}: " + ", ".join(f"{label} ({n})" for label, n in counts.items()))
    cached = sum(c for _, _, c in plan.scoring_runs)
    out.append(f"scoring runs: {len(plan.scoring_runs)}, {cached} cached (reused), {len(plan.scoring_runs) - cached} to make")
    for label, signals, is_cached in plan.scoring_runs:
        out.append(f"  {label}: {'cached, reused' if is_cached else 'to make'} ({', '.join(signals)})")
    if plan.probes:
        out.append("throughput probe (this machine; ms per sample):")
        for p in plan.probes:
            out.append(f"  {p.dataset} × {p.arch} on {p.device}: training step {1e3 * p.train_step:.3g}, "
                       f"attack step {1e3 * p.attack_step:.3g}, forward {1e3 * p.forward:.3g} "
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
