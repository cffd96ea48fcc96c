"""End to end through the CLI on digits: grid -> records -> leaderboard; skips, failures, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from corebench.cli import main
from corebench.core.spec import scoring_seed
from corebench.methods import CoresetMethod, SelectionContext
from corebench.methods.registry import _REGISTRY, register_method
from corebench.store.record import SCHEMA_VERSION

TINY_GRID = {
    "name": "tiny",
    "datasets": ["digits"],
    "architectures": [{"name": "resnet18", "id": "r18w4", "kwargs": {"channels": [4, 8, 16, 32]}}],
    "fractions": [0.3],
    "methods": ["easycore", "random"],
    "regimes": ["standard", "trades"],
    "seeds": [0],
    "scoring": {"epochs": 2, "batch_size": 128},
    "training": {"epochs": 2, "batch_size": 128},
    "attack": {"steps": 2},
    "evaluation": {"n_examples": 60, "pgd_steps": 5, "autoattack": {"version": "custom", "attacks": ["apgd-ce"]}},
}


def write_grid(tmp_path: Path, **changes) -> Path:
    grid = {**TINY_GRID, **changes}
    path = tmp_path / f"{grid['name']}.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    grid = write_grid(tmp)
    code = main(["run", str(grid), "--results", str(tmp / "res"), "--cache", str(tmp / "cache"), "--no-progress"])
    return tmp, grid, code


def test_run_writes_one_valid_record_per_cell(finished_run):
    tmp, _, code = finished_run
    assert code == 0
    records = sorted((tmp / "res" / "tiny").rglob("seed0.json"))
    # 2 regimes x (1 full-data reference + 2 methods x 1 fraction)
    assert len(records) == 6
    n_train, budget = 1347, round(0.3 * 1347)
    for path in records:
        rec = json.loads(path.read_text())
        assert rec["status"] == "ok", rec["error"]
        m = rec["metrics"]
        assert 0 <= m["autoattack_acc"] <= m["clean_acc"] <= 100
        assert m["pgd_acc"] <= m["clean_acc"] and m["n_eval"] == 60
        size = n_train if rec["cell"]["method"] == "full" else budget
        indices = np.load(path.with_name("seed0.indices.npy"), allow_pickle=False)
        assert indices.size == rec["coreset"]["size"] == size == sum(rec["coreset"]["class_histogram"])
        assert np.all(np.diff(indices) > 0)
        assert rec["config"]["attack"]["eps"] == pytest.approx(32 / 255)
        assert rec["versions"]["torch"] and rec["device"].startswith("cpu")
        assert rec["schema_version"] == SCHEMA_VERSION == 2
        assert rec["config"]["evaluation"]["eps"] == [pytest.approx(32 / 255)]
        assert [r["eps"] for r in m["robust"]] == rec["config"]["evaluation"]["eps"]
        assert (m["robust"][-1]["pgd_acc"], m["robust"][-1]["autoattack_acc"]) == (m["pgd_acc"], m["autoattack_acc"])
        per_epoch = -(-size // 128)  # batches of 128
        assert rec["training"]["budget"] == "epochs" and rec["training"]["epochs"] == 2
        assert rec["training"]["steps"] == rec["cost"]["train_steps"] == 2 * per_epoch
        assert rec["cost"]["train_s"] == rec["timings"]["train_s"] and rec["training"]["seconds"] > 0
    easy = json.loads((tmp / "res/tiny/digits/r18w4/standard/easycore/f0.3/seed0.json").read_text())
    assert easy["method_options"] == {"gradient_pass": "eval", "direction": "easiest", "class_balanced": False,
                                      "n_runs": 1, "scoring_regime": "grid"}
    assert easy["timings"]["scoring_s"] > 0
    (run,) = easy["cost"]["scoring_runs"]
    assert run["seed"] == scoring_seed(0, 0) != 0 and run["epochs"] == 2 and run["seconds"] > 0
    assert run["seconds"] == pytest.approx(easy["timings"]["scoring_s"])
    rand = json.loads((tmp / "res/tiny/digits/r18w4/standard/random/f0.3/seed0.json").read_text())
    assert rand["cost"]["scoring_runs"] == []


def test_runs_are_shared_cut_to_each_need_and_costed(tmp_path):
    """n_runs averaging, runs shared by every method and as long as their longest need, several ε,
    and a step budget, in one small grid."""
    grid = write_grid(
        tmp_path, name="shared", fractions=[0.1, 0.3], regimes=["standard"],
        methods=["random", {"name": "grand", "n_runs": 2, "params": "last_layer", "id": "grand"},
                 {"name": "el2n", "n_runs": 2, "id": "el2n"},
                 {"name": "easycore", "n_runs": 1, "id": "easycore"}],
        scoring={"epochs": 3, "batch_size": 128, "snapshot_epochs": [0, 1]},
        training={"budget": "steps", "epochs": 1, "batch_size": 128},
        evaluation={"n_examples": 30, "pgd_steps": 2, "eps": ["32/255", "8/255"], "autoattack": {"enabled": False}},
    )
    res = tmp_path / "res"
    assert main(["run", str(grid), "--results", str(res), "--cache", str(tmp_path / "c"), "--no-progress"]) == 0

    def record(method: str, fraction: float) -> dict:
        return json.loads((res / f"shared/digits/r18w4/standard/{method}/f{fraction:g}/seed0.json").read_text())

    seeds = [scoring_seed(0, 0), scoring_seed(0, 1)]
    assert len(set(seeds) | {0}) == 3  # each run its own seed, none the target's
    grand, el2n, easy = record("grand", 0.1), record("el2n", 0.1), record("easycore", 0.1)
    # run 0 is shared with easycore (AIGN: the whole 3-epoch schedule); run 1 serves GraNd at
    # initialisation and EL2N at epoch 1 only: it trains 1 epoch
    assert [(r["seed"], r["epochs"]) for r in grand["cost"]["scoring_runs"]] == [(seeds[0], 3), (seeds[1], 1)]
    # each record says what its own method needed of the runs (the cost table charges that)
    assert [(r["epochs_needed"], r["passes_needed"]) for r in grand["cost"]["scoring_runs"]] == [(0, 1)] * 2
    assert [(r["epochs_needed"], r["passes_needed"]) for r in el2n["cost"]["scoring_runs"]] == [(1, 2)] * 2
    assert [(r["epochs_needed"], r["passes_needed"]) for r in easy["cost"]["scoring_runs"]] == [(3, 3)]
    drop = ("epochs_needed", "passes_needed")
    assert [{k: v for k, v in r.items() if k not in drop} for r in el2n["cost"]["scoring_runs"]] == \
        [{k: v for k, v in r.items() if k not in drop} for r in grand["cost"]["scoring_runs"]]
    assert easy["cost"]["scoring_runs"][0]["key"] == grand["cost"]["scoring_runs"][0]["key"]
    # stability on equal footing: el2n averages 2 runs, so its single-run selection is saved beside it
    st = el2n["stability"]
    assert st["runs_averaged"] == 2 and st["single_run_indices_file"] == "seed0.single_run.indices.npy"
    assert st["single_run_spearman"] is not None and st["own_randomness_jaccard"] == 1.0
    single = np.load(res / "shared/digits/r18w4/standard/el2n/f0.1/seed0.single_run.indices.npy")
    assert single.size == el2n["coreset"]["size"]
    assert easy["stability"]["single_run_indices_file"] == "seed0.indices.npy"  # one run: the kept coreset
    assert len(list((tmp_path / "c" / "scoring").glob("*.npz"))) == 2
    # a step budget: every fraction trains the full-data steps, 1 epoch of 1347 = 11 batches
    for method in ("random", "grand", "full"):
        for fraction in ((1.0,) if method == "full" else (0.1, 0.3)):
            rec = record(method, fraction)
            size = rec["coreset"]["size"]
            assert rec["training"]["budget"] == "steps" and rec["training"]["steps"] == 11
            assert rec["training"]["epochs"] == pytest.approx(11 / -(-size // 128))
            assert rec["config"]["evaluation"]["eps"] == pytest.approx([8 / 255, 32 / 255])
            assert [r["eps"] for r in rec["metrics"]["robust"]] == rec["config"]["evaluation"]["eps"]
            assert rec["metrics"]["pgd_acc"] == rec["metrics"]["robust"][1]["pgd_acc"]


def test_rerun_skips_finished_cells(finished_run, capsys):
    tmp, grid, _ = finished_run
    before = {p: p.stat().st_mtime_ns for p in (tmp / "res").rglob("*.json")}
    assert main(["run", str(grid), "--results", str(tmp / "res"), "--cache", str(tmp / "cache"), "--no-progress"]) == 0
    assert "6 already done, 0 finished" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in (tmp / "res").rglob("*.json")}


def test_leaderboard_and_status_commands(finished_run, capsys):
    tmp, grid, _ = finished_run
    assert main(["leaderboard", str(tmp / "res"), "--out", str(tmp / "boards")]) == 0
    pages = sorted(p.name for p in (tmp / "boards" / "tiny").glob("*.md"))
    assert len(pages) == 2 and any("standard" in p for p in pages) and any("trades" in p for p in pages)
    text = (tmp / "boards" / "tiny" / next(p for p in pages if "trades" in p)).read_text()
    for row in ("easycore", "random", "full"):
        assert row in text
    assert (tmp / "boards" / "README.md").is_file()
    capsys.readouterr()
    assert main(["status", str(tmp / "res"), "--grid", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "6 of 6 cells done, 0 pending" in out and "tiny" in out


def test_a_failing_method_fails_its_cell_and_the_grid_goes_on(tmp_path, capsys):
    @register_method("broken_for_test")
    class Broken(CoresetMethod):
        def select(self, ctx: SelectionContext, fraction: float) -> np.ndarray:
            return np.zeros(ctx.budget(fraction), dtype=np.int64)  # duplicates

    try:
        grid = write_grid(tmp_path, methods=["broken_for_test", "random"], regimes=["standard"])
        code = main(["run", str(grid), "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "c"), "--no-progress"])
    finally:
        del _REGISTRY["broken_for_test"]
    assert code == 1
    failed = json.loads((tmp_path / "res/tiny/digits/r18w4/standard/broken_for_test/f0.3/seed0.json").read_text())
    assert failed["status"] == "failed" and "broken_for_test" in failed["error"] and "duplicate" in failed["error"]
    ok = json.loads((tmp_path / "res/tiny/digits/r18w4/standard/random/f0.3/seed0.json").read_text())
    assert ok["status"] == "ok"
    assert "1 failed" in capsys.readouterr().out
    log = (tmp_path / "res/tiny/digits/r18w4/standard/broken_for_test/f0.3/seed0.log").read_text()
    assert "Traceback" in log and "duplicate" in log  # the failed cell keeps its traceback beside its record
    assert not (tmp_path / "res/tiny/digits/r18w4/standard/random/f0.3/seed0.log").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_failing_scoring_run_stops_the_grid_with_one_line(tmp_path, capsys, workers):
    """A failure that is no cell's own (here an unusable cache: its scoring folder is a file)
    stops the grid at once with one line: no failed record per cell."""
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "scoring").write_text("not a folder")
    grid = write_grid(tmp_path, methods=["easycore", "random"], regimes=["standard"], full_data_reference=False)
    code = main(["run", str(grid), "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "c"), "--no-progress",
                 "--workers", workers])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("corebench: error: scoring run digits × r18w4 × seed ")
    assert "failed (FileExistsError: " in err[-1] and err[-1].endswith("the grid stopped, finished records are kept")
    assert not list((tmp_path / "res").rglob("easycore/**/*.json"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"methods": ["easycor"]}, "methods: 'easycor' is not allowed; allowed: aum, ccs, dyn_unc, easycore"),
        ({"datasets": ["cifar11"]}, "datasets: 'cifar11' is not allowed; allowed: cifar10, cifar100, cifar10_jpeg, cifar10_proxy, digits, npz, svhn, synthetic"),
        ({"regimes": ["madry"]}, "regimes: 'madry' is not allowed; allowed: standard, pgd_at, trades"),
        ({"fractions": [0.3, 1.5]}, "fractions: 1.5 is not allowed; allowed: numbers in (0, 1]"),
        ({"architectures": ["resnet1800"]}, "architectures: 'resnet1800' is not a timm architecture"),
        ({"seeds": []}, "seeds: [] is not allowed; allowed: a non-empty list"),
        ({"datasets": [{"name": "cifar10", "root": "/nonexistent/cifar"}]}, "datasets.cifar10.root: '/nonexistent/cifar'"),
        ({"training": {"budget": "weeks"}}, "training.budget: 'weeks' is not allowed; allowed: epochs, steps"),
        ({"training": {"steps": 100}}, "training.steps: 100 is not allowed; allowed: only with budget: steps"),
        ({"evaluation": {"eps": []}}, "evaluation.eps: [] is not allowed; allowed: one radius or a non-empty list"),
        ({"methods": ["ccs"]}, "methods.ccs.hard_cutoff: None is not allowed for dataset 'digits'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_training(tmp_path, capsys, changes, message):
    grid = write_grid(tmp_path, **changes)
    code = main(["run", str(grid), "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "c"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1
    assert not list((tmp_path).rglob("*.npz")) and not list(tmp_path.rglob("seed*.json"))


def test_select_exports_sorted_indices_to_keep(tmp_path, capsys):
    out = tmp_path / "keep.npy"
    code = main(["select", "--method", "easycore", "--dataset", "digits", "--fraction", "0.2", "--out", str(out),
                 "--arch", "resnet18", "--arch-kwargs", '{"channels": [4, 8, 16, 32]}', "--scoring-epochs", "1",
                 "--cache", str(tmp_path / "c"), "--no-progress"])
    assert code == 0
    keep = np.load(out, allow_pickle=False)
    assert keep.dtype == np.int64 and keep.size == round(0.2 * 1347)
    assert np.all(np.diff(keep) > 0) and keep.min() >= 0 and keep.max() < 1347
    assert main(["select", "--method", "easycore", "--dataset", "digits", "--fraction", "0", "--out", str(out)]) == 2
    assert "--fraction: 0.0 is not allowed" in capsys.readouterr().err


def test_methods_command_lists_every_method(capsys):
    from corebench.methods import list_methods

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in list_methods():
        assert name in out


def test_records_carry_the_options_used_at_each_fraction():
    from corebench.methods import create_method

    ccs = create_method("ccs")
    assert ccs.options()["hard_cutoff"] is None
    assert ccs.options_for(0.1, "cifar10")["hard_cutoff"] == 0.3  # 90 % pruning: the reference's β
    assert ccs.options_for(0.5, "cifar10")["hard_cutoff"] == 0.0
    assert create_method("easycore").options_for(0.3) == create_method("easycore").options()


def test_scoring_cache_serves_methods_requested_one_at_a_time(tmp_path):
    """A worker process learns its cells' needs one by one: each new need is served."""
    import torch

    from corebench.compute.datasets import load_dataset
    from corebench.core.spec import ArchSpec, Cell, DatasetSpec, MethodSpec, ScoringConfig
    from corebench.drivers.scoring_runs import ScoringCache
    from corebench.methods import create_method

    data = load_dataset(DatasetSpec("digits"))
    arch = ArchSpec("resnet18", {"channels": [4, 8, 16, 32]})
    scorer = ScoringCache(ScoringConfig(epochs=1), tmp_path, torch.device("cpu"), progress=False)
    for name in ("easycore", "moderate", "forgetting"):
        cell = Cell(DatasetSpec("digits"), arch, arch, "standard", MethodSpec(name), 0.3, 0)
        method = create_method(name)
        ctx, _ = scorer.contexts(cell, data, method)
        assert set(method.required_signals()) <= set(ctx.signals)


