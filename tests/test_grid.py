"""Grid files: axes multiply into cells, and every bad input is one line before any training."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import yaml

from corebench.cells.grid import load_grid, parse_grid
from corebench.core.checked import build
from corebench.core.errors import ConfigError
from corebench.core.spec import (
    FULL_DATA,
    ArchSpec,
    AttackConfig,
    Cell,
    DatasetSpec,
    MethodSpec,
    TrainingConfig,
    stable_hash,
)
from corebench.methods import list_methods
from corebench.methods.registry import all_methods

REPO = Path(__file__).resolve().parents[1]

GRID_YAML = """
name: axes
datasets:
  - digits
  - {name: synthetic, options: {n_train: 100}, id: syn}
architectures:
  - {name: resnet18, kwargs: {channels: [8, 16, 32, 64]}, id: r18n}
scoring_architectures: [same, resnet10t]
fractions: [0.1, 1/2]
methods:
  - random
  - {name: easycore, direction: hardest}
regimes: [standard, trades]
seeds: [0, 1, 2]
attack: {eps: 8/255, step_size: 2/255}
evaluation:
  eps: 8/255
  autoattack: {version: custom, attacks: [apgd-ce, apgd-t]}
"""


def grid_error(grid: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_grid(grid)
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def test_axes_multiply_into_cells(tmp_path):
    path = tmp_path / "axes.yaml"
    path.write_text(GRID_YAML)
    grid = load_grid(path)
    assert grid.name == "axes" and grid.source == str(path)
    assert [d.label for d in grid.datasets] == ["digits", "syn"]
    assert grid.datasets[1].options == {"n_train": 100}
    assert grid.architectures == (ArchSpec("resnet18", {"channels": [8, 16, 32, 64]}, id="r18n"),)
    assert grid.scoring_architectures == (None, ArchSpec("resnet10t"))
    assert grid.fractions == (0.1, 0.5) and grid.regimes == ("standard", "trades") and grid.seeds == (0, 1, 2)
    assert grid.methods == (MethodSpec("random"), MethodSpec("easycore", {"direction": "hardest"}))
    assert grid.attack.eps == pytest.approx(8 / 255) and grid.attack.step_size == pytest.approx(2 / 255)
    assert grid.evaluation.eps == pytest.approx((8 / 255,))
    assert grid.evaluation.autoattack.attacks == ("apgd-ce", "apgd-t")

    cells = grid.cells()
    # datasets × archs × regimes × seeds × (1 full-data reference + scorers × methods × fractions)
    assert len(cells) == 2 * 1 * 2 * 3 * (1 + 2 * 2 * 2) == 108
    refs = [c for c in cells if c.method.name == FULL_DATA]
    assert len(refs) == 12 and all(c.fraction == 1.0 and c.scoring_arch == c.arch for c in refs)
    assert cells[0].method.name == FULL_DATA  # references come first in each block
    paths = {c.relpath(grid.name) for c in cells}
    assert len(paths) == len(cells)  # every cell has its own results file
    scored_by_10t = [c for c in cells if c.scoring_arch.name == "resnet10t"]
    assert len(scored_by_10t) == 48 and all(c.method_label.endswith("@resnet10t") for c in scored_by_10t)
    no_refs = parse_grid({**yaml.safe_load(GRID_YAML), "full_data_reference": False})
    assert len(no_refs.cells()) == 2 * 2 * 3 * 8


def test_methods_all_expands_to_every_registered_method(tiny_grid):
    grid = parse_grid({**tiny_grid, "datasets": ["cifar10"], "methods": ["all"]})  # CCS has its β table there
    assert [m.name for m in grid.methods] == all_methods() and len(all_methods()) >= 2
    assert {"easycore", "random"} <= {m.name for m in grid.methods}
    # issue 22's methods add adversarial scoring runs or need long runs: a grid names them
    assert not {"friendly", "aum", "dyn_unc", "tdds"} & {m.name for m in grid.methods}
    assert {"friendly", "aum", "dyn_unc", "tdds"} <= set(list_methods())


def test_a_named_entry_replaces_the_one_all_brought_in(tiny_grid):
    """`all` plus an entry labelled like one of its own sets that method's options in place."""
    grid = parse_grid({**tiny_grid, "methods": ["all", {"name": "el2n", "n_runs": 3, "id": "el2n"},
                                                {"name": "ccs", "hard_cutoff": 0.1, "id": "ccs"},
                                                {"name": "easycore", "direction": "hardest", "id": "easycore_hardest"}]})
    labels = [m.label for m in grid.methods]
    assert labels == all_methods() + ["easycore_hardest"]  # same order, one entry per label
    by_label = {m.label: m for m in grid.methods}
    assert by_label["el2n"].params == {"n_runs": 3} and by_label["ccs"].params == {"hard_cutoff": 0.1}
    assert by_label["easycore"].params == {}


