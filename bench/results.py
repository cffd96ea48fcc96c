"""The results store: one JSON record per cell, written atomically, read back validated.

A record (docs/RESULTS.md) is the only thing a leaderboard is built from, so it is checked on
the way in and on the way out:

- `write_record` serialises first (sorted keys, `allow_nan=False`), then writes a temp file in
  the same folder and `os.replace`s it, so a crash or an unserialisable value never leaves a
  half-written or stale-looking record behind.
- `read_record` validates the schema and names the file and the field in its error, because a
  malformed record found among 10,000 is only fixable if the message says which and why.
- `scan`/`load` skip malformed files by default (reporting each) so one bad file does not hide
  a whole board; `strict=True` turns the first problem into a `ResultsError`.

Evaluation protocol. Two records are comparable only when made under the same protocol:
`(norm, eps, AutoAttack version, AutoAttack attack list, n_examples)`. An AutoAttack attack
list left empty in the config is resolved to the version's own list (pyautoattack's), so
"standard" with no list and "standard" with its list spelled out are the same protocol. With
AutoAttack disabled, the robust number is PGD-k accuracy and the protocol names PGD-k instead.
`load` gives every row a `protocol` key; the leaderboards never put two protocols in one table.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from corebench.config import stable_hash, to_jsonable
from corebench.errors import ResultsError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
KNOWN_SCHEMA_VERSIONS = frozenset({1})
STATUSES = ("ok", "failed")

# pyautoattack's attack lists per version (Linf/L2), so an empty list means something definite.
AUTOATTACK_VERSION_ATTACKS: dict[str, tuple[str, ...]] = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}

# Columns of `load()`, in order. Cell key first, then outcome, metrics, protocol, provenance.
KEY_COLUMNS = ("dataset", "arch", "scoring_arch", "regime", "method", "method_label", "fraction", "seed")
METRIC_COLUMNS = ("clean_acc", "pgd_acc", "autoattack_acc", "n_eval")
PROTOCOL_COLUMNS = (
    "norm",
    "eps",
    "autoattack_enabled",
    "autoattack_version",
    "autoattack_attacks",
    "n_examples",
    "pgd_steps",
)
TIMING_COLUMNS = ("scoring_s", "selection_s", "train_s", "eval_s", "total_s")
COLUMNS = (
    ("grid",)
    + KEY_COLUMNS
    + ("status", "error")
    + METRIC_COLUMNS
    + PROTOCOL_COLUMNS
    + ("protocol", "grid_source", "cell_id")
    + TIMING_COLUMNS
    + ("device", "git_commit", "path")
)


# --------------------------------------------------------------------------- writing


def write_record(path: Path, record: dict) -> None:
    """Write one record atomically: serialise, write a temp file beside it, `os.replace`.

    Serialising before touching the disk means a NaN accuracy or an odd object raises
    `ResultsError` and leaves neither the record nor a temp file.
    """
    path = Path(path)
    try:
        text = json.dumps(to_jsonable(record), sort_keys=True, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ResultsError(f"{path}: record cannot be written as JSON ({exc})") from None
    write_atomic(path, lambda f: f.write((text + "\n").encode()))


def write_bytes_atomic(path: Path, data: bytes, *, fsync: bool = True, mkdir: bool = True) -> None:
    """Replace `path` with `data` atomically (generated files pass fsync=False: regenerable)."""
    write_atomic(Path(path), lambda f: f.write(data), fsync=fsync, mkdir=mkdir)


def write_indices(path: Path, indices: np.ndarray) -> None:
    """Save the kept indices atomically as a sorted int64 `.npy` (no pickling)."""
    path = Path(path)
    arr = np.asarray(indices)
    if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise ResultsError(f"{path}: indices must be a 1-D integer array, got {arr.dtype} {arr.shape}")
    arr = np.sort(arr.astype(np.int64))
    write_atomic(path, lambda f: np.save(f, arr, allow_pickle=False))


def write_atomic(
    path: Path, write: Callable[[Any], object], *, fsync: bool = True, mkdir: bool = True
) -> None:
    """Write through `write(file)` to a temp file in the same folder, then rename over `path`.

    The temp name is made here (not `mkstemp`) so the file gets the umask's permissions
    rather than 0600; it ends in `.tmp`, so `scan` never mistakes it for a record.
    """
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- reading


def read_record(path: Path) -> dict:
    """Parse and validate one record; `ResultsError("<path>: <what is wrong>")` otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot be read ({exc})") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc}); a partial or hand-edited file?") from None
    problem = validate_record(record)
    if problem:
        raise ResultsError(f"{path}: {problem}")
    return record


