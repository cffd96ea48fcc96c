"""The outside-package example (examples/corebench-example-plugin): built and installed the way
CONTRIBUTING says, checked by the kit without torch, and its method's row on a board, with the
package that provided it in the records and the board's provenance footer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import corebench.methods.registry as registry
import corebench.signals as signals
from corebench.methods.registry import method_source

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "corebench-example-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example built from a copy (nothing left in the checkout) and installed into a folder,
    offline: `pip install --no-build-isolation --no-deps --target`."""
    tmp = tmp_path_factory.mktemp("example")
    src = tmp / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index", "-q",
                    "--disable-pip-version-check", "--target", str(target), str(src)],
                   check=True, capture_output=True)  # fmt: skip
    assert (target / "corebench_example" / "flip_gap.py").is_file()
    return target


def _python(target: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_the_kit_checks_the_installed_plugin_without_torch(installed):
    code = (
        "import sys\n"
        "from corebench.methods.testing import check_method\n"
        "from corebench.methods import list_methods\n"
        "assert 'flip_gap' in list_methods()\n"
        "for params in ({}, {'direction': 'easiest'}, {'class_balanced': True}):\n"
        "    bad = [r for r in check_method('flip_gap', **params) if not r.passed]\n"
        "    assert not bad, bad\n"
        "print('torch' in sys.modules)\n"
    )
    done = _python(installed, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_cli_lists_and_checks_the_plugin(installed):
    env = {**os.environ, "PYTHONPATH": str(installed)}
    cli = [sys.executable, "-m", "corebench.cli"]
    listed = subprocess.run([*cli, "methods", "flip*"], capture_output=True, text=True, env=env, check=True).stdout
    assert "flip_gap" in listed and "corebench-example-plugin 0.1.0" in listed and "flip_loss_eval" in listed
    checked = subprocess.run([*cli, "check-method", "flip_gap"], capture_output=True, text=True, env=env)
    assert checked.returncode == 0 and "flip_gap: 13 of 13 checks passed" in checked.stdout, checked.stdout


@pytest.fixture
def plugin_loaded(installed, monkeypatch):
    """The installed example on sys.path, both registries reloading their entry points."""
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_FAILED", {})
    monkeypatch.setattr(signals, "_entry_points_loaded", False)
    methods_before, signals_before = dict(registry._REGISTRY), dict(signals._REGISTRY)
    yield installed
    registry._REGISTRY.clear()
    registry._REGISTRY.update(methods_before)
    signals._REGISTRY.clear()
    signals._REGISTRY.update(signals_before)
    registry._EP_DISTRIBUTIONS.pop("corebench_example.flip_gap", None)
    for mod in [m for m in sys.modules if m.startswith("corebench_example")]:
        sys.modules.pop(mod)


def test_the_plugins_row_reaches_a_board_with_its_package(plugin_loaded, tmp_path):
    from corebench.cli import main

    grid = yaml.safe_load((EXAMPLE / "grid.yaml").read_text())
    grid.update(scoring={"epochs": 1, "snapshot_epochs": [0, 1]}, training={"epochs": 1, "batch_size": 256}, attack={"steps": 1},
                evaluation={"n_examples": 20, "pgd_steps": 1, "autoattack": {"enabled": False}},
                full_data_reference=False)  # the example's grid, shrunk
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert main(["run", str(path), "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "c"), "--no-progress"]) == 0
    rec = json.loads(next((tmp_path / "res").rglob("flip_gap/f0.3/seed0.json")).read_text())
    assert rec["status"] == "ok"
    code = rec["method_source"].pop("code")  # the plug-in's source hash, part of its cells' ids
    assert isinstance(code, str) and len(code) == 16
    assert rec["method_source"] == {"module": "corebench_example.flip_gap", "distribution": "corebench-example-plugin",
                                    "version": "0.1.0", "editable": False, "git_commit": None}
    builtin = json.loads(next((tmp_path / "res").rglob("random/f0.3/seed0.json")).read_text())["method_source"]
    assert builtin["distribution"] == "corebench" and builtin["module"] == "corebench.methods.random_sampling"
    assert main(["leaderboard", str(tmp_path / "res"), "--out", str(tmp_path / "boards")]) == 0
    board = next((tmp_path / "boards").rglob("*__trades.md")).read_text()
    assert "| flip_gap" in board or "`flip_gap`" in board
    assert "  - `corebench-example-plugin` 0.1.0 — plug-in: `flip_gap`" in board


def test_an_editable_install_is_recorded_with_its_commit(tmp_path, monkeypatch):
    """PEP 610: an editable install's direct_url.json points at its source tree; the record
    names the commit checked out there (here: a fresh git repository)."""
    src = tmp_path / "checkout"
    src.mkdir()
    (src / "edit_demo_method.py").write_text(
        "import numpy as np\nfrom corebench.methods import CoresetMethod, register_method\n\n"
        "@register_method('edit_demo')\nclass EditDemo(CoresetMethod):\n"
        "    def select(self, ctx, fraction):\n        return np.arange(ctx.budget(fraction))\n"
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(src)]
    subprocess.run([*git[:5], "init", "-q", str(src)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    site = tmp_path / "site"
    info = site / "edit_demo-2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edit-demo\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[corebench.methods]\nedit_demo = edit_demo_method\n")
    (info / "direct_url.json").write_text(json.dumps({"url": src.as_uri(), "dir_info": {"editable": True}}))
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_FAILED", {})
    try:
        assert "edit_demo" in registry.list_methods()
        source = method_source("edit_demo")
        assert source.pop("code") == registry.plugin_fingerprint("edit_demo")
        assert source == {"module": "edit_demo_method", "distribution": "edit-demo", "version": "2.0",
                          "editable": True, "git_commit": sha[:12]}
    finally:
        registry._REGISTRY.pop("edit_demo", None)
        registry._EP_DISTRIBUTIONS.pop("edit_demo_method", None)
        sys.modules.pop("edit_demo_method", None)
