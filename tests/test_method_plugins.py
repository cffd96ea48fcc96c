"""Third-party methods through the `corebench.methods` entry-point group, and registry errors.

An outside package is simulated by a module file plus a `<dist>.dist-info/` folder (METADATA
and entry_points.txt) in tmp_path, put on sys.path: exactly what `pip install` leaves behind.
"""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import corebench.methods.registry as registry
from corebench.core.errors import ConfigError
from corebench.methods import (
    CoresetMethod,
    create_method,
    list_methods,
    register_method,
    run_selection,
)
from corebench.methods.testing import assert_method_conforms, fake_context

PLUGIN_MODULE = "corebench_plugin_demo"

PLUGIN_SOURCE = textwrap.dedent(
    '''
    """A third-party method: keep the samples with the highest last-epoch loss."""
    from dataclasses import dataclass

    import numpy as np

    from corebench.methods import ScoreBasedMethod, SelectionContext, register_method
    from corebench.methods.base import Direction


    @dataclass(frozen=True)
    class LastLossParams:
        direction: Direction = "hardest"
        class_balanced: bool = False


    @register_method("plugin_last_loss")
    class LastLoss(ScoreBasedMethod):
        Params = LastLossParams
        signals = ("loss",)

        def hardness(self, ctx: SelectionContext) -> np.ndarray:
            return ctx.signals["loss"][-1]
    '''
)


def install_fake_distribution(root: Path, entry_points: str, files: dict[str, str]) -> None:
    """Write module files and a dist-info folder the way an installed wheel would."""
    for name, text in files.items():
        (root / name).write_text(text)
    info = root / "corebench_plugin_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: corebench-plugin-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def plugin_env(tmp_path, monkeypatch):
    """sys.path with the fake distribution's folder, entry points not yet loaded; clean after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_FAILED", {})
    before = set(registry._REGISTRY)
    yield tmp_path
    for name in set(registry._REGISTRY) - before:
        registry._REGISTRY.pop(name)
    for mod in [m for m in sys.modules if m.startswith(PLUGIN_MODULE)]:
        sys.modules.pop(mod)


@pytest.mark.parametrize("target", [PLUGIN_MODULE, f"{PLUGIN_MODULE}:LastLoss"])
def test_entry_point_method_is_listed_created_and_conforms(plugin_env, target):
    install_fake_distribution(
        plugin_env,
        f"[corebench.methods]\nplugin_last_loss = {target}\n",
        {f"{PLUGIN_MODULE}.py": PLUGIN_SOURCE},
    )
    assert "plugin_last_loss" in list_methods()
    method = create_method("plugin_last_loss")
    assert method.name == "plugin_last_loss" and method.required_signals() == ("loss",)
    ctx = fake_context(method, n=60)
    kept = run_selection(method, ctx, 0.25)
    assert np.array_equal(kept, np.sort(np.argsort(-ctx.signals["loss"][-1].astype(np.float64), kind="stable")[:15]))
    assert_method_conforms("plugin_last_loss", direction="easiest")


def test_broken_plugin_is_logged_and_the_suite_goes_on(plugin_env, caplog):
    install_fake_distribution(
        plugin_env,
        f"[corebench.methods]\nbroken_plugin = {PLUGIN_MODULE}\n",
        {f"{PLUGIN_MODULE}.py": "raise ImportError('missing dependency xyz')\n"},
    )
    with caplog.at_level(logging.WARNING, logger="corebench.methods.registry"):
        names = list_methods()
    assert "easycore" in names and "broken_plugin" not in names
    assert "could not load method plug-in broken_plugin" in caplog.text and "xyz" in caplog.text


def test_unknown_method_error_lists_registered_names():
    with pytest.raises(ConfigError) as err:
        create_method("no_such_method")
    message = str(err.value)
    assert message.startswith("method: 'no_such_method' is not allowed; allowed: ")
    for name in list_methods():
        assert name in message
    assert "\n" not in message


def test_duplicate_registration_error_lists_registered_names():
    class AnotherEasyCore(CoresetMethod):
        def select(self, ctx, fraction):
            return np.arange(ctx.budget(fraction))

    with pytest.raises(ConfigError) as err:
        register_method("easycore")(AnotherEasyCore)
    message = str(err.value)
    assert "'easycore' is already registered by corebench.methods.easycore.EasyCore" in message
    for name in list_methods():
        assert name in message
    assert registry._REGISTRY["easycore"].__module__ == "corebench.methods.easycore"


@pytest.mark.parametrize("bad", ["EasyCore", "my-method", ""])
def test_invalid_method_names_are_rejected(bad):
    class Nameless(CoresetMethod):
        def select(self, ctx, fraction):
            return np.arange(ctx.budget(fraction))

    with pytest.raises(ConfigError, match="lowercase letters, digits"):
        register_method(bad)(Nameless)
    assert bad not in registry._REGISTRY


def test_a_plugin_that_fails_to_import_under_all_is_an_error_naming_it(plugin_env):
    from corebench.cells.grid import parse_grid

    install_fake_distribution(
        plugin_env,
        f"[corebench.methods]\nbroken_plugin = {PLUGIN_MODULE}\n",
        {f"{PLUGIN_MODULE}.py": "raise ImportError('missing dependency xyz')\n"},
    )
    grid = {"datasets": ["digits"], "architectures": ["resnet10t"], "fractions": [0.5], "regimes": ["standard"]}
    with pytest.raises(ConfigError, match=r"methods: all: .*broken_plugin .*corebench-plugin-demo.*xyz.*by name"):
        parse_grid({**grid, "methods": ["all"]})
    assert parse_grid({**grid, "methods": ["random"]}).methods  # named methods still work


def test_plugin_fingerprint_follows_the_plugin_source_and_is_none_for_builtins(plugin_env):
    from corebench.core.codehash import code_fingerprint

    install_fake_distribution(
        plugin_env, f"[corebench.methods]\nplugin_last_loss = {PLUGIN_MODULE}\n", {f"{PLUGIN_MODULE}.py": PLUGIN_SOURCE}
    )
    assert registry.plugin_fingerprint("el2n") is None and registry.plugin_fingerprint("full") is None
    before = registry.plugin_fingerprint("plugin_last_loss")
    assert before is not None and len(before) == 16
    assert registry.method_source("plugin_last_loss")["code"] == before
    (plugin_env / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE + "\n# an edit\n")
    code_fingerprint.cache_clear()
    assert registry.plugin_fingerprint("plugin_last_loss") not in (None, before)