def is_done(path: Path) -> bool:
    """True for a readable, valid record with status ok; failed or malformed cells are retried."""
    try:
        return read_record(path)["status"] == "ok"
    except ResultsError:
        return False


def scan(results_dir: Path) -> tuple[list[dict], list[tuple[Path, str]]]:
    """Every `*.json` record under `results_dir` in sorted path order.

    Returns the valid records, each with `_path` (the file) added, and the problems as
    `(path, reason)` with the reason not repeating the path.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ResultsError(f"{results_dir}: no such results directory")
    records: list[dict] = []
    problems: list[tuple[Path, str]] = []
    with gc_paused():
        paths = sorted(results_dir.rglob("*.json"))
        for path in paths:
            _read_into(path, records, problems)
    return records, problems


def _read_into(path: Path, records: list[dict], problems: list[tuple[Path, str]]) -> None:
    if path.is_file():
        try:
            record = read_record(path)
        except ResultsError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            log.warning("skipping %s: %s", path, reason)
            problems.append((path, reason))
            return
        record["_path"] = path
        records.append(record)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause automatic garbage collection while building many long-lived objects.

    Parsing 10,000 records makes millions of containers; each automatic full collection
    walks them all, which more than doubles the parse time. JSON builds no reference cycles,
    so nothing is lost by waiting until the end.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load(results_dir: str | Path, *, strict: bool = False) -> pd.DataFrame:
    """All records under `results_dir` as a DataFrame, one row per cell (columns: `COLUMNS`).

    Malformed files are skipped with a warning; `strict=True` raises `ResultsError` naming the
    first one instead.
    """
    records, problems = scan(Path(results_dir))
    if strict and problems:
        path, reason = problems[0]
        raise ResultsError(f"{path}: {reason}")
    return frame(records)


def frame(records: list[dict]) -> pd.DataFrame:
    """Records (as returned by `scan`) flattened into the `load()` DataFrame."""
    rows = [flatten(r) for r in records]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    if df.empty:
        return df
    for col in ("fraction", "eps", *METRIC_COLUMNS[:3], *TIMING_COLUMNS):
        df[col] = df[col].astype(float)
    for col in ("seed", "n_examples", "pgd_steps"):
        df[col] = df[col].astype(np.int64)
    df["n_eval"] = df["n_eval"].astype("Int64")  # missing (NA) for failed cells
    df["autoattack_enabled"] = df["autoattack_enabled"].astype(bool)
    return df


def flatten(record: Mapping[str, Any]) -> dict[str, Any]:
    """One validated record as one `load()` row (a dict with the keys of `COLUMNS`)."""
    cell = record["cell"]
    metrics = record.get("metrics") or {}
    timings = record.get("timings") or {}
    proto = protocol_of(record)
    row: dict[str, Any] = {"grid": record["grid"]["name"]}
    row.update({k: cell[k] for k in KEY_COLUMNS})
    row["status"] = record["status"]
    row["error"] = record.get("error")
    for k in METRIC_COLUMNS:
        row[k] = metrics.get(k) if record["status"] == "ok" else None
    row.update(proto)
    row["autoattack_attacks"] = ",".join(proto["autoattack_attacks"])
    row["protocol"] = protocol_key(proto)
    row["grid_source"] = record["grid"].get("source") or ""
    row["cell_id"] = record["cell_id"]
    for k in TIMING_COLUMNS:
        row[k] = timings.get(k)
    row["device"] = record.get("device")
    row["git_commit"] = (record.get("versions") or {}).get("git_commit")
    row["path"] = str(record.get("_path", ""))
    return row


# --------------------------------------------------------------------------- protocol


def protocol_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation protocol of a record: what must match for two numbers to be compared."""
    ev = record["config"]["evaluation"]
    aa = ev.get("autoattack") or {}
    enabled = bool(aa.get("enabled", True))
    version = aa.get("version", "standard")
    attacks = aa.get("attacks")
    if not attacks:
        attacks = AUTOATTACK_VERSION_ATTACKS.get(version, ())
    return {
        "norm": ev["norm"],
        "eps": float(ev["eps"]),
        "autoattack_enabled": enabled,
        "autoattack_version": version,
        "autoattack_attacks": tuple(attacks),
        "n_examples": int(ev["n_examples"]),
        "pgd_steps": int(ev.get("pgd_steps") or 0),
    }


