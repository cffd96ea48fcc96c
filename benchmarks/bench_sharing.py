"""Every score-based method from ONE scoring run against one proxy training per method (DeepCore).

DeepCore (PatrickZH/DeepCore) trains a proxy model inside each method (`EarlyTrain.run`), so
comparing M methods trains M proxies; GraNd even retrains it `repeat` times. corebench trains
one proxy per dataset × scoring architecture × seed and records the union of the signals every
method declares; each method then selects from those signals. Both sides here end with every
score-based method's selection at one fraction:

- baseline: for each method, a scoring run recording only that method's signals, then its
  selection (what DeepCore does, each proxy trained for the same epochs);
- corebench: one scoring run recording the union, then every method's selection.

Expected speed-up: at least 4x (reported; a lower figure is a defect to look into). The
methods are every method `methods: all` brings in (`registry.all_methods`), with default options,
that needs a signal (random does not; issue 22's methods read adversarial runs or long windows
that one standard run does not share). Times are CPU seconds of this process (one torch thread). The scoring settings are the
defaults (10 epochs, snapshots at initialisation and after epoch 1): the speed-up depends on
the ratio of training to the fixed-cost snapshot passes (full-parameter GraNd above all), not
on N, so N is kept small: 400 CIFAR-10 images from the shared subset (random images of that
shape without it), the quickstart's narrow ResNet-10t. Measured figures: benchmarks/README.md.
"""

from __future__ import annotations

import time

import torch

from corebench.compute.scoring import run_scoring
from corebench.core.spec import ArchSpec, ScoringConfig
from corebench.methods import SelectionContext, create_method, run_selection
from corebench.methods.registry import all_methods

from common import cifar_subset

EXPECTED = 4.0
ARCH = ArchSpec("resnet10t", {"channels": [8, 16, 32, 64], "stem_width": 8})
FRACTION = 0.3


def _cpu_time(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def main(n: int = 400, epochs: int = ScoringConfig().epochs) -> dict:
    torch.set_num_threads(1)
    data = cifar_subset(n)
    cfg = ScoringConfig(epochs=epochs, batch_size=128)
    methods = {name: create_method(name) for name in all_methods()}
    methods = {k: m for k, m in methods.items() if m.required_signals() and m.scoring_runs() == 1}
    labels = data.y_train.numpy()

    def score(signals: set[str]) -> dict:
        return run_scoring(data, ARCH, cfg, 0, signals, device=torch.device("cpu"), progress=False)

    def select(name: str, signals: dict) -> None:
        ctx = SelectionContext(labels=labels, num_classes=data.info.num_classes, runs=(signals,), seed=0,
                               dataset="cifar10", scoring_epochs=cfg.epochs)  # CIFAR-10's images, CCS's β table
        run_selection(methods[name], ctx, FRACTION)

    union = set().union(*(m.required_signals() for m in methods.values()))
    warm = cifar_subset(64)  # warm-up: the first run of a process pays one-off start-up costs
    run_scoring(warm, ARCH, ScoringConfig(epochs=1), 0, union, device=torch.device("cpu"), progress=False)
    per_method: dict[str, float] = {}
    for name, method in methods.items():
        signals, seconds = _cpu_time(lambda m=method: score(set(m.required_signals())))
        _, selecting = _cpu_time(lambda n_=name, s=signals: select(n_, s))
        per_method[name] = seconds + selecting
    shared, shared_s = _cpu_time(lambda: score(union))
    for name in methods:
        _, selecting = _cpu_time(lambda n_=name: select(n_, shared))
        shared_s += selecting

    baseline = sum(per_method.values())
    speedup = baseline / shared_s
    print(f"{len(methods)} score-based methods, {data.info.name}, N={n}, {epochs} scoring epochs, "
          f"{ARCH.name} {dict(ARCH.kwargs)}, selection at {FRACTION:g}, 1 thread (CPU s)")
    for name, seconds in per_method.items():
        print(f"  own proxy run: {name:<12} {seconds:6.2f}  signals {', '.join(sorted(methods[name].required_signals()))}")
    print(f"  one proxy run per method (baseline, DeepCore)  {baseline:6.2f}")
    print(f"  one shared run, {len(union)} signals, every selection  {shared_s:6.2f}  speed-up {speedup:.2f}x "
          f"(expected >= {EXPECTED:g}x)")
    return {"methods": sorted(methods), "per_method_cpu_s": per_method, "baseline_cpu_s": baseline,
            "shared_cpu_s": shared_s, "speedup": speedup, "expected": EXPECTED, "ok": speedup >= EXPECTED}


if __name__ == "__main__":
    main()