def test_ccs_on_a_dataset_without_a_beta_table_needs_beta_in_the_grid(tiny_grid):
    for methods in (["all"], ["ccs"]):
        msg = grid_error({**tiny_grid, "methods": methods})
        assert msg.startswith("methods.ccs.hard_cutoff: None is not allowed for dataset 'digits'; allowed: a number"), msg
    grid = parse_grid({**tiny_grid, "methods": [{"name": "ccs", "hard_cutoff": 0.1}]})
    assert grid.methods[0].params == {"hard_cutoff": 0.1}
    parse_grid({**tiny_grid, "datasets": ["cifar10"], "methods": ["ccs"]})  # the CIFAR-10 table


def test_several_eps_and_the_training_budget(tiny_grid):
    grid = parse_grid({**tiny_grid, "evaluation": {"eps": ["8/255", "1/255", "2/255"]},
                       "training": {"budget": "steps", "steps": 40000}})
    assert grid.evaluation.eps == pytest.approx((8 / 255, 1 / 255, 2 / 255))
    resolved = grid.evaluation.resolved(32 / 255)
    assert resolved.eps == pytest.approx((1 / 255, 2 / 255, 8 / 255))  # ascending
    assert resolved.pgd_step_size == pytest.approx((1 / 1020, 2 / 1020, 8 / 1020))  # ε/4 each
    assert (grid.training.budget, grid.training.steps) == ("steps", 40000)
    assert grid.training.total_steps(10, 100) == 40000
    full = parse_grid({**tiny_grid, "training": {"budget": "steps", "epochs": 3}}).training
    assert full.total_steps(10, 100) == 300  # the full-data steps: 3 epochs of 100
    assert parse_grid(tiny_grid).training.total_steps(10, 100) == 200 * 10  # epochs: passes over the coreset


def test_defaults_and_name_from_the_file(tmp_path, tiny_grid):
    grid = tmp_path / "my-grid.yaml"
    grid.write_text(yaml.safe_dump({k: v for k, v in tiny_grid.items() if k not in ("name", "seeds")}))
    spec = load_grid(grid)
    assert spec.name == "my-grid" and spec.seeds == (0,) and spec.scoring_architectures == (None,)
    assert spec.training == TrainingConfig() and spec.attack == AttackConfig() and spec.device == "auto"


def test_eps_accepts_fractions(tiny_grid):
    grid = parse_grid({**tiny_grid, "attack": {"eps": "8/255"}, "evaluation": {"eps": "0.0314", "pgd_step_size": "2/255"}})
    assert grid.attack.eps == pytest.approx(8 / 255) and grid.evaluation.eps == pytest.approx((0.0314,))
    assert grid.evaluation.pgd_step_size == pytest.approx((2 / 255,))
    assert grid.attack.step_size is None  # resolved later to eps/4


