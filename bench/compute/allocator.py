"""The C allocator of a corebench process: freed memory is kept for reuse, not handed back.

glibc serves a block over its mmap threshold (32 MB at most) with a fresh mapping and unmaps it on
free, and hands the top of its heap back to the kernel once 128 KB of it is free: the next block of
that size page-faults all its memory in again. A scoring run's eval-mode passes allocate
activations over 32 MB (512 images through a ResNet-18 of width 16), and on some VMs page faults
are costly: `benchmarks/bench_scoring.py` measured 1.66× plain training on an AMD EPYC VM with
glibc's defaults, 1.20× with blocks kept (plain training itself 13 % faster), the signals identical
byte for byte; the peak memory of a 50,000-image scoring run was +316 MiB over its dataset against
+422 MiB (benchmarks/README.md). Allocation changes no number: torch aligns every CPU tensor to 64
bytes wherever it lies.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30  # free heap top kept up to 1 GiB


def keep_freed_memory() -> bool:
    """Tell glibc to serve large blocks from its heap and keep what is freed (mallopt); whether
    it took. A no-op (False) where the C library is not glibc (macOS, musl, Windows)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols, libc's among them (no ldconfig run)
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    if not done:
        log.debug("mallopt refused; the C allocator keeps its defaults")
    return done
