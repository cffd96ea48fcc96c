"""A catalogue of bad inputs: each is one line on stderr, exit code 2, before any compute.

Every case runs the `corebench` command in-process with the scoring run, training and
evaluation replaced by tripwires, so "before the first epoch" is checked, not assumed. The
cases are the hostile probe's (issue 10) plus the ones handled before it. A hypothesis test
then feeds random grid documents, npz contents and record texts to the loaders: nothing but
the suite's own errors may escape.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corebench.cells.grid import parse_grid
from corebench.cli import main
from corebench.compute import scoring
from corebench.compute.datasets import load_dataset
from corebench.core.errors import MAX_MESSAGE_CHARS, SHOWN_CHARS, BenchError
from corebench.core.spec import DatasetSpec
from corebench.drivers import cell as runner_cell
from corebench.store.record import parse_record

from helpers import FAST_GRID

NO_GPU = not torch.cuda.is_available()


@pytest.fixture
def tripwires(monkeypatch):
    """Record any scoring run, training or evaluation that starts."""
    started: list[str] = []

    def trip(name):
        def fn(*args, **kwargs):
            started.append(name)
            raise RuntimeError(f"{name} started")
        return fn

    monkeypatch.setattr(scoring, "run_scoring", trip("scoring"))
    monkeypatch.setattr(runner_cell, "train_model", trip("training"))
    monkeypatch.setattr(runner_cell, "evaluate", trip("evaluation"))
    return started


def _npz(path: Path, **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8), "y_train": np.arange(40) % 4,
              "x_test": rng.integers(0, 256, (12, 8, 8, 1), dtype=np.uint8), "y_test": np.arange(12) % 4}  # fmt: skip
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _npz_files(tmp: Path) -> dict[str, Path]:
    files = {
        "label999999": _npz(tmp / "big.npz", y_train=np.array([999999] + [0] * 39)),
        "label5of3": _npz(tmp / "five.npz", y_train=np.arange(40) % 6),
        "negative": _npz(tmp / "neg.npz", y_test=-(np.arange(12) % 2)),
        "one_class": _npz(tmp / "one.npz", y_train=np.zeros(40, dtype=np.int64), y_test=np.zeros(12, dtype=np.int64)),
        "missing": _npz(tmp / "missing.npz", y_test=None),
        "objects": tmp / "objects.npz",
        "garbage": tmp / "garbage.npz",
        "float_labels": _npz(tmp / "floaty.npz", y_train=np.arange(40) / 3),
        "bad_range": _npz(tmp / "range.npz", x_train=np.full((40, 8, 8, 1), 2.0, dtype=np.float32)),
        "shape": _npz(tmp / "shape.npz", x_test=np.zeros((12, 9, 9, 1), dtype=np.uint8)),
        "count": _npz(tmp / "count.npz", y_train=np.arange(39) % 4),
        "truncated": tmp / "truncated.npz",
        "bad_member": tmp / "member.npz",
        "raw_member": tmp / "raw.npz",
    }
    with zipfile.ZipFile(files["raw_member"], "w") as z:  # members without the .npy magic: numpy returns bytes
        for k in ("x_train", "y_train", "x_test", "y_test"):
            z.writestr(f"{k}.npy", b"plain bytes, not an array")
    np.savez(files["objects"], x_train=np.array([{"a": 1}], dtype=object), y_train=np.zeros(1), x_test=np.zeros(1),
             y_test=np.zeros(1))  # fmt: skip
    files["garbage"].write_bytes(b"this is not a zip file at all")
    good = _npz(tmp / "good.npz").read_bytes()
    files["truncated"].write_bytes(good[: len(good) // 2])
    with zipfile.ZipFile(files["bad_member"], "w") as z:  # a zip whose arrays are not .npy
        for k in ("x_train", "y_train", "x_test", "y_test"):
            z.writestr(f"{k}.npy", b"\x93NUMPY garbage")
    return files


def _npz_grid(path_key: str, **options):
    def changes(files):
        return {"datasets": [{"name": "npz", "path": str(files[path_key]), "options": options}]}
    return changes


# (id, grid changes (a dict, or a function of the npz files), message substring)
GRID_CASES = [
    ("unknown method", {"methods": ["easycor"]}, "methods: 'easycor' is not allowed; allowed: aum, ccs, dyn_unc, easycore"),
    ("unknown dataset", {"datasets": ["cifar11"]}, "datasets: 'cifar11' is not allowed; allowed: cifar10, cifar100"),
    ("unknown regime", {"regimes": ["madry"]}, "regimes: 'madry' is not allowed; allowed: standard, pgd_at, trades"),
    ("fraction above 1", {"fractions": [0.3, 1.5]}, "fractions: 1.5 is not allowed; allowed: numbers in (0, 1]"),
    ("fraction nan", {"fractions": [math.nan]}, "fractions: nan is not allowed"),
    ("fraction text", {"fractions": ["lots"]}, "fractions: 'lots' is not allowed; allowed: a number such as 0.03 or 8/255"),
    ("unknown timm name", {"architectures": ["resnet1800"]}, "architectures: 'resnet1800' is not a timm architecture"),
    ("empty seeds", {"seeds": []}, "seeds: [] is not allowed; allowed: a non-empty list"),
    ("negative seed", {"seeds": [-1]}, "seeds: -1 is not allowed; allowed: integers in [0, 2^31)"),
    ("huge seed", {"seeds": [2**40]}, "seeds: 1099511627776 is not allowed"),
    ("missing cifar root", {"datasets": [{"name": "cifar10", "root": "/nonexistent/cifar"}]}, "datasets.cifar10.root: '/nonexistent/cifar'"),
    ("infinite lr", {"training": {"lr": math.inf}}, "training.lr: inf is not allowed; allowed: a finite number"),
    ("huge lr", {"training": {"lr": 1e6}}, "training.lr: 1000000.0 is not allowed; allowed: a number in (0, 10]"),
    ("scoring lr inf", {"scoring": {"lr": "inf"}}, "scoring.lr: inf is not allowed; allowed: a finite number"),
    ("nan trades beta", {"attack": {"trades_beta": math.nan}}, "attack.trades_beta: nan is not allowed; allowed: a finite number"),
    ("huge trades beta", {"attack": {"trades_beta": 1e9}}, "attack.trades_beta: 1000000000.0 is not allowed; allowed: a number in [0, 100]"),
    ("momentum 1", {"training": {"momentum": 1.0}}, "training.momentum: 1.0 is not allowed; allowed: a number in [0, 1)"),
    ("momentum nan", {"scoring": {"momentum": math.nan}}, "scoring.momentum: nan is not allowed; allowed: a finite number"),
    ("negative weight decay", {"training": {"weight_decay": -0.1}}, "training.weight_decay: -0.1 is not allowed; allowed: a number in [0, 1)"),
    ("weight decay inf", {"scoring": {"weight_decay": math.inf}}, "scoring.weight_decay: inf is not allowed"),
    ("eps zero", {"attack": {"eps": 0}}, "attack.eps: 0 is not allowed; allowed: a number in (0, 1]"),
    ("eps above 1", {"evaluation": {"eps": 2}}, "evaluation.eps: 2 is not allowed; allowed: a number in (0, 1]"),
    ("eps 1/0", {"attack": {"eps": "1/0"}}, "attack.eps: '1/0' is not allowed; allowed: a number such as 0.03 or 8/255"),
    ("zero epochs", {"training": {"epochs": 0}}, "training.epochs: 0 is not allowed; allowed: a positive integer"),
    ("float epochs", {"scoring": {"epochs": 1.5}}, "scoring.epochs: 1.5 is not allowed; allowed: a positive integer"),
    ("zero batch", {"training": {"batch_size": 0}}, "training.batch_size: 0 is not allowed"),
    ("zero n_examples", {"evaluation": {"n_examples": 0}}, "evaluation.n_examples: 0 is not allowed"),
    ("snapshot beyond run", {"scoring": {"epochs": 2, "snapshot_epochs": [5]}}, "scoring.snapshot_epochs: 5 is not allowed"),
    ("custom without attacks", {"evaluation": {"autoattack": {"version": "custom"}}}, "evaluation.autoattack.attacks: None is not allowed"),
    ("unknown attack", {"evaluation": {"autoattack": {"version": "custom", "attacks": ["apgd-x"]}}}, "evaluation.autoattack.attacks: 'apgd-x' is not allowed"),
    ("aa seed negative", {"evaluation": {"autoattack": {"seed": -1}}}, "evaluation.autoattack.seed: -1 is not allowed"),
    ("zero threads", {"threads": 0}, "threads: 0 is not allowed; allowed: an integer in [1, 1024]"),
    ("device tpu", {"device": "tpu"}, "device: 'tpu' is not allowed; allowed: auto, cpu, cuda, cuda:N"),
    ("unknown top-level key", {"trainig": {"epochs": 1}}, "trainig: 'trainig' is not allowed; allowed: top-level keys"),
    ("unknown section key", {"training": {"epoch": 3}}, "training.epoch: 'epoch' is not allowed; allowed: keys epochs"),
    ("empty section key", {"scoring": {"": None}}, "scoring: '' is not allowed; allowed: keys epochs"),
    ("dashed section key", {"training": {"batch-size": 64}}, "training.batch-size: 'batch-size' is not allowed; allowed: keys epochs"),
    ("grid name with a slash", {"name": "a/b"}, "name: 'a/b' is not allowed; allowed: 1 to 255 ASCII letters, digits, '-' and '_'"),
    ("grid name dotdot", {"name": ".."}, "name: '..' is not allowed"),
    ("repeated dataset", {"datasets": ["digits", "digits"]}, "datasets: 'digits' is not allowed; allowed: each dataset once"),
    ("unknown method parameter", {"methods": [{"name": "ccs", "foo": 1}]}, "foo"),
    ("method parameter type", {"methods": [{"name": "easycore", "direction": 3}]}, "direction"),
    ("synthetic too large", {"datasets": [{"name": "synthetic", "options": {"n_train": 10**9}}]}, "datasets.synthetic.options.n_train: 1000000000 is not allowed"),
    ("apgd-t on 2 classes", {"datasets": [{"name": "synthetic"}], "evaluation": {"autoattack": {"version": "standard"}}},
     "evaluation.autoattack.attacks: 'apgd-t' is not allowed with dataset synthetic (2 classes; apgd-t needs at least 4)"),
    ("apgd-dlr on 2 classes", {"datasets": [{"name": "synthetic"}], "evaluation": {"autoattack": {"version": "custom", "attacks": ["apgd-dlr"]}}},
     "'apgd-dlr' is not allowed with dataset synthetic (2 classes; apgd-dlr needs at least 3)"),
    ("apgd-t on 3 classes", {"datasets": [{"name": "synthetic", "options": {"num_classes": 3}}], "evaluation": {"autoattack": {"version": "rand"}, "n_examples": 8}},
     None),  # rand runs apgd-ce and apgd-dlr: 3 classes fit (a control case, it must not fail)
    ("timm kwargs that do not fit", {"architectures": [{"name": "resnet10t", "kwargs": {"no_such_kwarg": 1}}]},
     "architectures.resnet10t.kwargs: {'no_such_kwarg': 1} is not accepted by timm"),
    ("timm kwargs of the wrong shape", {"architectures": [{"name": "resnet10t", "kwargs": {"channels": [4]}}]},
     "architectures.resnet10t.kwargs"),
    ("scorer kwargs that do not fit", {"scoring_architectures": [{"name": "resnet10t", "id": "s", "kwargs": {"bogus": True}}]},
     "architectures.s.kwargs: {'bogus': True} is not accepted by timm"),
    ("vit too big for 8px", {"architectures": [{"name": "vit_tiny_patch16_224", "kwargs": {"img_size": 224}}]},
     "cannot run on digits inputs of shape (1, 8, 8)"),
    ("npz label 999999", _npz_grid("label999999"), "has label 999999, which would mean 1000000 classes; allowed: at most 100000 classes"),
    ("npz label outside num_classes", _npz_grid("label5of3", num_classes=3), "has label 5, outside 0..2"),
    ("npz negative label", _npz_grid("negative"), "has label -1; expected class ids 0..K-1"),
    ("npz one class", _npz_grid("one_class"), "has only class 0; allowed: labels of at least 2 classes"),
    ("npz missing array", _npz_grid("missing"), "lacks arrays ['y_test']"),
    ("npz object arrays", _npz_grid("objects"), "is not a readable .npz of plain arrays"),
    ("npz garbage", _npz_grid("garbage"), "is not a readable .npz of plain arrays"),
    ("npz truncated", _npz_grid("truncated"), "is not a readable .npz of plain arrays"),
    ("npz damaged member", _npz_grid("bad_member"), "is not a readable .npz of plain arrays"),
    ("npz fractional labels", _npz_grid("float_labels"), "has non-integer labels"),
    ("npz pixels outside [0, 1]", _npz_grid("bad_range"), "has values outside [0, 1]"),
    ("npz test images of another shape", _npz_grid("shape"), "allowed: the same shape"),
    ("npz labels and images disagree", _npz_grid("count"), "has 39 labels but x_train has 40 images"),
    ("npz missing file", {"datasets": [{"name": "npz", "path": "/nonexistent.npz"}]}, "datasets.npz.path: '/nonexistent.npz' is not allowed"),
    # issue 23
    ("grid name not ASCII", {"name": "αβ"}, "name: 'αβ' is not allowed; allowed: 1 to 255 ASCII letters"),
    ("grid name over 255 characters", {"name": "a" * 256}, "name: 'aaaa"),
    ("method id over 255 characters", {"methods": [{"name": "random", "id": "m" * 300}]},
     "methods: 'mmmm"),
    ("fraction keeping one sample", {"fractions": [0.0005]},
     "fractions: 0.0005 is not allowed; allowed: fractions keeping at least 2 of the 1347 training samples of digits"),
    ("near-duplicate fractions", {"fractions": [0.3, 0.30000000001]},
     "fractions: 0.30000000001 is not allowed; allowed: fractions that differ in their first 6 significant digits"),
    ("epochs 10^20", {"training": {"epochs": 10**20}},
     "training.epochs: 100000000000000000000 is not allowed; allowed: a positive integer of at most 100000"),
    ("scoring epochs above the cap", {"scoring": {"epochs": 100_001}}, "scoring.epochs: 100001 is not allowed"),
    ("n_examples 10^20", {"evaluation": {"n_examples": 10**20}},
     "evaluation.n_examples: 100000000000000000000 is not allowed; allowed: a positive integer of at most 2147483647"),
    ("n_examples 1e20", {"evaluation": {"n_examples": 1e20}}, "evaluation.n_examples: 1e+20 is not allowed"),
    ("npz member not an npy file", _npz_grid("raw_member"), "(member x_train is not an .npy array)"),
    ("npz num_classes zero", _npz_grid("label5of3", num_classes=0), "datasets.npz.options.num_classes: 0 is not allowed"),
]  # fmt: skip
if NO_GPU:
    GRID_CASES.append(("cuda without a GPU", {"device": "cuda"}, "device: 'cuda' is not allowed; allowed: auto or cpu (no CUDA device is visible here)"))


def _one_line_exit_2(capsys, code: int, message: str | None) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    if message is None:  # a valid grid: compute starts (a tripped scoring run stops the grid, exit 2)
        assert code in (0, 1) or "failed (RuntimeError: scoring started)" in err, err
        return err
    assert code == 2, (code, err, captured.out[-500:])
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("corebench: error: ") and message in err, err
    assert len(err) <= len("corebench: error: ") + MAX_MESSAGE_CHARS and "d" * (SHOWN_CHARS + 1) not in err
    return err


@pytest.mark.parametrize(("changes", "message"), [c[1:] for c in GRID_CASES], ids=[c[0] for c in GRID_CASES])
def test_a_bad_grid_is_one_line_and_exit_2_before_any_compute(tmp_path, capsys, tripwires, changes, message):
    if callable(changes):
        changes = changes(_npz_files(tmp_path))
    grid = {**FAST_GRID, **changes}
    for section in ("scoring", "training", "evaluation"):
        if section in changes and section in FAST_GRID and isinstance(changes[section], dict):
            grid[section] = {**FAST_GRID[section], **changes[section]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(grid))
    code = main(["run", str(path), "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "cache"), "--no-progress"])
    _one_line_exit_2(capsys, code, message)
    if message is not None:
        assert tripwires == [] and not list(tmp_path.rglob("seed*.json"))


def _write_cli_files(tmp: Path) -> None:
    (tmp / "ok.yaml").write_text(yaml.safe_dump({**FAST_GRID, "methods": ["random"]}))
    (tmp / "a_file").write_text("x")
    (tmp / "notyaml.yaml").write_text("name: [unclosed\n")
    (tmp / "list.yaml").write_text("- 1\n- 2\n")
    (tmp / "latin1.yaml").write_bytes("name: caf\u00e9\n".encode("latin-1"))
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]  # a billion laughs: 10^9 x from 1 KB
    laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (tmp / "laughs.yaml").write_text("\n".join(laughs) + "\nname: laughs\n")
    (tmp / "anchor.yaml").write_text(yaml.safe_dump({**FAST_GRID, "methods": ["random"]}).replace(
        "seeds:", "fractions2: &f [0.3]\nseeds:"))
    (tmp / "huge.yaml").write_text("# " + "x" * 1_000_001 + "\nname: huge\n")


def _cli_cases(tmp: Path) -> list[tuple[str, list[str], str]]:
    grid, a_file = tmp / "ok.yaml", tmp / "a_file"
    sel = ["select", "--method", "random", "--dataset", "digits", "--fraction", "0.3", "--out", str(tmp / "k.npy"),
           "--cache", str(tmp / "cache"), "--no-progress"]  # fmt: skip
    run = ["run", str(grid), "--no-progress"]
    cases = [
        ("results path is a file", [*run, "--results", str(a_file), "--cache", str(tmp / "c")], "--results: "),
        ("cache path is a file", [*run, "--results", str(tmp / "r"), "--cache", str(a_file)], "--cache: "),
        ("results under a file", [*run, "--results", str(a_file / "sub"), "--cache", str(tmp / "c")], "--results: "),
        ("grid file missing", ["run", str(tmp / "nope.yaml")], "grid file: "),
        ("grid file not YAML", ["run", str(tmp / "notyaml.yaml")], "not valid YAML"),
        ("grid file a list", ["run", str(tmp / "list.yaml")], "grid: 'list' is not allowed; allowed: a YAML mapping"),
        ("shard out of range", [*run, "--shard", "3/2"], "--shard: '3/2' is not allowed"),
        ("shard not a fraction", [*run, "--shard", "x"], "--shard: 'x' is not allowed"),
        ("select scoring epochs 0", [*sel, "--scoring-epochs", "0"], "--scoring-epochs: 0 is not allowed; allowed: a positive integer"),
        ("select arch kwargs not JSON", [*sel, "--arch", "resnet10t", "--arch-kwargs", "{bad"], "--arch-kwargs: '{bad' is not allowed; allowed: a JSON object"),
        ("select arch kwargs a list", [*sel, "--arch", "resnet10t", "--arch-kwargs", "[1]"],
         "--arch-kwargs: '[1]' is not allowed; allowed: a JSON object"),
        ("select arch kwargs without an arch", [*sel, "--arch-kwargs", '{"drop_rate": 0.1}'],
         "--arch-kwargs: '{\"drop_rate\": 0.1}' is not allowed; allowed: kwargs of the --arch given with it"),
        ("select arch kwargs not JSON, no arch", [*sel, "--arch-kwargs", "{bad"], "--arch-kwargs: '{bad' is not allowed; allowed: a JSON object"),
        ("select arch kwargs timm rejects", [*sel, "--arch", "resnet10t", "--arch-kwargs", '{"bogus": 1}'], "is not accepted by timm"),
        ("select unknown arch", [*sel, "--arch", "resnet1800"], "'resnet1800' is not a timm architecture"),
        ("select negative seed", [*sel, "--seed", "-1"], "--seed: -1 is not allowed; allowed: an integer >= 0"),
        ("select device tpu", [*sel, "--device", "tpu"], "--device: 'tpu' is not allowed; allowed: auto, cpu, cuda, cuda:N"),
        ("select fraction 0", [*sel[:5], "--fraction", "0", *sel[7:]], "--fraction: 0.0 is not allowed"),
        ("select fraction nan", [*sel[:5], "--fraction", "nan", *sel[7:]], "--fraction: nan is not allowed"),
        ("select unknown dataset", [*sel[:3], "--dataset", "nope", *sel[5:]], "--dataset: 'nope' is not allowed"),
        ("select unknown method", ["select", "--method", "nope", *sel[3:]], "'nope' is not allowed"),
        ("select bad param", [*sel, "--param", "novalue"], "--param: 'novalue' is not allowed; allowed: key=value"),
        ("select cache is a file", [*sel[:-3], "--cache", str(a_file), "--no-progress"], "--cache: "),
        ("select out is a folder", [*sel[:7], "--out", str(tmp), *sel[9:]], "--out: "),
        ("leaderboard missing results", ["leaderboard", str(tmp / "none")], "RESULTS_DIR: "),
        ("leaderboard out is a file", ["leaderboard", str(tmp), "--out", str(a_file)], "--out: "),
        ("status missing results", ["status", str(tmp / "none")], "RESULTS_DIR: "),
        ("status with a bad grid", ["status", str(tmp), "--grid", str(tmp / "notyaml.yaml")], "not valid YAML"),
        ("check-method unknown", ["check-method", "nosuchmethod"], "method: 'nosuchmethod' is not allowed"),
        # issue 23
        ("grid file not UTF-8", ["run", str(tmp / "latin1.yaml")], "is not allowed; allowed: UTF-8 text (byte 9"),
        ("grid file of nested aliases", ["run", str(tmp / "laughs.yaml")], "a YAML anchor or alias (&a0 / *a0) at line 1"),
        ("grid file with one anchor", ["run", str(tmp / "anchor.yaml")], "a YAML anchor or alias (&f / *f)"),
        ("grid file over 1 MB", ["run", str(tmp / "huge.yaml")], "allowed: a file of at most 1,000,000 bytes"),
        ("select param of nested aliases", [*sel, "--param", "x=[&a [1, 1, 1], [*a, *a], [*a, *a]]"],
         "--param x: a YAML anchor or alias"),
        ("check-method param alias", ["check-method", "easycore", "--param", "direction=&d x"], "--param direction: a YAML anchor"),
        ("select out under a file", [*sel[:7], "--out", str(a_file / "k.npy"), *sel[9:]],
         "--out: "),
        ("workers above the cores", [*run, "--results", str(tmp / "r"), "--workers", "100000"],
         "--workers: 100000 is not allowed; allowed: 1 to"),
        ("verify missing results", ["verify", str(tmp / "none")], "RESULTS_DIR: "),
        ("verify negative tolerance", ["verify", str(tmp), "--tolerance", "-1"], "--tolerance: -1.0 is not allowed"),
        ("verify a record that is not there", ["verify", str(tmp), "--cell", str(tmp / "x.json")], "--cell: "),
        ("leaderboard out inside results", ["leaderboard", str(tmp), "--out", str(tmp / "boards")],
         "--out: "),
        ("a long value is echoed cut to 200 characters", [*sel[:3], "--dataset", "d" * 5000, *sel[5:]],
         "--dataset: 'dddd"),
        ("check-method bad param", ["check-method", "easycore", "--param", "direction=sideways"], "direction"),
    ]  # fmt: skip
    if NO_GPU:
        cases.append(("select device cuda without a GPU", [*sel, "--device", "cuda"], "--device: 'cuda' is not allowed"))
    return cases


CLI_CASE_IDS = [c[0] for c in _cli_cases(Path("/nonexistent"))]


@pytest.mark.parametrize("case", CLI_CASE_IDS)
def test_bad_command_lines_are_one_line_and_exit_2_before_any_compute(tmp_path, capsys, tripwires, case):
    _write_cli_files(tmp_path)
    (args, message), = [c[1:] for c in _cli_cases(tmp_path) if c[0] == case]
    code = main(args)
    _one_line_exit_2(capsys, code, message)
    assert tripwires == []


def test_the_catalogue_covers_the_issue(tmp_path):
    """At least the issue's cases plus the ones handled before it (its closing note counts them)."""
    assert len(GRID_CASES) + len(CLI_CASE_IDS) >= 100