# Each bad input: (change to the tiny grid, field named, bad value shown, what is allowed).
BAD_INPUTS = [
    ({"datasets": ["cifar11"]}, "datasets", "'cifar11'", "cifar10, cifar100, cifar10_jpeg, cifar10_proxy, digits"),
    ({"datasets": [{"name": "digits", "rooot": "x"}]}, "datasets.digits.rooot", "'rooot'", "root"),
    ({"datasets": [{"name": "digits", "root": 5}]}, "datasets.digits.root", "5", "a string"),
    ({"datasets": [{"name": "digits", "options": [1]}]}, "datasets.digits.options", "[1]", "a mapping"),
    ({"datasets": [{"root": "x"}]}, "datasets", "{'root': 'x'}", "'name' key"),
    ({"datasets": ["digits", "digits"]}, "datasets", "'digits'", "'id'"),
    ({"architectures": ["resnet81"]}, "architectures", "'resnet81'", "closest: resnet18"),
    ({"architectures": [{"name": "resnet18", "kwargs": [8]}]}, "architectures.resnet18.kwargs", "[8]", "a mapping"),
    ({"architectures": [{"name": "resnet18", "small_input_stem": "yes"}]},
     "architectures.resnet18.small_input_stem", "'yes'", "true or false"),
    ({"scoring_architectures": ["resnt18"]}, "scoring_architectures", "'resnt18'", "resnet18"),
    ({"architectures": [{"name": "resnet18", "kwargs": {"channels": [8, 16, 32, 64]}}],  # same label, other net
      "scoring_architectures": ["same", "resnet18"]}, "scoring_architectures", "'resnet18'", "give one an 'id'"),
    ({"datasets": [{"name": "digits", "id": "a/b"}, {"name": "digits", "id": "a_b"}]},  # one folder name
     "datasets", "'a_b'", "tiny/a_b/resnet18"),
    ({"methods": ["easycor"]}, "methods", "'easycor'", "easycore"),
    ({"methods": [{"name": "easycore", "direction": "sideways"}]},
     "methods.easycore.direction", "'sideways'", "hardest, easiest"),
    ({"methods": [{"name": "easycore", "directon": "hardest"}]}, "methods.easycore.directon", "'directon'", "direction"),
    ({"methods": ["random", "random"]}, "methods", "'random'", "'id'"),
    ({"regimes": ["adversarial"]}, "regimes", "'adversarial'", "standard, pgd_at, trades"),
    ({"fractions": [0]}, "fractions", "0.0", "(0, 1]"),
    ({"fractions": [-0.1]}, "fractions", "-0.1", "(0, 1]"),
    ({"fractions": [1.5]}, "fractions", "1.5", "(0, 1]"),
    ({"fractions": ["half"]}, "fractions", "'half'", "8/255"),
    ({"fractions": [0.5, 0.5]}, "fractions", "0.5", "once"),
    ({"fractions": []}, "fractions", "[]", "non-empty"),
    ({"methods": []}, "methods", "[]", "non-empty"),
    ({"datasets": None}, "datasets", "None", "non-empty"),
    ({"regimes": []}, "regimes", "[]", "non-empty"),
    ({"seeds": ["a"]}, "seeds", "'a'", "an integer"),
    ({"seeds": [True]}, "seeds", "True", "an integer"),
    ({"seeds": [-1]}, "seeds", "-1", "[0, 2^31)"),
    ({"trainig": {}}, "trainig", "'trainig'", "training"),
    ({"training": {"epoch": 3}}, "training.epoch", "'epoch'", "epochs"),
    ({"training": {"epochs": "ten"}}, "training.epochs", "'ten'", "a positive integer"),
    ({"training": {"epochs": 0}}, "training.epochs", "0", "positive"),
    ({"training": {"lr": -0.1}}, "training.lr", "-0.1", "a number in (0, 10]"),
    ({"training": {"schedule": "step"}}, "training.schedule", "'step'", "cosine, constant"),
    ({"training": {"augment": "yes"}}, "training.augment", "'yes'", "true or false"),
    ({"training": [1]}, "training", "[1]", "a mapping"),
    ({"scoring": {"snapshot_epochs": [99]}}, "scoring.snapshot_epochs", "99", "epochs between 0"),
    ({"attack": {"eps": -0.1}}, "attack.eps", "-0.1", "(0, 1]"),
    ({"attack": {"eps": "8/0.0"}}, "attack.eps", "'8/0.0'", "8/255"),
    ({"evaluation": {"norm": "L2"}}, "evaluation.norm", "'L2'", "Linf"),
    ({"evaluation": {"autoattack": {"attacks": ["apgd-ce"]}}},
     "evaluation.autoattack.attacks", "['apgd-ce']", "version: custom"),
    ({"evaluation": {"autoattack": {"version": "custom"}}}, "evaluation.autoattack.attacks", "None", "version: custom"),
    ({"evaluation": {"autoattack": {"version": "custom", "attacks": ["apgd-cee"]}}},
     "evaluation.autoattack.attacks", "'apgd-cee'", "apgd-ce, apgd-dlr"),
    ({"evaluation": {"autoattack": {"version": "fast"}}}, "evaluation.autoattack.version", "'fast'", "standard, plus"),
    ({"device": "gpu"}, "device", "'gpu'", "cuda"),
    ({"training": {"budget": "weeks"}}, "training.budget", "'weeks'", "epochs, steps"),
    ({"training": {"steps": 5000}}, "training.steps", "5000", "only with budget: steps"),
    ({"training": {"budget": "steps", "steps": 0}}, "training.steps", "0", "positive"),
    ({"evaluation": {"eps": []}}, "evaluation.eps", "[]", "a non-empty list"),
    ({"evaluation": {"eps": [0.1, 0.1]}}, "evaluation.eps", "[0.1, 0.1]", "each ε at most once"),
    ({"evaluation": {"eps": ["1/255", "abc"]}}, "evaluation.eps", "'abc'", "8/255"),
    ({"evaluation": {"eps": [0.1, 2]}}, "evaluation.eps", "2", "(0, 1]"),
    ({"evaluation": {"eps": [0.1, 0.2], "pgd_step_size": [0.1, 0.2, 0.3]}},
     "evaluation.pgd_step_size", "[0.1, 0.2, 0.3]", "one step per ε"),
    ({"methods": ["ccs"]}, "methods.ccs.hard_cutoff", "None", "set in the grid"),
    ({"methods": [{"name": "ccs", "hard_cutoff": {0.3: 0.1}, "id": "ccs_b"}]},
     "methods.ccs_b.hard_cutoff", "{0.3: 0.1}", "a β for every fraction (no entry for 0.5)"),
    ({"methods": [{"name": "easycore", "n_runs": 0}]}, "methods.easycore.n_runs", "0", ">= 1"),
    ({"name": "my grid!"}, "name", "'my grid!'", "letters"),
]