def protocol_key(proto: Mapping[str, Any]) -> str:
    """A canonical string for grouping: equal exactly when the protocols are equal."""
    if proto["autoattack_enabled"]:
        attack = f"autoattack={proto['autoattack_version']}:{'+'.join(proto['autoattack_attacks'])}"
    else:
        attack = f"pgd{proto['pgd_steps']}"
    return f"{proto['norm']}|eps={float(proto['eps'])!r}|{attack}|n={proto['n_examples']}"


# --------------------------------------------------------------------------- validation


def validate_record(record: Any) -> str | None:
    """What is wrong with a record (one line naming the field), or None when it is valid."""
    if not isinstance(record, dict):
        return f"top level is {type(record).__name__}; expected a JSON object"
    required = (
        "schema_version", "cell_id", "status", "error", "grid", "cell", "method_options",
        "config", "metrics", "coreset", "timings", "versions", "device",
    )  # fmt: skip
    missing = [k for k in required if k not in record]
    if missing:
        return f"missing key(s) {', '.join(missing)} (a partial record?)"
    version = record["schema_version"]
    if not _is_int(version) or version not in KNOWN_SCHEMA_VERSIONS:
        known = ", ".join(str(v) for v in sorted(KNOWN_SCHEMA_VERSIONS))
        return f"schema_version: {version!r} is not known; known: {known}"
    status = record["status"]
    if status not in STATUSES:
        return f"status: {status!r} is not allowed; allowed: {', '.join(STATUSES)}"
    checks: list[tuple[str, Any, Callable[[Any], bool], str]] = [
        ("cell_id", record["cell_id"], _nonempty_str, "a non-empty string"),
        ("grid", record["grid"], _is_dict, "an object"),
        ("cell", record["cell"], _is_dict, "an object"),
        ("method_options", record["method_options"], _is_dict, "an object"),
        ("config", record["config"], _is_dict, "an object"),
        ("versions", record["versions"], _is_dict, "an object"),
        ("timings", record["timings"], _dict_or_none, "an object or null"),
        ("coreset", record["coreset"], _dict_or_none, "an object or null"),
        ("device", record["device"], _str_or_none, "a string or null"),
    ]
    if status == "failed":
        checks.append(("error", record["error"], _nonempty_str, "a one-line error message when status is failed"))
    else:
        checks.append(("error", record["error"], _str_or_none, "null or a string"))
    problem = _run_checks(checks)
    if problem:
        return problem

    grid, cell, config = record["grid"], record["cell"], record["config"]
    checks = [
        ("grid.name", grid.get("name"), _nonempty_str, "a non-empty string"),
        ("grid.source", grid.get("source"), _str_or_none, "a string or null"),
    ]
    for key in ("dataset", "arch", "scoring_arch", "regime", "method", "method_label"):
        checks.append((f"cell.{key}", cell.get(key), _nonempty_str, "a non-empty string"))
    checks += [
        ("cell.fraction", cell.get("fraction"), _is_fraction, "a number in (0, 1]"),
        ("cell.seed", cell.get("seed"), _is_int, "an integer"),
        ("config.evaluation", config.get("evaluation"), _is_dict, "an object"),
    ]
    for key in ("training", "attack", "scoring"):
        if key in config:
            checks.append((f"config.{key}", config[key], _dict_or_none, "an object or null"))
    problem = _run_checks(checks)
    if problem:
        return problem

    ev = config["evaluation"]
    aa = ev.get("autoattack", {})
    checks = [
        ("config.evaluation.norm", ev.get("norm"), _nonempty_str, "a string such as Linf"),
        ("config.evaluation.eps", ev.get("eps"), _is_nonnegative, "a number >= 0 (the resolved ε)"),
        ("config.evaluation.n_examples", ev.get("n_examples"), _is_positive_int, "a positive integer"),
        ("config.evaluation.pgd_steps", ev.get("pgd_steps"), _int_or_none, "an integer"),
        ("config.evaluation.autoattack", aa, _is_dict, "an object"),
    ]
    problem = _run_checks(checks)
    if problem:
        return problem
    checks = [
        ("config.evaluation.autoattack.version", aa.get("version", "standard"), _nonempty_str, "a string"),
        ("config.evaluation.autoattack.attacks", aa.get("attacks"), _str_list_or_none, "a list of attack names or null"),
        ("config.evaluation.autoattack.enabled", aa.get("enabled", True), _is_bool, "true or false"),
    ]
    problem = _run_checks(checks)
    if problem:
        return problem

    if status == "ok":
        metrics = record["metrics"]
        if not isinstance(metrics, dict):
            return f"metrics: {_show(metrics)} is not allowed for status ok; expected an object"
        aa_on = aa.get("enabled", True)
        checks = [
            ("metrics.clean_acc", metrics.get("clean_acc"), _is_accuracy, "a number in [0, 100] (percent)"),
            ("metrics.n_eval", metrics.get("n_eval"), _is_positive_int, "a positive integer"),
            ("metrics.pgd_acc", metrics.get("pgd_acc"), _accuracy_or_none, "a number in [0, 100] or null"),
        ]
        if aa_on:
            checks.append(("metrics.autoattack_acc", metrics.get("autoattack_acc"), _is_accuracy,
                           "a number in [0, 100] (percent), as AutoAttack is enabled"))  # fmt: skip
        else:
            checks.append(("metrics.pgd_acc", metrics.get("pgd_acc"), _is_accuracy,
                           "a number in [0, 100] (percent), as AutoAttack is disabled"))  # fmt: skip
        problem = _run_checks(checks)
        if problem:
            return problem
    if record["timings"]:
        for key, value in sorted(record["timings"].items()):
            if not _number_or_none(value):
                return f"timings.{key}: {_show(value)} is not allowed; expected a number of seconds"
    return None


