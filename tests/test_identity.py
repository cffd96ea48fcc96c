"""A cell's identity (bench/cells/identity.py): defaults dropped, data by content, execution left out."""

import dataclasses

from corebench.cells.grid import parse_grid
from corebench.cells.identity import (
    canonical,
    canonical_options,
    cell_id,
    cell_settings,
    differences,
    record_settings,
)
from corebench.core.spec import TrainingConfig
from corebench.drivers.work import cell_config, cell_options, methods_of, plan_work

from helpers import FAST_GRID


def _settings(spec, cell_index=0):
    return _states(spec)[cell_index]


def _states(spec):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as results:
        return plan_work(spec, Path(results)).states


def test_a_setting_at_its_default_leaves_the_id_unchanged():
    a = _settings(parse_grid(FAST_GRID))
    same = _settings(parse_grid({**FAST_GRID, "training": {"epochs": 2, "lr": TrainingConfig().lr}}))
    other = _settings(parse_grid({**FAST_GRID, "training": {"epochs": 2, "lr": TrainingConfig().lr / 2}}))
    assert a.cell_id == same.cell_id
    assert a.cell_id != other.cell_id
    assert any(d.startswith("training.lr:") for d in differences(a.settings, other.settings))


def test_canonical_drops_exactly_the_fields_at_their_default():
    assert canonical(TrainingConfig()) == {}
    assert canonical(TrainingConfig(epochs=7)) == {"epochs": 7}
    assert canonical_options("random", {}) == {}
    assert canonical_options("easycore", {"n_runs": 1}) == {}  # n_runs' default
    assert canonical_options("easycore", {"n_runs": 3}) == {"n_runs": 3}
    assert canonical_options("not-registered-here", {"x": 1}) == {"x": 1}  # kept as given


def test_a_method_option_at_its_default_leaves_the_id_unchanged():
    plain = parse_grid({**FAST_GRID, "methods": ["random"]})
    spelled = parse_grid({**FAST_GRID, "methods": [{"name": "random", "class_balanced": False, "id": "random"}]})
    assert [s.cell_id for s in _states(plain)] == [s.cell_id for s in _states(spelled)]


def test_data_is_named_by_content_not_by_where_it_lies():
    spec = parse_grid(FAST_GRID)
    state = _settings(spec)
    config = cell_config(spec, state.cell, _data(spec))
    moved = config.model_copy(update={"dataset": dataclasses.replace(config.dataset, path="/elsewhere/digits.npz")})
    key = state.settings["cell"]
    assert cell_id(cell_settings(key, state.options, moved, state.settings["data"])) == state.cell_id
    assert cell_id(cell_settings(key, state.options, config, "another-content-hash")) != state.cell_id


def test_precision_enters_the_id_and_a_record_gives_back_its_own_settings(tmp_path):
    spec = parse_grid(FAST_GRID)
    fp32 = _settings(spec)
    bf16 = _settings(parse_grid({**FAST_GRID, "training": {"epochs": 2, "precision": "bf16"}}))
    assert fp32.cell_id != bf16.cell_id
    record = {"cell": fp32.settings["cell"], "method_options": fp32.options,
              "config": cell_config(spec, fp32.cell, _data(spec)).model_dump(mode="json"),
              "data": {"fingerprint": fp32.settings["data"]}}
    assert cell_id(record_settings(record)) == fp32.cell_id


def test_a_grid_cell_s_settings_are_built_in_one_place():
    """Outside `identity` itself, only `work.settings_of` builds a grid cell's settings."""
    import re
    from pathlib import Path

    import corebench

    calls = {p.name: len(re.findall(r"(?<![\w.])cell_settings\(", p.read_text()))
             for p in Path(corebench.__file__).parent.rglob("*.py") if p.name != "identity.py"}
    assert {k: v for k, v in calls.items() if v} == {"work.py": 1}


def _data(spec):
    from corebench.compute.datasets import load_dataset

    return load_dataset(spec.datasets[0])


def test_options_resolve_with_the_dataset():
    spec = parse_grid({**FAST_GRID, "methods": ["random"]})
    cell = _states(spec)[-1].cell
    options, error = cell_options(cell, methods_of([cell]).get(cell.method))
    assert error is None and options == {"class_balanced": False}
