"""Portable CPU kernels (`corebench.compute.kernels`): the same numbers whatever the CPU offers.

CI runs on more than one kind of CPU, and the native kernels round by the CPU's features (an AMD
EPYC re-derived a committed quickstart record 6 points from the Intel Xeon that made it). Here
the CPU's features are hidden from ATen, MKL and oneDNN by their own environment variables,
which is what another CPU looks like to them: a few training steps give other weights natively
(so the check has power on this machine), the same weights on the portable kernels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from corebench.cells.grid import load_grid
from corebench.cli import main
from corebench.compute.kernels import (
    PORTABLE_ENV,
    PORTABLE_TAG,
    in_portable_process,
    portable_active,
)
from corebench.drivers.plan import make_plan

from helpers import write_fast_grid

TESTS = Path(__file__).resolve().parent
# what a CPU without AVX looks like to each library (ATen's is overridden by the portable mode)
NO_AVX = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"}
LIBRARY_ISA = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")


def weights_digest() -> dict:
    """Five SGD steps of a small conv net (conv, batch norm, linear) on seeded data, under the
    kernels of this process: a digest of the weights, and whether the kernels were portable."""
    import hashlib

    import torch

    from corebench.compute.kernels import kernels_in_effect

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 32, 3, stride=2), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    x, y = torch.randn(32, 3, 16, 16), torch.randint(0, 10, (32,))
    net(x)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    with kernels_in_effect():
        onednn = torch.backends.mkldnn.enabled
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in net.parameters())).hexdigest()
    return {"digest": digest, "portable": portable_active(), "onednn": onednn}


def _digest_in_process(env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in LIBRARY_ISA}
    code = f"import json, sys; sys.path.insert(0, {str(TESTS)!r}); from test_kernels import weights_digest; " \
           "print(json.dumps(weights_digest()))"
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_portable_kernels_give_the_same_weights_whatever_the_cpu_offers():
    native, native_no_avx = _digest_in_process({}), _digest_in_process(NO_AVX)
    assert not native["portable"] and native["onednn"]
    assert native["digest"] != native_no_avx["digest"]  # the CPU's features change native numbers here
    portable, portable_no_avx = _digest_in_process(PORTABLE_ENV), _digest_in_process({**NO_AVX, **PORTABLE_ENV})
    assert portable["portable"] and not portable["onednn"]
    assert portable["digest"] == portable_no_avx["digest"]
    assert portable["digest"] != native["digest"]


def test_in_portable_process_runs_a_function_on_the_portable_kernels():
    assert not portable_active()
    assert in_portable_process(weights_digest) == _digest_in_process(PORTABLE_ENV)
    assert not portable_active() and all(k not in os.environ for k in PORTABLE_ENV)  # this process unchanged


def test_a_portable_grid_says_so_in_its_records_and_verifies_exactly(tmp_path, capsys):
    """`run --cpu-kernels portable --workers 2` from a native process: every record names the portable
    kernels (no CPU digest: any x86-64 CPU re-derives it), and `verify` re-derives it on them
    exactly; its scoring run is cached under its own key, apart from the native one, and `plan`
    finds it only when asked about the portable kernels."""
    grid = write_fast_grid(tmp_path, full_data_reference=False,
                           evaluation={"n_examples": 16, "pgd_steps": 1, "autoattack": {"enabled": False}})
    common = ["--cache", str(tmp_path / "cache"), "--no-progress"]
    assert main(["run", str(grid), "--results", str(tmp_path / "portable"), "--cpu-kernels", "portable",
                 "--workers", "2", *common]) == 0  # its own workers start from the portable process
    records = sorted((tmp_path / "portable").rglob("seed*.json"))
    assert records and all(json.loads(p.read_text())["device"].endswith(f"; {PORTABLE_TAG})") for p in records)
    spec, cache = load_grid(grid), tmp_path / "cache"  # plan looks the run up under the kernels it is asked for
    assert [r[2] for r in make_plan(spec, None, cache, probe=False, cpu_kernels="portable").scoring_runs] == ["cached"]
    assert [r[2] for r in make_plan(spec, None, cache, probe=False).scoring_runs] == ["to make"]
    assert main(["run", str(grid), "--results", str(tmp_path / "native"), *common]) == 0
    native = sorted((tmp_path / "native").rglob("seed*.json"))
    assert "kernels portable" not in json.loads(native[0].read_text())["device"]
    runs = {json.loads(p.read_text())["cost"]["scoring_runs"][0]["key"]
            for p in records + native if json.loads(p.read_text())["cost"]["scoring_runs"]}  # fmt: skip
    assert len(runs) == 2  # one scoring run per kernel set, never shared
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "portable"), "--sample", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "verified 2 records: 2 matched, 0 mismatched" in out and "within tolerance" not in out


def test_a_bad_cpu_kernels_choice_is_one_line_and_exit_2(tmp_path, capsys):
    grid = write_fast_grid(tmp_path)
    with pytest.raises(SystemExit) as caught:
        main(["run", str(grid), "--results", str(tmp_path / "r"), "--cpu-kernels", "scalar"])
    assert caught.value.code == 2 and "argument --cpu-kernels: invalid choice: 'scalar'" in capsys.readouterr().err
    assert main(["run", str(grid), "--results", str(tmp_path / "r"), "--cpu-kernels", "portable",
                 "--executor", "slurm"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cpu-kernels: 'portable' is not allowed; allowed: native with --executor slurm" in err
    assert not (tmp_path / "r").exists()


def test_the_committed_quickstart_records_are_made_on_the_portable_kernels():
    """CI's `make verify` re-derives 3 sampled quickstart records exactly on whatever CPU it runs:
    a record made on some CPU's native kernels would fail it on another kind (CONTRIBUTING, 4)."""
    from corebench.compute.kernels import made_portable
    from corebench.drivers.cell import recorded_kernels

    records = sorted((TESTS.parent / "results" / "quickstart").rglob("seed*.json"))
    assert len(records) == 58
    native = [str(p) for p in records if not made_portable(recorded_kernels(json.loads(p.read_text())["device"]))]
    assert native == []
