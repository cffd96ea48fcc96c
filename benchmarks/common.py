"""Data shared by the benchmarks: CIFAR-10-shaped images, real when the shared subset is there."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from corebench.compute.data import Dataset, DatasetInfo

REPO = Path(__file__).resolve().parents[1]


def shared_file(name: str) -> Path | None:
    """A file of the shared data folder beside the clone or at /work/shared (as the tests look)."""
    for folder in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if (folder / name).is_file():
            return folder / name
    return None


CIFAR_INFO = DatasetInfo("cifar10_subset", 10, (3, 32, 32), (0.4941, 0.4851, 0.4504), (0.2448, 0.2422, 0.2606), 8 / 255)


def random_cifar(n: int, n_test: int = 100, seed: int = 0) -> Dataset:
    """`n` random 32x32 RGB images (uint8 levels / 255, as CIFAR-10 loads) of 10 classes."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.empty((n, 3, 32, 32), dtype=torch.float32)
    for start in range(0, n, 4096):  # in chunks: no transient copy of the whole set
        stop = min(n, start + 4096)
        x[start:stop] = torch.randint(0, 256, (stop - start, 3, 32, 32), generator=gen, dtype=torch.uint8).float().div_(255)
    y = torch.arange(n) % 10
    return Dataset(dataclasses.replace(CIFAR_INFO, name="random32"), x, y, x[:n_test].clone(), y[:n_test].clone())


def cifar_subset(n: int = 2000) -> Dataset:
    """The first `n` images of the shared CIFAR-10 subset (test split: its first 100), or `n`
    random images of the same shape when the shared folder is absent."""
    shared = shared_file("cifar10_test_subset.npz")
    if shared is None:
        return random_cifar(n)
    with np.load(shared, allow_pickle=False) as f:
        x = torch.from_numpy(f["x"][:n].transpose(0, 3, 1, 2).copy()).float() / 255
        y = torch.from_numpy(f["y"][:n].astype(np.int64))
    return Dataset(CIFAR_INFO, x, y, x[:100], y[:100])


@dataclasses.dataclass
class Timed:
    """Runs of one callable: CPU seconds of this process (the judged figure: with one torch
    thread it is the work done, whatever else the shared cores run) and wall seconds."""

    cpu: list[float]
    wall: list[float]
    result: object  # what the last run returned

    @property
    def cpu_s(self) -> float:
        return min(self.cpu)

    @property
    def wall_s(self) -> float:
        return min(self.wall)


def alternate(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timed]:
    """Run each callable `repeats` times, taking turns (so a burst of load hits both)."""
    timed = {k: Timed([], [], None) for k in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            c0, w0 = time.process_time(), time.perf_counter()
            timed[name].result = run()
            timed[name].cpu.append(time.process_time() - c0)
            timed[name].wall.append(time.perf_counter() - w0)
    return timed


def paired_ratio(ours: Timed, base: Timed) -> float:
    """The median over rounds of ours / baseline in CPU seconds, each round's two runs taken
    back to back: on a shared machine one run's time swings by several per cent, a round's
    ratio much less, and the median ignores a round a burst of load hit."""
    return statistics.median(a / b for a, b in zip(ours.cpu, base.cpu, strict=True))