# --------------------------------------------------------------------------- property tests

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                     st.text(max_size=12), st.sampled_from(["all", "same", "..", "8/255", "1/0", "digits", "random"]))  # fmt: skip
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                       max_leaves=12)  # fmt: skip
_KEYS = ["name", "datasets", "architectures", "fractions", "methods", "regimes", "seeds", "scoring",
         "training", "attack", "evaluation", "device", "threads", "full_data_reference", "scoring_architectures",
         "regime_seeds", "regime_fractions"]
_SECTION_KEYS = ["epochs", "lr", "momentum", "weight_decay", "batch_size", "eps", "step_size", "trades_beta",
                 "steps", "snapshot_epochs", "n_examples", "pgd_steps", "autoattack", "augment", "schedule"]


@st.composite
def grid_documents(draw):
    """A random grid: a valid one with a few keys replaced, or an arbitrary document."""
    if draw(st.booleans()):
        return draw(_values)
    doc = json.loads(json.dumps({**FAST_GRID, "architectures": ["resnet10t"]}))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(_KEYS))
        if key in ("scoring", "training", "attack", "evaluation") and draw(st.booleans()):
            doc[key] = {**(doc.get(key) if isinstance(doc.get(key), dict) else {}),
                        draw(st.sampled_from(_SECTION_KEYS)): draw(_values)}  # fmt: skip
        else:
            doc[key] = draw(_values)
    return doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grid_documents())
