"""One method's mistake never touches another: end to end on digits with a tiny grid, every
kind of broken plug-in fails its own cells with a message naming it, and the grid goes on."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

import corebench.signals as signals
from corebench.cells.grid import parse_grid
from corebench.cli import main
from corebench.core.errors import ConfigError
from corebench.methods import CoresetMethod, ScoreBasedMethod
from corebench.methods.base import Direction
from corebench.methods.registry import _REGISTRY, register_method
from corebench.signals import Signal, register_signal

GRID = {
    "name": "iso",
    "datasets": ["digits"],
    "architectures": [{"name": "resnet18", "id": "r18w4", "kwargs": {"channels": [4, 8, 16, 32]}}],
    "fractions": [0.3],
    "regimes": ["standard"],
    "seeds": [0],
    "full_data_reference": False,
    "scoring": {"epochs": 1, "batch_size": 128, "snapshot_epochs": [0, 1]},
    "training": {"epochs": 1, "batch_size": 256},
    "evaluation": {"n_examples": 20, "pgd_steps": 1, "autoattack": {"enabled": False}},
}


@dataclass(frozen=True)
class _P:
    direction: Direction = "hardest"
    class_balanced: bool = False


class Raises(CoresetMethod):
    def select(self, ctx, fraction):
        raise ZeroDivisionError("division by zero in my plug-in")


class Floats(CoresetMethod):
    def select(self, ctx, fraction):
        return np.linspace(0, ctx.n - 1, ctx.budget(fraction))


class Duplicates(CoresetMethod):
    def select(self, ctx, fraction):
        return np.zeros(ctx.budget(fraction), dtype=np.int64)


class WrongCount(CoresetMethod):
    def select(self, ctx, fraction):
        return np.arange(ctx.budget(fraction) + 3)


class ReadsUndeclared(ScoreBasedMethod):
    Params = _P
    signals = ("loss",)

    def hardness(self, ctx):
        return ctx.signals["el2n"].mean(axis=0)  # el2n is recorded for `el2n_reader`, not for this method


class DeclaresUnknown(ScoreBasedMethod):
    Params = _P
    signals = ("entropy_of_everything",)

    def hardness(self, ctx):
        return ctx.signals["entropy_of_everything"]


class UsesBrokenSignal(ScoreBasedMethod):
    Params = _P
    signals = ("broken_hook_signal",)

    def hardness(self, ctx):
        return ctx.signals["broken_hook_signal"][-1]


class ReadsEl2n(ScoreBasedMethod):
    Params = _P
    signals = ("el2n",)

    def hardness(self, ctx):
        return ctx.signals["el2n"].mean(axis=0)


BROKEN = {  # name -> (class, what the failed record's error says after "method '<name>'")
    "p_raises": (Raises, "raised ZeroDivisionError: division by zero in my plug-in"),
    "p_floats": (Floats, "returned dtype float64, expected integer indices"),
    "p_duplicates": (Duplicates, "duplicate indices"),
    "p_wrong_count": (WrongCount, "returned 407 indices, expected exactly 404"),
    "p_undeclared": (ReadsUndeclared, "reads signal 'el2n', which it did not declare (declared: loss)"),
    "p_broken_signal": (UsesBrokenSignal, "signal 'broken_hook_signal' was not recorded: its compute hook"),
}


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """The broken methods, a healthy one reading el2n, and a signal whose hook raises."""
    (tmp_path / "iso_hooks.py").write_text("def boom(model, x, y):\n    raise RuntimeError('hook exploded')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = dict(signals._REGISTRY)
    register_signal(Signal("broken_hook_signal", ("K", "N"), "snapshot", "float32", "x", compute="iso_hooks:boom",
                           distribution="iso-plugin"))
    added = {**{n: c for n, (c, _) in BROKEN.items()}, "p_unknown": DeclaresUnknown, "el2n_reader": ReadsEl2n}
    for name, cls in added.items():
        register_method(name)(cls)
    yield tmp_path
    for name in added:
        _REGISTRY.pop(name, None)
    signals._REGISTRY.clear()
    signals._REGISTRY.update(before)


def _run(tmp_path: Path, methods: list) -> tuple[int, dict[str, dict]]:
    grid = tmp_path / "iso.yaml"
    grid.write_text(yaml.safe_dump({**GRID, "methods": methods}))
    code = main(["run", str(grid), "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "cache"), "--no-progress"])
    records = {}
    for path in (tmp_path / "res").rglob("seed0.json"):
        rec = json.loads(path.read_text())
        records[rec["cell"]["method"]] = rec
    return code, records


def test_each_broken_plugin_fails_only_its_own_cell(plugins, capsys):
    code, records = _run(plugins, [*BROKEN, "el2n_reader", "random"])
    assert code == 1
    for name, (_, what) in BROKEN.items():
        rec = records[name]
        assert rec["status"] == "failed" and rec["metrics"] is None, name
        assert rec["error"].startswith(f"MethodError: method {name!r}") and what in rec["error"], rec["error"]
        assert "\n" not in rec["error"]
    assert records["el2n_reader"]["status"] == "ok" and records["random"]["status"] == "ok"
    assert f"{len(BROKEN)} failed" in capsys.readouterr().out


def test_a_method_declaring_an_unknown_signal_is_refused_when_named(plugins, capsys):
    grid = plugins / "iso.yaml"
    grid.write_text(yaml.safe_dump({**GRID, "methods": ["random", "p_unknown"]}))
    code = main(["run", str(grid), "--results", str(plugins / "res"), "--cache", str(plugins / "c"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "methods: method 'p_unknown' declares signal 'entropy_of_everything', which no scoring run records" in err
    assert not (plugins / "c").exists() and not list(plugins.rglob("seed*.json"))  # before any training


def test_a_method_declaring_a_signal_whose_hook_cannot_import_is_refused_when_named(plugins):
    register_signal(Signal("unimportable", ("N", "C"), "final", "float16", "x", compute="no_such_module:f",
                           distribution="iso-plugin"))

    class UsesUnimportable(DeclaresUnknown):
        signals = ("unimportable",)

    register_method("p_unimportable")(UsesUnimportable)
    try:
        with pytest.raises(ConfigError, match=r"method 'p_unimportable' declares plug-in signal 'unimportable', whose compute 'no_such_module:f' cannot be imported"):
            parse_grid({**GRID, "methods": ["p_unimportable"]})
    finally:
        _REGISTRY.pop("p_unimportable")


CCS_BETA = {"name": "ccs", "hard_cutoff": 0.1, "id": "ccs"}  # digits has no CCS β table: `all` needs one


def test_all_keeps_a_method_with_an_unknown_signal_and_only_its_cells_fail(plugins, caplog):
    with caplog.at_level(logging.WARNING, logger="corebench.cells.grid"):
        spec = parse_grid({**GRID, "methods": ["all", CCS_BETA]})
    assert "p_unknown" in {m.name for m in spec.methods}
    assert "methods: all: method 'p_unknown' declares signal 'entropy_of_everything'" in caplog.text
    code, records = _run(plugins, ["all", CCS_BETA])
    unknown = records["p_unknown"]
    assert unknown["status"] == "failed"
    assert "method 'p_unknown' declares signal 'entropy_of_everything', which no scoring run records" in unknown["error"]
    for name in ("random", "easycore", "el2n_reader", "uncertainty", "kcenter"):
        assert records[name]["status"] == "ok", (name, records[name]["error"])


def test_all_combines_with_named_variants():
    spec = parse_grid({**GRID, "methods": ["all", CCS_BETA, {"name": "easycore", "gradient_pass": "eval",
                                                             "id": "easycore_eval"}, "easycore"]})
    labels = [m.label for m in spec.methods]
    assert labels.count("easycore") == 1 and labels[-1] == "easycore_eval"
    assert {"random", "uncertainty", "kcenter"} <= set(labels)
    replaced = parse_grid({**GRID, "methods": ["all", CCS_BETA, {"name": "easycore", "gradient_pass": "eval",
                                                                 "id": "easycore"}]})
    assert [m.params for m in replaced.methods if m.label == "easycore"] == [{"gradient_pass": "eval"}]
    with pytest.raises(ConfigError, match="methods: 'easycore' is not allowed; allowed: each method entry once"):
        parse_grid({**GRID, "methods": ["easycore", {"name": "easycore", "gradient_pass": "eval", "id": "easycore"}]})