@pytest.mark.parametrize(("change", "field", "value", "allowed"), BAD_INPUTS, ids=[b[1] + ":" + b[2] for b in BAD_INPUTS])
def test_bad_input_is_one_line_naming_field_value_and_allowed(tiny_grid, change, field, value, allowed):
    msg = grid_error({**tiny_grid, **change})
    assert msg.startswith(f"{field}: {value} ") or msg.startswith(f"{field}: {value};"), msg
    assert "allowed:" in msg and allowed in msg, msg


def test_grid_file_errors(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_grid(tmp_path / "missing.yaml")
    assert "missing.yaml" in str(exc.value) and "an existing YAML file" in str(exc.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [digits\nfractions: ]\n")
    with pytest.raises(ConfigError) as exc:
        load_grid(bad)
    assert "\n" not in str(exc.value) and "not valid YAML" in str(exc.value)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError) as exc:
        load_grid(bad)
    assert str(exc.value).startswith("grid: ") and "a YAML mapping" in str(exc.value)
    bad.write_text("!!python/object/apply:os.system ['echo hi']\n")  # safe_load refuses to execute
    with pytest.raises(ConfigError):
        load_grid(bad)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_grid_files_parse(path):
    grid = load_grid(path)
    assert grid.cells() and grid.name == path.stem


# --------------------------------------------------------------------------- cells and keys


def cell(method: MethodSpec, scorer: ArchSpec | None = None, fraction: float = 0.3) -> Cell:
    arch = ArchSpec("resnet18", id="r18")
    return Cell(DatasetSpec("digits"), arch, scorer or arch, "trades", method, fraction, 2)


def test_relpath_spells_the_key():
    c = cell(MethodSpec("easycore", {"direction": "hardest", "class_balanced": True}))
    assert c.method_label == "easycore[class_balanced=True,direction=hardest]"
    assert c.relpath("quick") == Path(
        "quick/digits/r18/trades/easycore[class_balanced=True,direction=hardest]/f0.3/seed2.json"
    )
    assert cell(MethodSpec(FULL_DATA), fraction=1.0).relpath("g") == Path("g/digits/r18/trades/full/f1/seed2.json")
    odd = Cell(DatasetSpec("npz", id="my data/v1"), ArchSpec("resnet18"), ArchSpec("resnet18"), "standard",
               MethodSpec("random"), 0.25, 0)
    assert odd.relpath("g").parts[1] == "my_data_v1"  # never escapes its folder


def test_method_label_names_params_and_a_different_scorer():
    assert cell(MethodSpec("random")).method_label == "random"
    assert cell(MethodSpec("random", id="rnd")).method_label == "rnd"
    scorer = ArchSpec("resnet10t")
    assert cell(MethodSpec("easycore"), scorer).method_label == "easycore@resnet10t"
    assert cell(MethodSpec("easycore", {"direction": "hardest"}), scorer).method_label == "easycore[direction=hardest]@resnet10t"
    assert cell(MethodSpec(FULL_DATA), scorer).method_label == FULL_DATA
    assert cell(MethodSpec("easycore"), scorer).key()["scoring_arch"] == "resnet10t"


def test_stable_hash_ignores_dict_order_and_sees_values():
    a = MethodSpec("easycore", {"direction": "hardest", "class_balanced": True})
    b = MethodSpec("easycore", {"class_balanced": True, "direction": "hardest"})
    assert stable_hash(a) == stable_hash(b) and len(stable_hash(a)) == 16
    assert stable_hash({"x": 1, "y": (1, 2)}) == stable_hash({"y": [1, 2], "x": 1})
    assert stable_hash(a) != stable_hash(MethodSpec("easycore", {"direction": "easiest", "class_balanced": True}))
    assert stable_hash(cell(a)) == stable_hash(cell(b)) != stable_hash(cell(a, fraction=0.4))
    # known answer: sha256 of the sorted-key JSON, so it is the same in every process and release
    assert stable_hash({"b": [1, 2.5], "a": "x"}) == hashlib.sha256(b'{"a": "x", "b": [1, 2.5]}').hexdigest()[:16]


def test_build_checks_keys_and_types():
    cfg = build(AttackConfig, {"eps": "16/255", "steps": 7}, "attack")
    assert cfg == AttackConfig(eps=16 / 255, steps=7)
    assert build(AttackConfig, None, "attack") == AttackConfig()
    assert math.isclose(build(TrainingConfig, {"lr": 1}, "training").lr, 1.0)
    with pytest.raises(ConfigError, match=r"^attack\.steps: 2\.5 is not allowed; allowed: a positive integer$"):
        build(AttackConfig, {"steps": 2.5}, "attack")


def test_regime_seeds_and_reference_seeds_choose_which_seeds_train(tiny_grid):
    """A regime over its own seeds; the full-data reference at a list of seeds only."""
    grid = parse_grid({**tiny_grid, "regimes": ["standard", "trades"], "seeds": [0, 1],
                       "regime_seeds": {"standard": [0, 1, 2, 3]}, "full_data_reference": [1, 0]})
    seeds = {(c.regime, c.method.name): {x.seed for x in grid.cells() if (x.regime, x.method.name) == (c.regime, c.method.name)}
             for c in grid.cells()}  # fmt: skip
    assert seeds[("standard", "random")] == {0, 1, 2, 3} and seeds[("trades", "random")] == {0, 1}
    assert seeds[("standard", "full")] == {0, 1} and seeds[("trades", "full")] == {0, 1}
    assert grid.full_data_reference == (0, 1) and grid.seeds_of("standard") == (0, 1, 2, 3)
    base = {**tiny_grid, "regimes": ["standard", "trades"], "seeds": [0, 1]}
    assert grid_error({**base, "regime_seeds": {"pgd_at": [0]}}) == (
        "regime_seeds: 'pgd_at' is not allowed; allowed: a regime of the grid (standard, trades)")
    assert grid_error({**base, "regime_seeds": {"trades": [0, 0]}}).startswith("regime_seeds.trades: ")
    assert grid_error({**base, "regime_seeds": {"trades": [-1]}}).startswith(
        "regime_seeds.trades: -1 is not allowed; allowed: integers in [0, 2^31)")
    assert grid_error({**base, "full_data_reference": [5]}) == (
        "full_data_reference: 5 is not allowed; allowed: seeds of the grid (0, 1)")
    assert grid_error({**base, "full_data_reference": "yes"}).startswith(
        "full_data_reference: 'yes' is not allowed; allowed: true, false or a list of the grid's seeds")


def test_regime_fractions_train_a_regime_at_some_fractions_only(tiny_grid):
    grid = parse_grid({**tiny_grid, "fractions": [0.1, 0.3, 0.5], "regimes": ["standard", "trades"],
                       "regime_fractions": {"trades": [0.5, 0.1]}})
    trades = {c.fraction for c in grid.cells() if c.regime == "trades" and c.method.name != "full"}
    standard = {c.fraction for c in grid.cells() if c.regime == "standard" and c.method.name != "full"}
    assert (trades, standard) == ({0.1, 0.5}, {0.1, 0.3, 0.5})
    assert grid.regime_fractions == {"trades": (0.1, 0.5)}
    base = {**tiny_grid, "fractions": [0.1, 0.3], "regimes": ["standard", "trades"]}
    assert grid_error({**base, "regime_fractions": {"trades": [0.2]}}) == (
        "regime_fractions.trades: 0.2 is not allowed; allowed: fractions of the grid (0.1, 0.3)")
    assert grid_error({**base, "regime_fractions": {"pgd_at": [0.1]}}).startswith(
        "regime_fractions: 'pgd_at' is not allowed; allowed: a regime of the grid (standard, trades)")
