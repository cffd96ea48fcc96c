"""The package's shape: import layers without cycles, one installed name, a current record schema."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from check_layers import check  # noqa: E402

CONTRACTS = {  # pyproject's [tool.importlinter] contracts, by the words their names end with
    "packages": "corebench packages",
    "independence": "compute, methods and boards do not import one another",
    "layers": "corebench layers",
    "torch-free": "without torch)",
}


def test_the_layer_contracts_are_kept():
    done = check(REPO / "bench", REPO / "methods")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(CONTRACTS)} kept, 0 broken" in done.stdout


@pytest.mark.parametrize(("module", "imports", "broken"), [
    ("compute/data.py", "import corebench.cells.grid", {"packages", "independence", "layers"}),  # data parsing grids (grid reads methods)
    ("core/spec.py", "import corebench.store.results", {"packages", "layers"}),  # the leaf importing upward
    ("methods/base.py", "import torch", {"torch-free"}),  # the method kit needing torch
    ("boards/board.py", "import corebench.methods", {"packages", "independence"}),  # a board building methods
    ("compute/scoring.py", "import corebench.boards.stats", {"packages", "independence"}),  # compute reading boards
])  # fmt: skip
def test_an_import_against_the_layering_is_caught(tmp_path, module, imports, broken):
    bench, methods = tmp_path / "bench", tmp_path / "methods"
    shutil.copytree(REPO / "bench", bench)
    shutil.copytree(REPO / "methods", methods)
    target = methods / module.split("/", 1)[1] if module.startswith("methods/") else bench / module
    target.write_text(target.read_text() + f"\n{imports}  # noqa\n")
    done = check(bench, methods)
    kept = len(CONTRACTS) - len(broken)
    assert done.returncode != 0 and f"Contracts: {kept} kept, {len(broken)} broken." in done.stdout, done.stdout
    report = " ".join(done.stdout.split())  # import-linter wraps long contract names
    for key, name in CONTRACTS.items():
        assert f"{name} {'BROKEN' if key in broken else 'KEPT'}" in report, (key, report)
    source = module.removeprefix("methods/").removesuffix(".py").replace("/", ".")
    assert f"{source} -> " in report, report


def test_only_corebench_is_installed(tmp_path):
    """A wheel holds `corebench` (bench/) and `corebench.methods` (methods/), nothing named
    `bench` or `methods` that could collide in site-packages."""
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in ("bench", "methods"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(src)], check=True, capture_output=True)  # fmt: skip
    (wheel,) = tmp_path.glob("corebench-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"corebench"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "corebench/methods/easycore.py" in names and "corebench/drivers/runner.py" in names


def test_old_import_names_are_gone(tmp_path):
    ok = "import corebench, corebench.methods; print(sorted(corebench.methods.list_methods())[:2])"
    out = subprocess.run([sys.executable, "-c", ok], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['aum', 'ccs']"
    for old in ("methods", "bench"):
        gone = subprocess.run([sys.executable, "-c", f"import {old}"], cwd=tmp_path, capture_output=True, text=True)
        assert gone.returncode == 1 and f"No module named '{old}'" in gone.stderr


def test_the_record_json_schema_in_docs_is_current():
    from corebench.store.record import schema

    written = json.loads((REPO / "docs" / "record.schema.json").read_text())
    assert written == schema(), "regenerate: python -m corebench.store.record > docs/record.schema.json"
