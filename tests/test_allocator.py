"""The C allocator keeps freed memory for reuse (`corebench.compute.allocator`).

With glibc's defaults a block over 32 MB is mapped afresh at each allocation and its pages are
faulted in again; kept, later allocations reuse the pages of the first ones. Each case runs
in its own process, since the setting is process-wide.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from corebench.compute.allocator import keep_freed_memory

CHILD = """
import json, resource, sys, torch
from corebench.compute.allocator import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
def churn(times):
    for _ in range(times):
        block = torch.ones(64 * 2**20 // 4)  # 64 MB, written (as activations are)
        del block
churn(5)  # the first blocks fault their pages in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn(40)
print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, "took": took}))
"""


def _faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_large_block_is_reused_without_faulting_its_pages_in_again():
    default, kept = _faults("default"), _faults("keep")
    if not kept["took"]:
        pytest.skip("this C library is not glibc (mallopt refused)")
    pages = 64 * 2**20 // 4096
    assert default["faults"] >= 30 * pages  # mapped afresh each time
    assert kept["faults"] <= 8 * pages  # reused (a few blocks fault again now and then: 0-4 of 40 seen)


def test_keep_freed_memory_says_whether_it_took():
    assert keep_freed_memory() in (True, False)
