"""Shared fixtures. Keep this file small: fixtures used by one test file live in that file."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_file(name: str) -> Path | None:
    """A file of the shared data folder beside the clone (CI) or at /work/shared (dev), if any.

    Shared data is read in place and never copied into the repository.
    """
    for folder in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if (folder / name).is_file():
            return folder / name
    return None


def pytest_collection_modifyitems(config, items):
    """Every `gpu`-marked test is skipped where no CUDA device is visible, whatever its file
    says: `make test-gpu` (pytest -m gpu) on a CPU then skips them all, as scripts/gpu_run.sh
    --smoke runs it, instead of failing on the first `.to("cuda")`."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none visible here)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture
def tiny_grid() -> dict:
    """The smallest valid grid mapping (digits, resnet18, one method, one fraction)."""
    return {
        "name": "tiny",
        "datasets": ["digits"],
        "architectures": ["resnet18"],
        "fractions": [0.5],
        "methods": ["random"],
        "regimes": ["standard"],
        "seeds": [0],
    }


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Every test trains tiny models in one thread: they gain nothing from intra-op threads, and
    on a shared 2-core machine contended threads slow them down 10-40× (a run in the pipeline
    tests went from seconds to minutes while another process held one core)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    """The digits dataset, loaded once per test module (modules may slice their copy)."""
    from corebench.compute.datasets import load_dataset
    from corebench.core.spec import DatasetSpec

    return load_dataset(DatasetSpec("digits"))
