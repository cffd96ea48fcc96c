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