def test_the_scoring_architecture_is_its_own_axis(tmp_path):
    scorer = {"name": "resnet18", "id": "scorer_w2", "kwargs": {"channels": [2, 4, 8, 16]}}
    grid = write_grid(tmp_path, methods=["easycore"], regimes=["standard"], scoring_architectures=["same", scorer])
    code = main(["run", str(grid), "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "c"), "--no-progress"])
    assert code == 0
    records = {r["cell"]["method_label"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "res").rglob("seed0.json"))}
    assert set(records) == {"full", "easycore", "easycore@scorer_w2"}
    assert records["easycore@scorer_w2"]["cell"]["scoring_arch"] == "scorer_w2"
    assert records["easycore@scorer_w2"]["config"]["scoring_arch"]["kwargs"] == {"channels": [2, 4, 8, 16]}
    assert records["easycore"]["cell"]["scoring_arch"] == "r18w4"
    board = tmp_path / "res/tiny/digits/r18w4/standard"
    kept = {label: np.load(board / label / "f0.3/seed0.indices.npy") for label in records if label != "full"}
    assert not np.array_equal(kept["easycore"], kept["easycore@scorer_w2"])  # another model, another ranking
    assert len(list((tmp_path / "c" / "scoring").glob("*.npz"))) == 2


def test_averaging_over_scoring_runs_reuses_cached_runs(tmp_path):
    import torch

    from corebench.compute.datasets import load_dataset
    from corebench.core.spec import ArchSpec, Cell, DatasetSpec, MethodSpec, ScoringConfig
    from corebench.drivers.scoring_runs import ScoringCache
    from corebench.methods import create_method

    data = load_dataset(DatasetSpec("digits"))
    arch = ArchSpec("resnet18", {"channels": [4, 8, 16, 32]})
    cell = Cell(DatasetSpec("digits"), arch, arch, "standard", MethodSpec("el2n", {"n_runs": 2}), 0.3, 0)
    first = ScoringCache(ScoringConfig(epochs=1), tmp_path, torch.device("cpu"), progress=False)
    ctx, _ = first.contexts(cell, data, create_method("el2n", n_runs=2))
    assert len(ctx.runs) == 2 and not np.array_equal(ctx.runs[0]["el2n_eval"], ctx.runs[1]["el2n_eval"])
    assert len(list(tmp_path.glob("*.npz"))) == 2
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.npz")}
    again = ScoringCache(ScoringConfig(epochs=1), tmp_path, torch.device("cpu"), progress=False)
    ctx2, _ = again.contexts(cell, data, create_method("el2n", n_runs=2))
    np.testing.assert_array_equal(ctx.runs[1]["el2n_eval"], ctx2.runs[1]["el2n_eval"])
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.npz")}  # nothing re-made


def test_check_method_command(capsys):
    assert main(["check-method", "easycore"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" not in out and "easycore:" in out
    assert main(["check-method", "nosuchmethod"]) == 2
    assert "method: 'nosuchmethod' is not allowed" in capsys.readouterr().err


def test_every_record_keeps_its_per_image_outcomes(finished_run):
    from corebench.store.record import parse_record

    tmp, _, _ = finished_run
    for path in sorted((tmp / "res" / "tiny").rglob("seed0.json")):
        rec = parse_record(path.read_text())  # checks the outcomes count to the accuracies
        got = rec.per_image_outcomes.unpacked()
        assert got["clean"].size == rec.metrics.n_eval == 60
        for pgd, aa in got["robust"].values():
            assert not (pgd & ~got["clean"]).any() and not (aa & ~got["clean"]).any()  # robust implies right
