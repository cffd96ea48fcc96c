"""Peak memory of a scoring run at N = 50,000 CIFAR-sized samples: at most 1 GiB above the dataset.

A scoring run keeps per-sample signals of every epoch for the whole train set; this checks that
nothing in it grows with N beyond those small arrays (no copy of the dataset, no [N, ...]
activations, no per-sample gradients held for more than one chunk). It runs in a fresh
process (so its peak is its own) and measures the resident set size (RSS: Python objects and
every torch CPU allocation alike), sampled every 2 ms by a thread, and the kernel's peak
(`ru_maxrss`):

- before: RSS with the libraries a scoring run loads already loaded (torch, timm, torch.func:
  code, the same at every N; about 220 MB of it is loaded by the run itself otherwise) and the dataset loaded (50,000 × 3 × 32 × 32 random images
  as float32 in [0, 1], 614 MB, built in chunks so no transient copy inflates the peak);
- peak: the larger of the sampled peak and `ru_maxrss` during `get_signals` (the scoring
  run, its cache write and the fingerprint of the data);
- judged: peak − before ≤ 1 GiB.

The signals are those of every registered method with its default options (the grid's `all`).
It is memory that is measured, not speed: the model is a tiny ResNet-10t (4-8-16-32 channels)
trained one epoch, with one snapshot (at initialisation: a snapshot pass over N holds the same
memory however many are taken, their rows are allocated up front), so the run takes a few
minutes of one core. Per-sample gradients for
full-parameter GraNd are made in chunks of at most 2.5e8 floats (`signal_passes.grand_all`), so
that pass alone may hold up to 1 GB for a model of ResNet-18's size (GPU memory on a GPU);
with the tiny model here it holds far less. Measured figures: benchmarks/README.md.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

GIB = 1024**3
TARGET_BYTES = GIB
N = 50_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


class PeakSampler(threading.Thread):
    """Samples this process's RSS every `interval` seconds until stopped; keeps the peak."""

    def __init__(self, interval: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self._halt = interval, rss_bytes(), threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        self.peak = max(self.peak, rss_bytes())
        return self.peak


def child(n: int, epochs: int) -> dict:
    """The measurement, in this (fresh) process."""
    import torch

    from corebench.compute.allocator import keep_freed_memory
    from corebench.compute.models import create_model
    from corebench.compute.scoring import get_signals
    from corebench.core.spec import ArchSpec, DatasetSpec, ScoringConfig
    from corebench.methods import create_method, list_methods

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import random_cifar

    keep_freed_memory()  # as every corebench process (the CLI, its workers) runs
    torch.set_num_threads(1)
    arch = ArchSpec("resnet10t", {"channels": [4, 8, 16, 32], "stem_width": 4})
    data = random_cifar(16)
    import torch.func  # noqa: F401  the libraries a scoring run loads: code, not data; loaded before the baseline

    create_model(arch, data.info)
    start_rss = rss_bytes()
    data = random_cifar(n)
    dataset_bytes = sum(t.numel() * t.element_size() for t in (data.x_train, data.y_train, data.x_test, data.y_test))
    signals = set().union(*(create_method(m).required_signals() for m in list_methods()))
    before = rss_bytes()
    max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampler = PeakSampler()
    sampler.start()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        result = get_signals(data, DatasetSpec("random32"), arch, ScoringConfig(epochs=epochs, snapshot_epochs=(0,)), 0, signals,
                             cache_dir=Path(cache), device=torch.device("cpu"), progress=False)
    seconds = time.perf_counter() - t0
    sampled = sampler.stop()
    max_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = max(sampled, max_after) if max_after > max_before else sampled
    signal_bytes = sum(a.nbytes for a in result.signals.values())
    return {"n": n, "epochs": epochs, "signals": sorted(signals), "start_rss": start_rss, "dataset_bytes": dataset_bytes,
            "before": before, "peak": peak, "sampled_peak": sampled, "ru_maxrss": max_after,
            "signal_bytes": signal_bytes, "seconds": seconds}


def main(n: int = N, epochs: int = 1) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(n), str(epochs)], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory benchmark child failed: {out.stderr.strip().splitlines()[-1:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    above = r["peak"] - r["before"]
    mib = 1024**2
    print(f"scoring run, N={r['n']:,} CIFAR-sized random images, {r['epochs']} epoch, tiny ResNet-10t, default signals "
          f"({', '.join(r['signals'])}); {r['seconds']:.0f} s")
    print(f"  process with its libraries loaded     {r['start_rss'] / mib:8.0f} MiB RSS")
    print(f"  + the dataset ({r['dataset_bytes'] / mib:.0f} MiB of tensors)     {r['before'] / mib:8.0f} MiB RSS (baseline)")
    print(f"  peak during the scoring run           {r['peak'] / mib:8.0f} MiB RSS  (+{above / mib:.0f} MiB; "
          f"target <= +{TARGET_BYTES / mib:.0f} MiB; the signals themselves {r['signal_bytes'] / mib:.1f} MiB)")
    return {**r, "above_bytes": above, "target_bytes": TARGET_BYTES, "ratio_to_target": above / TARGET_BYTES,
            "ok": above <= TARGET_BYTES}


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        main()
