"""The parts of the one GPU run (issue 21) a CPU can check: the whole of `scripts/gpu_run.sh
--smoke`, the packing (`gpu_pack.sh`, `slim_wheel.py`), the JPEG copy's cutting and decoding,
the sizing's arithmetic, and that `pytest -m gpu` skips rather than fails without CUDA."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, shared_data_file

SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(REPO / "benchmarks"))


def jpeg_copy(path: Path, n_train: int = 100, n_test: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """A small file in cifar10_jpeg.npz's layout (rows round-robin over 10 classes); the pixels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    arrays, pixels = {"classes": np.array([f"class{c}" for c in range(10)])}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        blobs, images = [], []
        for _ in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
            blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
            images.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
        arrays[f"{split}_jpeg"] = np.concatenate(blobs)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([b.size for b in blobs])]).astype(np.int64)
        arrays[f"{split}_y"] = np.arange(n, dtype=np.int64) % 10
        arrays[f"{split}_class_rank"] = np.arange(n, dtype=np.int64) // 10
        pixels[split] = np.stack(images)
    np.savez(path, **arrays)
    return pixels


def test_jpeg_copy_is_cut_to_a_prefix_in_its_layout_and_decoded_exactly(tmp_path):
    import cifar10_jpeg_to_npz as tool

    pixels = jpeg_copy(tmp_path / "src.npz", n_train=30, n_test=20)
    assert tool.main([str(tmp_path / "src.npz"), str(tmp_path / "cut.npz"), "--test", "10", "--keep-jpeg"]) == 0
    with np.load(tmp_path / "cut.npz") as cut:
        assert len(cut["train_y"]) == 30 and len(cut["test_y"]) == 10 and len(cut["test_offsets"]) == 11
    assert tool.main([str(tmp_path / "cut.npz"), str(tmp_path / "dec.npz"), "--train", "20", "--workers", "2"]) == 0
    with np.load(tmp_path / "dec.npz") as dec:
        assert np.array_equal(dec["x_train"], pixels["train"][:20])
        assert np.array_equal(dec["x_test"], pixels["test"][:10])
        assert dec["y_train"].tolist() == [i % 10 for i in range(20)]
    with pytest.raises(SystemExit, match="--train 31 is not allowed"):
        tool.main([str(tmp_path / "src.npz"), str(tmp_path / "x.npz"), "--train", "31"])


@pytest.mark.skipif(shared_data_file("cifar10_test_subset.npz") is None or shared_data_file("cifar10_jpeg.npz") is None,
                    reason="the shared CIFAR-10 files are not here")
def test_the_decoded_test_split_is_the_shared_subset():
    import cifar10_jpeg_to_npz as tool

    arrays = tool.read(shared_data_file("cifar10_jpeg.npz"), {"train": 10, "test": 50})
    with np.load(shared_data_file("cifar10_test_subset.npz")) as subset:
        assert np.array_equal(tool.decode(arrays, "test"), subset["x"][:50])


def test_slim_wheel_drops_a_folder_and_its_record_lines(tmp_path):
    import slim_wheel

    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/__init__.py", "x = 1\n")
        z.writestr("pkg/examples/model.pt", b"\0" * 1000)
        z.writestr("pkg-1.0.dist-info/RECORD", "pkg/__init__.py,sha256=a,6\npkg/examples/model.pt,sha256=b,1000\n")
    assert slim_wheel.slim(wheel, "pkg/examples/") == 1
    with zipfile.ZipFile(wheel) as z:
        assert sorted(z.namelist()) == ["pkg-1.0.dist-info/RECORD", "pkg/__init__.py"]
        assert z.read("pkg-1.0.dist-info/RECORD").decode() == "pkg/__init__.py,sha256=a,6\n"


