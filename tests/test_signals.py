"""The signal registry: declarations, the docs' tables, plug-in signals end to end through a
scoring run, and the new built-in signals against a direct computation."""

from __future__ import annotations

import logging
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import corebench.signals as signals
from corebench.compute.scoring import get_signals, run_scoring
from corebench.core.errors import ConfigError
from corebench.core.spec import ArchSpec, DatasetSpec, ScoringConfig
from corebench.methods import list_methods
from corebench.signals import (
    BUILTINS,
    TAKEN,
    Signal,
    get_signal,
    list_signals,
    markdown_table,
    register_signal,
)

from helpers import final_scoring_model

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
TINY = ArchSpec("resnet18", {"channels": [4, 8, 16, 32]})


@pytest.fixture(scope="module")
def small(digits):
    from dataclasses import replace

    return replace(digits, x_train=digits.x_train[:150], y_train=digits.y_train[:150])


@pytest.fixture
def clean_registry(monkeypatch, tmp_path):
    """Plug-in signals registered in a test are removed after it; tmp_path is importable."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = dict(signals._REGISTRY)
    yield tmp_path
    signals._REGISTRY.clear()
    signals._REGISTRY.update(before)
    for mod in [m for m in sys.modules if m.startswith("sigplug_")]:
        sys.modules.pop(mod)


# --------------------------------------------------------------------------- declarations


def test_every_builtin_is_declared_consistently():
    for sig in BUILTINS:
        assert sig.shape in TAKEN[sig.taken], sig.name
        assert get_signal(sig.name) is not None and sig.distribution == "corebench"
    assert [s.name for s in BUILTINS] == list_signals()[: len(BUILTINS)]
    assert {"loss_eval", "logits_eval", "logits_final"} <= set(list_signals())


def test_memory_per_sample_follows_shape_and_dtype():
    assert get_signal("logits_final").bytes_per_sample(classes=100) == 200  # float16 [N, C]
    assert get_signal("logits_eval").bytes_per_sample(snapshots=2, classes=10) == 40
    assert get_signal("loss").bytes_per_sample(epochs=10) == 40
    assert get_signal("correct").bytes_per_sample(epochs=10) == 10
    assert get_signal("logits_eval").memory_text == "2·K·C B"


@pytest.mark.parametrize("doc", ["docs/DESIGN.md", "CONTRIBUTING.md"])
def test_the_docs_signal_tables_are_the_registry(doc):
    text = (REPO / doc).read_text()
    found = re.search(r"<!-- signals:begin[^>]*-->\n(.*?)\n<!-- signals:end -->", text, re.S)
    assert found, f"{doc}: no generated signal table"
    assert found.group(1) == markdown_table(), f"regenerate the table in {doc}: python -m corebench.signals"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Bad-Name"}, "signal name 'Bad-Name' is not allowed"),
        ({"name": "snapshot_epochs"}, "is reserved"),
        ({"taken": "sometimes"}, "taken 'sometimes' is not allowed; allowed: train_pass, eval_pass, snapshot, final"),
        ({"shape": ("K", "N", "D")}, "shape ['K', 'N', 'D'] is not allowed for taken 'snapshot'"),
        ({"dtype": "int8"}, "dtype 'int8' is not allowed"),
        ({"compute": None}, "compute None is not allowed; allowed: 'module:function'"),
        ({"name": "loss"}, "signal name 'loss' is already registered by corebench"),
    ],
)
def test_a_bad_declaration_is_one_line(clean_registry, changes, message):
    base = dict(name="plug_x", shape=("K", "N"), taken="snapshot", dtype="float32", what="x",
                compute="sigplug_x:hook", distribution="my-plugin")
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        register_signal(Signal(**{**base, **changes}))
    assert "\n" not in str(err.value)


def test_unknown_signal_names_every_known_one():
    with pytest.raises(ConfigError) as err:
        get_signal("entropy")
    assert str(err.value).startswith("signals: 'entropy' is not recorded by the scoring run; allowed: input_grad_norm")


# --------------------------------------------------------------------------- plug-in signals

HOOKS = textwrap.dedent(
    '''
    import torch
    import torch.nn.functional as F

    def flip_loss(model, x, y):
        with torch.no_grad():
            return F.cross_entropy(model(torch.flip(x, dims=[-1])), y, reduction="none")

    def flip_logits(model, x, y):
        with torch.no_grad():
            return model(torch.flip(x, dims=[-1]))

    def flat(model, x, y):
        return torch.zeros(x.shape[0])

    def train_conf(logits, y, losses):
        return logits.softmax(1).max(1).values

    def broken(model, x, y):
        raise RuntimeError("hook exploded")

    def wrong_shape(logits, y, losses):
        return torch.zeros(3)
    '''
)


def _declare(tmp_path: Path, name: str, shape, taken: str, hook: str) -> None:
    (tmp_path / "sigplug_hooks.py").write_text(HOOKS)
    register_signal(Signal(name, shape, taken, "float32", "test", compute=f"sigplug_hooks:{hook}", distribution="sigplug"))


def test_plugin_signals_are_recorded_at_their_time(clean_registry, small):
    _declare(clean_registry, "flip_loss_snap", ("K", "N"), "snapshot", "flip_loss")
    _declare(clean_registry, "flip_logits_final", ("N", "C"), "final", "flip_logits")
    _declare(clean_registry, "flip_loss_epoch", ("E", "N"), "eval_pass", "flip_loss")
    _declare(clean_registry, "train_conf", ("E", "N"), "train_pass", "train_conf")
    cfg = ScoringConfig(epochs=2, batch_size=64, snapshot_epochs=(0, 2))
    failed: dict[str, str] = {}
    wanted = {"flip_loss_snap", "flip_loss_epoch", "train_conf", "flip_logits_final", "loss_eval"}
    out = run_scoring(small, TINY, cfg, 0, wanted, device=CPU, progress=False, failed=failed)
    assert failed == {}
    n = small.x_train.shape[0]
    assert out["flip_loss_snap"].shape == (2, n) and out["flip_loss_epoch"].shape == (2, n)
    assert out["train_conf"].shape == (2, n) and ((out["train_conf"] > 0) & (out["train_conf"] <= 1)).all()
    np.testing.assert_allclose(out["flip_loss_epoch"][1], out["flip_loss_snap"][1], rtol=1e-5)  # same model state
    assert not np.allclose(out["flip_loss_snap"], out["loss_eval"])  # a mirrored digit is another input
    assert out["flip_logits_final"].shape == (n, 10) and out["flip_logits_final"].dtype == np.float32
    last = F.cross_entropy(torch.from_numpy(out["flip_logits_final"]), small.y_train, reduction="none").numpy()
    np.testing.assert_allclose(last, out["flip_loss_snap"][1], rtol=1e-4, atol=1e-5)  # the final model, mirrored
    assert set(out) == wanted | {"snapshot_epochs"}


def test_a_failing_hook_drops_only_its_own_signal(clean_registry, small, caplog):
    _declare(clean_registry, "boom", ("K", "N"), "snapshot", "broken")
    _declare(clean_registry, "bad_shape", ("E", "N"), "train_pass", "wrong_shape")
    _declare(clean_registry, "flat_final", ("N", "D"), "final", "flat")  # [B], declared [B, D]
    register_signal(Signal("no_module", ("N", "C"), "final", "float16", "x", compute="sigplug_missing:f", distribution="sigplug"))
    cfg = ScoringConfig(epochs=1, batch_size=64, snapshot_epochs=(1,))
    failed: dict[str, str] = {}
    with caplog.at_level(logging.ERROR):
        out = run_scoring(small, TINY, cfg, 0, {"boom", "bad_shape", "no_module", "flat_final", "loss"}, device=CPU,
                          progress=False, failed=failed)
    assert set(failed) == {"boom", "bad_shape", "no_module", "flat_final"}
    assert "hook exploded" in failed["boom"] and "cannot be imported" in failed["no_module"]
    assert "shape (150,), declared [N, D]" in failed["flat_final"]
    assert "loss" in out and not set(failed) & set(out)
    assert "plug-in signal 'boom' is not recorded" in caplog.text


def test_the_scoring_run_records_exactly_what_is_asked(small, tmp_path):
    cfg = ScoringConfig(epochs=1, batch_size=64)
    res = get_signals(small, DatasetSpec("digits"), TINY, cfg, 0, {"logits_final"}, cache_dir=tmp_path,
                      device=CPU, progress=False)
    assert set(res.signals) == {"logits_final"}
    res = get_signals(small, DatasetSpec("digits"), TINY, cfg, 0, {"logits_eval"}, cache_dir=tmp_path / "other",
                      device=CPU, progress=False)
    assert set(res.signals) == {"logits_eval", "snapshot_epochs"}


def test_entry_point_signals_load_and_a_broken_one_is_logged(clean_registry, monkeypatch, caplog):
    root = clean_registry
    (root / "sigplug_decl.py").write_text(
        "from corebench.signals import Signal\n"
        "GOOD = Signal('ep_signal', ('K', 'N'), 'snapshot', 'float32', 'x', compute='sigplug_hooks:flip_loss')\n"
        "BAD = Signal('ep_bad', ('N',), 'final', 'float32', 'x', compute='sigplug_hooks:flip_loss')\n"
    )
    info = root / "sigplug_demo-0.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sigplug-demo\nVersion: 0.2\n")
    (info / "entry_points.txt").write_text("[corebench.signals]\nep_signal = sigplug_decl:GOOD\nep_bad = sigplug_decl:BAD\n")
    monkeypatch.setattr(signals, "_entry_points_loaded", False)
    with caplog.at_level(logging.WARNING, logger="corebench.signals"):
        names = list_signals()
    assert "ep_signal" in names and "ep_bad" not in names
    assert get_signal("ep_signal").distribution == "sigplug-demo"
    assert "could not load signal plug-in ep_bad" in caplog.text and "shape ['N']" in caplog.text
    assert "easycore" in list_methods()  # the method registry goes on


# --------------------------------------------------------------------------- new built-in signals


def test_eval_loss_and_logits_match_a_direct_computation(small):
    cfg = ScoringConfig(epochs=1, batch_size=64, snapshot_epochs=(0, 1))
    wanted = {"loss_eval", "logits_eval", "logits_final", "el2n_eval", "features"}
    out = run_scoring(small, TINY, cfg, 0, wanted, device=CPU, progress=False)
    model = final_scoring_model(small, TINY, cfg, 0)
    with torch.no_grad():
        logits = model(small.x_train)
    assert out["logits_final"].dtype == np.float16 and out["logits_final"].shape == (150, 10)
    assert out["logits_eval"].dtype == np.float16 and out["logits_eval"].shape == (2, 150, 10)
    np.testing.assert_allclose(out["logits_final"], logits.numpy(), rtol=2e-3, atol=2e-3)
    np.testing.assert_array_equal(out["logits_eval"][1], out["logits_final"])  # snapshot at the last epoch
    loss = F.cross_entropy(logits, small.y_train, reduction="none").numpy()
    np.testing.assert_allclose(out["loss_eval"][1], loss, rtol=1e-4, atol=1e-5)
    probs = torch.softmax(torch.from_numpy(out["logits_final"].astype(np.float32)), 1)
    el2n = (probs - F.one_hot(small.y_train, 10)).norm(dim=1).numpy()
    np.testing.assert_allclose(out["el2n_eval"][1], el2n, atol=3e-3)  # the same outputs, read in float16


def test_parsing_a_grid_checks_plugin_hooks_without_the_scoring_module():
    """The hook import check lives in `signals`: a grid is parsed without importing scoring."""
    import subprocess
    import sys

    code = ("import sys; from corebench.cells.grid import parse_grid; "
            "parse_grid({'name': 'g', 'datasets': ['digits'], 'architectures': ['resnet10t'], 'fractions': [0.5], "
            "'methods': ['easycore'], 'regimes': ['standard'], 'seeds': [0]}); "
            "print('corebench.compute.scoring' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

