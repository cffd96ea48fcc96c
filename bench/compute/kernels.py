"""Which CPU kernels a process computes with: the CPU's own (`native`), or `portable` ones that
give the same numbers on every x86-64 CPU, so a record can be re-derived exactly on any machine.

ATen, oneDNN and MKL pick their kernels from the CPU's features, and kernels round differently:
natively a CPU run is bit-identical only on a CPU with the same features (CI's AMD EPYC
re-derived the quickstart's TRADES random 10 % cell at 52 % clean accuracy where the Intel Xeon
that made it had 58 %). The portable kernels are ATen's scalar code
(`ATEN_CPU_CAPABILITY=default`), MKL in its conditional-numerical-reproducibility mode
(`MKL_CBWR=COMPATIBLE`) and no oneDNN (`torch.backends.mkldnn` off: its blocking follows the
CPU's ISA and caches). Measured (docs/PROTOCOL.md, "Portable CPU kernels"): the same numbers on
an Intel Xeon (AVX-512) and an AMD EPYC, and with AVX-512, AVX2 or FMA hidden from the
libraries; 1.9× the native time on the quickstart (its TRADES cells 2.4×).

The two environment variables are read once, when torch first dispatches, so a process cannot
switch: `in_portable_process` runs a function in a fresh process started with them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
# what a record's `device` says after the ';' (`cell.cpu_kernels`): the same numbers on every CPU
# of this architecture (measured on x86-64 only)
PORTABLE_PREFIX = "kernels portable"
PORTABLE_TAG = f"{PORTABLE_PREFIX} {platform.machine()}"

T = TypeVar("T")


def portable_active() -> bool:
    """Whether this process computes with the portable kernels (started with `PORTABLE_ENV`)."""
    return (all(os.environ.get(k) == v for k, v in PORTABLE_ENV.items())
            and torch.backends.cpu.get_cpu_capability() == "DEFAULT")  # fmt: skip


@contextmanager
def kernels_in_effect() -> Iterator[None]:
    """A context for a step that computes numbers: oneDNN off while the process is portable."""
    if not portable_active():
        yield
        return
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def made_portable(kernels: str) -> bool:
    """Whether a record's kernels (`cell.recorded_kernels`) are the portable ones, of any architecture."""
    return kernels.startswith(PORTABLE_PREFIX)


def needs_portable_process(kernels: str, device: torch.device) -> bool:
    """Whether work asked to run on `kernels` must move to a fresh process to do so."""
    return kernels == "portable" and device.type == "cpu" and not portable_active()


@contextmanager
def portable_environment() -> Iterator[None]:
    """`PORTABLE_ENV` in os.environ for the block: processes spawned in it start portable."""
    before = {k: os.environ.get(k) for k in PORTABLE_ENV}
    os.environ.update(PORTABLE_ENV)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def in_portable_process(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a fresh (spawned) process on the portable kernels: its result, or
    its exception raised here. The process is not a daemon, so `fn` may start workers of its own
    (`run_grid --workers N`), which inherit the kernels; it logs at this process's level."""
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=_child_init,
                             initargs=(logging.getLogger().level,)) as pool, portable_environment():
        future = pool.submit(fn, *args, **kwargs)  # the process starts here, with the variables set
    return future.result()


def _child_init(level: int) -> None:
    from corebench.compute.allocator import keep_freed_memory

    keep_freed_memory()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