@pytest.mark.skipif(shared_data_file("cifar10_jpeg.npz") is None, reason="the shared CIFAR-10 JPEG copy is not here")
def test_pack_stays_under_the_64_mib_that_travel(tmp_path):
    carry = tmp_path / "carry"
    env = {**os.environ, "GPU_CARRY": str(carry), "CIFAR10_JPEG": str(shared_data_file("cifar10_jpeg.npz")),
           "PYTHON": sys.executable}
    out = subprocess.run(["bash", str(SCRIPTS / "gpu_pack.sh"), "--no-wheels"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    total = int(re.search(r"= (\d+) KiB of 65536 KiB", out.stdout)[1])
    # room left for the wheels: 2,806 KiB measured (pydantic_core 2.2 MB of it; 2026-12-05, a full
    # pack travelled 64,274 KiB of 65,536), so 3 MiB
    assert total < 64 * 1024 - 3 * 1024
    assert (carry / "COMMIT").read_text().strip()


def test_bad_arguments_are_one_line_and_exit_2():
    for args, field in ((["--budget", "soon"], "--budget 'soon'"), (["--budget", "60"], "--budget '60'"),
                        (["--fast"], "argument '--fast'")):
        out = subprocess.run(["bash", str(SCRIPTS / "gpu_run.sh"), *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and field in out.stderr and "allowed" in out.stderr
    out = subprocess.run(["bash", str(SCRIPTS / "gpu_pack.sh"), "--wheels"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "argument '--wheels' is not allowed" in out.stderr


def test_sizing_counts_every_cell_of_one_seed_and_says_it_is_an_estimate(tmp_path):
    import gpu_sizing

    from corebench.cells.grid import load_grid

    spec = load_grid(REPO / "configs" / "cifar10_gpu.yaml")
    sizing = gpu_sizing.size(spec, 100_000, n_train=5_000, n_test=1_000, measure=False)
    assert sizing.source.startswith("ESTIMATE") and "not measured" in sizing.source
    t = sizing.seed_s
    assert t["total"] == pytest.approx(t["scoring"] + t["training"] + t["evaluation"] + t["selection"])
    assert min(t.values()) > 0
    fit = sizing.seeds_fit
    assert fit == int((100_000 - gpu_sizing.FIXED_S) // t["total"])
    half = gpu_sizing.size(spec, 100_000, n_train=2_500, n_test=1_000, measure=False)
    assert half.seed_s["training"] == pytest.approx(t["training"] / 2, rel=0.02)  # training scales with N


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU's behaviour")
def test_gpu_marked_tests_skip_without_cuda():
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                          "tests/test_resume.py"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "1 skipped" in out.stdout and "failed" not in out.stdout


def test_the_whole_gpu_run_script_passes_with_smoke_data(tmp_path):
    """What CI runs of issue 21's script: every step, on stand-in data, on the CPU."""
    jpeg_copy(tmp_path / "cifar10_jpeg.npz")
    out_dir = tmp_path / "out"
    env = {**os.environ, "OUT": str(out_dir), "CIFAR10_JPEG": str(tmp_path / "cifar10_jpeg.npz"),
           "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    run = subprocess.run(["bash", str(SCRIPTS / "gpu_run.sh"), "--smoke"], env=env, capture_output=True, text=True,
                         timeout=1800, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:]
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == ["checks.log", "env.txt", "gpu_bench.json", "results.tar.gz", "run.log", "sizing.json"]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", f) and (out_dir / f).stat().st_size < 16 * 2**20 for f in files)
    log = (out_dir / "run.log").read_text()
    assert "imports ok" in log and ", done:" in log and "FAILED" not in log
    checks = (out_dir / "checks.log").read_text()
    assert "test-gpu exit status: 0" in checks and "benchmarks-gpu exit status: 0" in checks
    assert "corebench run exit status: 0" in log
    assert json.loads((out_dir / "sizing.json").read_text())["source"].startswith("ESTIMATE")
    with tarfile.open(out_dir / "results.tar.gz") as tar:
        names = tar.getnames()
        records = [json.load(tar.extractfile(n)) for n in names if n.endswith(".json") and "/seed" in n]
    assert any(n.startswith("leaderboards/") and n.endswith(".md") for n in names)
    assert records and all(r["status"] == "ok" for r in records)
    assert {r["cell"]["regime"] for r in records} == {"standard", "trades"}