def test_random_grid_documents_raise_only_the_suites_errors(doc):
    try:
        parse_grid(doc, source="random.yaml")
    except BenchError as exc:
        assert "\n" not in str(exc)


_dtypes = st.sampled_from(["uint8", "int64", "float32", "float64", "int8", "bool", "uint64", "float16", "complex64"])


@st.composite
def npz_contents(draw):
    """Random arrays under the npz loader's names (some missing, some extra), or damaged bytes."""
    arrays = {}
    for key in draw(st.sets(st.sampled_from(["x_train", "y_train", "x_test", "y_test", "extra"]), min_size=2)):
        shape = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=5)))
        dtype = np.dtype(draw(_dtypes))
        seed = draw(st.integers(0, 2**16))
        values = np.random.default_rng(seed).normal(size=shape) * draw(st.sampled_from([1, 3, 255, 1e6]))
        if draw(st.booleans()):
            values = np.abs(values)
        with np.errstate(all="ignore"):
            arrays[key] = values.astype(dtype)
        if draw(st.integers(0, 9)) == 0 and np.issubdtype(dtype, np.floating) and values.size:
            arrays[key].flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    cut = draw(st.sampled_from([None, None, None, "truncate", "flip"]))
    if cut == "truncate":
        blob = blob[: draw(st.integers(0, len(blob) - 1))]
    elif cut == "flip":
        at = draw(st.integers(0, len(blob) - 1))
        blob = blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1 :]
    return blob


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(blob=npz_contents())
def test_random_npz_contents_raise_only_the_suites_errors(tmp_path, blob):
    path = tmp_path / "random.npz"
    path.write_bytes(blob)
    try:
        data = load_dataset(DatasetSpec("npz", path=str(path)))
    except BenchError as exc:
        assert "\n" not in str(exc)
    else:  # what loads is what the rest of the suite trusts
        assert data.info.num_classes >= 2 and data.x_train.shape[0] == data.y_train.shape[0] > 0
        assert torch.isfinite(data.x_train).all() and 0 <= float(data.x_train.min()) <= float(data.x_train.max()) <= 1
        assert int(data.y_train.max()) < data.info.num_classes and int(data.y_test.min()) >= 0


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.binary(max_size=64), _values.map(lambda v: json.dumps(v, allow_nan=True))))
def test_random_record_texts_raise_only_the_suites_errors(text):
    try:
        parse_record(text)
    except BenchError as exc:
        assert "\n" not in str(exc)