def _run_checks(checks: list[tuple[str, Any, Callable[[Any], bool], str]]) -> str | None:
    for where, value, ok, expected in checks:
        if not ok(value):
            return f"{where}: {_show(value)} is not allowed; expected {expected}"
    return None


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if value is None:
        return "null (or missing)"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _dict_or_none(v: Any) -> bool:
    return v is None or isinstance(v, dict)


def _str_or_none(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _nonempty_str(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _int_or_none(v: Any) -> bool:
    return v is None or _is_int(v)


def _is_nonnegative(v: Any) -> bool:
    return _is_number(v) and v >= 0


def _is_positive_int(v: Any) -> bool:
    return _is_int(v) and v > 0


def _is_fraction(v: Any) -> bool:
    return _is_number(v) and 0 < v <= 1


def _is_accuracy(v: Any) -> bool:
    return _is_number(v) and 0 <= v <= 100


def _accuracy_or_none(v: Any) -> bool:
    return v is None or _is_accuracy(v)


def _number_or_none(v: Any) -> bool:
    return v is None or _is_number(v)


def _str_list_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, list) and all(_nonempty_str(a) for a in v))


# --------------------------------------------------------------------------- examples


def example_record(
    *,
    grid: str = "example",
    dataset: str = "digits",
    arch: str = "resnet18",
    regime: str = "standard",
    method: str = "random",
    method_label: str | None = None,
    fraction: float = 0.3,
    seed: int = 0,
    clean_acc: float | None = 90.0,
    autoattack_acc: float | None = 40.0,
    pgd_acc: float | None = None,
    error: str | None = None,
    eps: float = 32 / 255,
    n_examples: int = 450,
    autoattack_version: str = "custom",
    autoattack_attacks: list[str] | None = None,
) -> dict[str, Any]:
    """A valid record of the docs/RESULTS.md shape (failed when `error` is given).

    For tests, benchmarks and documentation: everything not passed is a fixed, plausible value,
    so the same arguments always give the same record.
    """
    if method_label is None:
        method_label = method
    if autoattack_attacks is None and autoattack_version == "custom":
        autoattack_attacks = ["apgd-ce", "apgd-t"]
    failed = error is not None
    key = {
        "dataset": dataset, "arch": arch, "scoring_arch": arch, "regime": regime,
        "method": method, "method_label": method_label, "fraction": fraction, "seed": seed,
    }  # fmt: skip
    options = {} if method == "full" else {"class_balanced": False}
    if method == "easycore":
        options = {"class_balanced": False, "direction": "easiest", "gradient_pass": "train"}
    evaluation = {
        "n_examples": n_examples, "batch_size": 500, "norm": "Linf", "eps": eps, "pgd_steps": 20,
        "pgd_step_size": eps / 4,
        "autoattack": {"version": autoattack_version, "attacks": autoattack_attacks, "seed": 0,
                       "enabled": True},
    }  # fmt: skip
    config = {
        "dataset": {"name": dataset, "root": None, "download": False, "path": None, "options": {}, "id": ""},
        "arch": {"name": arch, "kwargs": {}, "small_input_stem": None, "id": ""},
        "scoring_arch": {"name": arch, "kwargs": {}, "small_input_stem": None, "id": ""},
        "scoring": {"epochs": 10, "batch_size": 128, "lr": 0.1, "momentum": 0.9, "nesterov": True,
                    "weight_decay": 0.0005, "augment": True, "snapshot_epochs": [0],
                    "feature_batch_size": 512},
        "training": {"epochs": 15, "batch_size": 128, "lr": 0.1, "momentum": 0.9, "nesterov": True,
                     "weight_decay": 0.0005, "schedule": "cosine", "augment": True},
        "attack": {"eps": eps, "step_size": eps / 4, "steps": 10, "random_start": True, "trades_beta": 6.0},
        "evaluation": evaluation,
    }  # fmt: skip
    n_eval = min(n_examples, 450)
    if pgd_acc is None and autoattack_acc is not None:
        pgd_acc = min(100.0, autoattack_acc + 1.5)
    metrics = None
    coreset = None
    if not failed:
        metrics = {
            "clean_acc": clean_acc, "pgd_acc": pgd_acc, "autoattack_acc": autoattack_acc,
            "n_eval": n_eval,
            "autoattack_per_attack": {"clean": clean_acc, "apgd-ce": pgd_acc, "apgd-t": autoattack_acc},
        }  # fmt: skip
        n_train = 1347
        coreset = {
            "n_train": n_train, "size": max(1, round(fraction * n_train)),
            "indices_file": f"seed{seed}.indices.npy", "class_histogram": [],
        }  # fmt: skip
    return {
        "schema_version": SCHEMA_VERSION,
        "cell_id": stable_hash([key, config, options]),
        "status": "failed" if failed else "ok",
        "error": error,
        "grid": {"name": grid, "source": f"configs/{grid}.yaml"},
        "cell": key,
        "method_options": options,
        "config": config,
        "metrics": metrics,
        "coreset": coreset,
        "timings": {"scoring_s": 12.0, "selection_s": 0.01, "train_s": 20.0, "eval_s": 5.0, "total_s": 37.01},
        "versions": {"corebench": "0.1.0", "python": "3.11.7", "torch": "2.14.1", "torchvision": "0.29.1",
                     "timm": "1.0.31", "pyautoattack": "0.2.0", "numpy": "2.4.6", "git_commit": "abc1234"},
        "device": "cpu",
    }  # fmt: skip


def record_relpath(record: Mapping[str, Any]) -> Path:
    """Where a record lives under the results folder (docs/RESULTS.md; path-safe labels assumed)."""
    c = record["cell"]
    return (
        Path(record["grid"]["name"]) / c["dataset"] / c["arch"] / c["regime"]
        / c["method_label"] / f"f{c['fraction']:g}" / f"seed{c['seed']}.json"
    )  # fmt: skip