# --------------------------------------------------------------------------- issue 23: the environment


def test_slurm_absent_is_one_line(tmp_path, capsys, monkeypatch, tripwires):
    pytest.importorskip("submitit")
    _write_cli_files(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code = main(["run", str(tmp_path / "ok.yaml"), "--executor", "slurm", "--results", str(tmp_path / "r")])
    _one_line_exit_2(capsys, code, "--executor: 'slurm' is not allowed; allowed: the slurm executor on a Slurm login node (sbatch is not on PATH here)")


def _fast_random_grid(tmp: Path) -> Path:
    grid = {**FAST_GRID, "methods": ["random"], "full_data_reference": False,
            "evaluation": {"n_examples": 16, "pgd_steps": 1, "autoattack": {"enabled": False}}}
    (tmp / "g.yaml").write_text(yaml.safe_dump(grid))
    return tmp / "g.yaml"


def test_a_full_disk_is_one_line_and_keeps_the_checkpoint(tmp_path, capsys, monkeypatch):
    """The record cannot be written (ENOSPC): one line, exit 2, and the cell's last checkpoint is
    kept, so the rerun resumes instead of training again."""
    import errno
    import os

    from corebench.core import files

    grid, results, cache = _fast_random_grid(tmp_path), tmp_path / "r", tmp_path / "c"
    real_replace = os.replace

    def full(src, dst):
        if str(dst).endswith("seed0.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", full)
    code = main(["run", str(grid), "--results", str(results), "--cache", str(cache), "--no-progress"])
    _one_line_exit_2(capsys, code, "seed0.json: cannot be written (No space left on device)")
    assert list((cache / "checkpoints").glob("*.pt")), "the trained cell's checkpoint was lost"
    assert not files.orphans_in(results)
    monkeypatch.setattr(files.os, "replace", real_replace)
    assert main(["run", str(grid), "--results", str(results), "--cache", str(cache), "--no-progress"]) == 0
    assert len(list(results.rglob("seed0.json"))) == 1


def test_a_read_only_results_subfolder_is_one_line(tmp_path, capsys, monkeypatch, tripwires):
    from filelock import FileLock

    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(FileLock, "acquire", refused)
    code = main(["run", str(_fast_random_grid(tmp_path)), "--results", str(tmp_path / "r"),
                 "--cache", str(tmp_path / "c"), "--no-progress"])  # fmt: skip
    _one_line_exit_2(capsys, code, "seed0.lock: cannot be written (Permission denied)")
    assert tripwires == []
