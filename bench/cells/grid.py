"""Grid files (YAML) checked against every registry and turned into a `GridSpec`.

The only module that knows the dataset, architecture and method registries at once. A grid
file has axes that multiply (datasets, architectures, scoring_architectures, regimes,
methods, fractions, seeds) and one section per phase (scoring, training, attack,
evaluation) whose keys all have defaults. Every mistake is reported before any training
starts, as one line that names the field, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from corebench.compute.data import Dataset
from corebench.compute.datasets import list_datasets
from corebench.compute.models import create_model, list_architectures
from corebench.core.checked import build, load_yaml, number, suggest
from corebench.core.errors import ConfigError, invalid, shown
from corebench.core.spec import (
    REGIMES,
    SAME_AS_TARGET,
    ArchSpec,
    AttackConfig,
    Cell,
    Comparison,
    DatasetSpec,
    EvaluationConfig,
    GridSpec,
    MethodSpec,
    ScoringConfig,
    SlurmConfig,
    TrainingConfig,
    check_attacks_fit,
    slug,
)
from corebench.methods import create_method, list_methods
from corebench.methods.base import budget_for
from corebench.methods.registry import all_methods, failed_plugins
from corebench.signals import list_signals, unimportable_hooks, unknown_signals

log = logging.getLogger(__name__)
GRID_NAME = r"[A-Za-z0-9_-]{1,255}"  # spelled as its folder (`spec.slug` keeps exactly these), within a file name's 255 bytes
ALL_METHODS = "all"
MIN_CORESET = 2  # samples a cell trains on at least: a batch of one fails train-mode BatchNorm
SECTIONS = (("scoring", ScoringConfig), ("training", TrainingConfig), ("attack", AttackConfig),
            ("evaluation", EvaluationConfig), ("slurm", SlurmConfig))  # fmt: skip


MAX_GRID_BYTES = 1_000_000  # the paper grids are ~3 KB; a bigger file is a mistake, not a grid


def load_grid(path: str | Path) -> GridSpec:
    """Read and validate a grid file: at most `MAX_GRID_BYTES`, UTF-8, YAML without anchors or
    aliases (`checked.load_yaml`: never executes or expands anything); one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise invalid("grid file", str(path), "an existing YAML file")
    size = path.stat().st_size
    if size > MAX_GRID_BYTES:
        raise invalid("grid file", str(path), f"a file of at most {MAX_GRID_BYTES:,} bytes (this one has {size:,})")
    try:
        with path.open("rb") as f:
            text = f.read(MAX_GRID_BYTES + 1).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid("grid file", str(path), f"UTF-8 text (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise invalid("grid file", str(path), f"a readable file ({exc.strerror or type(exc).__name__})") from None
    spec = parse_grid(load_yaml(text, f"grid file {path}"), source=str(path))
    return dataclasses.replace(spec, datasets=tuple(located(ds, path.parent) for ds in spec.datasets))


def located(ds: DatasetSpec, folder: Path) -> DatasetSpec:
    """A dataset entry whose relative `path` or `root` is taken from the grid file's folder
    (`configs/x.yaml` with `path: ../data/a.npz` reads `data/a.npz`), whatever the working
    directory; spelled relative to the working directory when it can be (records keep a short,
    machine-free spelling), absolute otherwise. `~` and absolute paths are kept. The spelling
    is not the data's identity (its content hash is: `identity.dataset_identity`)."""
    moved = {}
    for name in ("path", "root"):
        value = getattr(ds, name)
        if value and not value.startswith("~") and not Path(value).is_absolute():
            full = os.path.normpath(folder.absolute() / value)
            try:
                moved[name] = os.path.relpath(full)
            except ValueError:  # another drive (Windows)
                moved[name] = full
    return dataclasses.replace(ds, **moved) if moved else ds


def parse_grid(data: Mapping[str, Any], source: str = "") -> GridSpec:
    """Validate a grid mapping (from YAML) against every registry; raise ConfigError."""
    if not isinstance(data, Mapping):
        raise invalid("grid", type(data).__name__, "a YAML mapping")
    allowed_top = sorted({f.name for f in fields(GridSpec)} - {"source"})
    for key in data:
        if key not in allowed_top:
            raise invalid(key, key, "top-level keys " + ", ".join(allowed_top))

    name = data.get("name") or (Path(source).stem if source else "grid")
    if not isinstance(name, str) or not re.fullmatch(GRID_NAME, name):
        raise invalid("name", name, "1 to 255 ASCII letters, digits, '-' and '_' (the name is the results "
                      "folder's name: two names must never share a folder)")

    datasets = tuple(_named(e, "datasets", DatasetSpec) for e in _entries(data.get("datasets"), "datasets"))
    known_ds = list_datasets()
    for ds in datasets:
        if ds.name not in known_ds:
            raise invalid("datasets", ds.name, known_ds)

    architectures = tuple(_named(e, "architectures", ArchSpec) for e in _entries(data.get("architectures"), "architectures"))
    scorers = tuple(
        None if e == SAME_AS_TARGET else _named(e, "scoring_architectures", ArchSpec)
        for e in _entries(data.get("scoring_architectures", [SAME_AS_TARGET]), "scoring_architectures")
    )
    _unique([d.label for d in datasets], "datasets", "each dataset once (give repeats an 'id')")
    _unique([a.label for a in architectures], "architectures", "each architecture once (give repeats an 'id')")
    known_archs = list_architectures()
    for where, arch in [("architectures", a) for a in architectures] + [
        ("scoring_architectures", s) for s in scorers if s is not None
    ]:
        if arch.name not in known_archs:
            raise ConfigError(f"{where}: {shown(arch.name)} is not a timm architecture; allowed: {suggest(arch.name, known_archs)}")

    fractions = tuple(number(f, "fractions") for f in _entries(data.get("fractions"), "fractions"))
    for f in fractions:
        if not 0.0 < f <= 1.0:
            raise invalid("fractions", f, "numbers in (0, 1]")
    _unique(fractions, "fractions")

    methods = _methods(_entries(data.get("methods"), "methods"))

    regimes = tuple(_entries(data.get("regimes"), "regimes"))
    for r in regimes:
        if r not in REGIMES:
            raise invalid("regimes", r, REGIMES)
    _unique(regimes, "regimes")

    seeds = _seeds(data.get("seeds", [0]), "seeds")

    regime_fractions = _regime_fractions(data.get("regime_fractions", {}), regimes, fractions)
    regime_seeds = _regime_seeds(data.get("regime_seeds", {}), regimes)
    reference = _reference(data.get("full_data_reference", True), {*seeds, *(s for v in regime_seeds.values() for s in v)})

    _method_options_fit(methods, datasets, fractions)
    sections = {key: build(cls, data.get(key), key) for key, cls in SECTIONS}
    rest = {k: data[k] for k in ("device", "threads", "correction") if k in data}
    primary = tuple(build(Comparison, e, f"primary[{i}]") for i, e in enumerate(_entries(data["primary"], "primary"))) if "primary" in data else ()
    top = build(GridSpec, {"name": name, "datasets": datasets, "architectures": architectures, "fractions": fractions,
                           "methods": methods, "regimes": regimes, "seeds": seeds, "scoring_architectures": scorers,
                           "regime_fractions": regime_fractions, "regime_seeds": regime_seeds,
                           "full_data_reference": reference, "primary": primary,
                           "source": source, **sections, **rest}, "")  # fmt: skip
    _unique_paths(top)
    _primary_fits(top)
    return top


def _primary_fits(grid: GridSpec) -> None:
    """Each declared comparison names the grid's method ids, a fraction its regime trains and an
    evaluation ε (a one-line error otherwise: a comparison that can never be made)."""
    labels = sorted({m.label for m in grid.methods})
    radii = grid.evaluation.eps or ()
    for i, c in enumerate(grid.primary):
        for name in (c.method, c.against):
            if name not in labels:
                raise invalid(f"primary[{i}].method" if name == c.method else f"primary[{i}].against", name, labels)
        if c.regime not in grid.regimes:
            raise invalid(f"primary[{i}].regime", c.regime, grid.regimes)
        fractions = grid.regime_fractions.get(c.regime, grid.fractions)
        if c.fraction not in fractions:
            raise invalid(f"primary[{i}].fraction", c.fraction, [f"{f:g}" for f in fractions])
        if radii and not any(math.isclose(c.eps, e, rel_tol=1e-9) for e in radii):
            raise invalid(f"primary[{i}].eps", c.eps, "one of evaluation.eps")


def _regime_fractions(raw: Any, regimes: Sequence[str], fractions: Sequence[float]) -> dict[str, tuple[float, ...]]:
    """`regime_fractions: {trades: [0.1]}`: a regime trained at only some of the grid's
    fractions (adversarial training costs several times a standard one)."""
    if not isinstance(raw, Mapping):
        raise invalid("regime_fractions", raw, "a mapping regime -> list of the grid's fractions, e.g. {trades: [0.1]}")
    out = {}
    for regime, entries in raw.items():
        if regime not in regimes:
            raise invalid("regime_fractions", regime, f"a regime of the grid ({', '.join(regimes)})")
        where = f"regime_fractions.{regime}"
        chosen = tuple(number(f, where) for f in _entries(entries, where))
        for f in chosen:
            if f not in fractions:
                raise invalid(where, f, f"fractions of the grid ({', '.join(f'{x:g}' for x in fractions)})")
        _unique(chosen, where)
        out[regime] = tuple(f for f in fractions if f in chosen)  # the grid's order
    return out


def _seeds(raw: Any, where: str) -> tuple[int, ...]:
    """A list of distinct seeds, each an integer numpy and torch accept."""
    seeds = tuple(_entries(raw, where))
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int):
            raise invalid(where, s, "an integer")
        if not 0 <= s < 2**31:
            raise invalid(where, s, "integers in [0, 2^31) (numpy generators reject negative seeds)")
    _unique(seeds, where)
    return seeds


def _regime_seeds(raw: Any, regimes: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """`regime_seeds: {standard: [0, ..., 13]}`: a regime trained over its own seeds instead of
    the grid's `seeds` (a declared comparison whose spread is wider in one regime needs more)."""
    if not isinstance(raw, Mapping):
        raise invalid("regime_seeds", raw, "a mapping regime -> list of seeds, e.g. {standard: [0, 1, 2, 3]}")
    out = {}
    for regime, entries in raw.items():
        if regime not in regimes:
            raise invalid("regime_seeds", regime, f"a regime of the grid ({', '.join(regimes)})")
        out[regime] = _seeds(entries, f"regime_seeds.{regime}")
    return out


def _reference(raw: Any, seeds: set[int]) -> bool | tuple[int, ...]:
    """`full_data_reference`: true (at every seed), false (none) or a list of the grid's seeds
    (the reference row is exploratory: fewer seeds leave the CPU to the declared comparisons)."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float, str, Mapping)) or not isinstance(raw, Sequence):
        raise invalid("full_data_reference", raw, "true, false or a list of the grid's seeds")
    chosen = _seeds(raw, "full_data_reference")
    for s in chosen:
        if s not in seeds:
            raise invalid("full_data_reference", s, f"seeds of the grid ({', '.join(map(str, sorted(seeds)))})")
    return tuple(sorted(chosen))


def check_against_data(spec: GridSpec, datasets: Mapping[DatasetSpec, Dataset]) -> None:
    """What only the loaded data can tell, checked before any compute (a one-line ConfigError):
    the attacks fit each dataset's classes, and every architecture (targets and scorers) builds
    for each dataset and runs one forward pass (timm kwargs that do not fit fail here)."""
    aa = spec.evaluation.autoattack
    scorers = [s for s in spec.scoring_architectures if s is not None]
    for ds, data in datasets.items():
        classes = data.info.num_classes
        n = int(data.x_train.shape[0])
        for f in spec.fractions:  # one sample cannot train (BatchNorm needs two per batch)
            if budget_for(f, n) < MIN_CORESET:
                raise invalid("fractions", f, f"fractions keeping at least {MIN_CORESET} of the {n} training samples "
                              f"of {ds.label} (at least {(MIN_CORESET - 0.5) / n:.3g})")
        check_attacks_fit(aa.run_list() if aa.enabled else (), classes, ds.label)
        for arch in dict.fromkeys([*spec.architectures, *scorers]):
            check_builds(arch, data)


def check_builds(arch: ArchSpec, data: Dataset) -> None:
    """Build `arch` for the dataset once and run a forward pass (`models.create_model`): a
    one-line ConfigError when its kwargs do not fit, before any compute."""
    with torch.random.fork_rng(devices=[]):  # building draws initial weights: leave no trace
        create_model(arch, data.info)


def _entries(raw: Any, field_name: str) -> list[Any]:
    if raw is None or raw == [] or raw == ():
        raise invalid(field_name, raw, "a non-empty list")
    if isinstance(raw, (str, int, float, Mapping)):
        raw = [raw]
    if not isinstance(raw, Sequence):
        raise invalid(field_name, raw, "a non-empty list")
    return list(raw)


def _named(entry: Any, field_name: str, cls: type) -> Any:
    """An axis entry: a bare name or a mapping with `name` and the entry's keys."""
    if isinstance(entry, str):
        return cls(name=entry)
    if not isinstance(entry, Mapping) or "name" not in entry:
        raise invalid(field_name, entry, "a name or a mapping with a 'name' key")
    where = f"{field_name}.{entry['name']}" if isinstance(entry["name"], str) else field_name
    return build(cls, entry, where)


def _methods(raw: list[Any]) -> tuple[MethodSpec, ...]:
    """Method entries: names, `all` (every registered method whose `in_all` is set, plug-ins
    included, with their defaults; not the methods built on adversarial scoring runs), or {name, id, parameters}. `all` combines with named entries: an entry whose
    label (its `id`, else its name) is one `all` brought in replaces that entry in place (so
    `[all, {name: el2n, n_runs: 10, id: el2n}]` sets EL2N's runs); another variant needs a
    label of its own.

    A method whose declared signals no scoring run can record (an unknown signal, or a plug-in
    signal whose compute hook cannot be imported) is a ConfigError naming it when the grid
    names it; one that only `all` brought in stays in the grid with a warning, and only its
    own cells fail (with that message) when the grid runs.
    """
    out: list[MethodSpec] = []
    from_all: set[MethodSpec] = set()
    for e in raw:
        if e == ALL_METHODS:
            broken = failed_plugins()
            if broken:  # `all` would silently be a smaller grid
                name = sorted(broken)[0]
                raise ConfigError(f"methods: all: the method plug-in {broken[name]}; fix or uninstall its "
                                  f"package, or list the methods by name instead of 'all'")
            for name in all_methods():
                spec = MethodSpec(name)
                if spec not in out:
                    out.append(spec)
                    from_all.add(spec)
                    problem = _unrecordable(spec)
                    if problem:
                        log.warning("methods: all: %s; its cells will fail, the rest of the grid runs", problem)
            continue
        if isinstance(e, Mapping):
            e = dict(e)
            if not isinstance(e.get("name"), str):
                raise invalid("methods", e, "a method name or a mapping with 'name' and its parameters")
            spec = build(MethodSpec, {"name": e.pop("name"), "id": e.pop("id", ""), "params": e}, "methods")
        elif isinstance(e, str):
            spec = MethodSpec(name=e)
        else:
            raise invalid("methods", e, "a method name or a mapping with 'name' and its parameters")
        if spec.name not in list_methods():
            raise invalid("methods", spec.name, list_methods())
        create_method(spec.name, **spec.params)  # validates the parameters now
        problem = _unrecordable(spec)
        if problem:
            raise ConfigError(f"methods: {problem}")
        taken = next((s for s in from_all if s.label == spec.label), None)
        if taken is not None:  # a named entry with the label of one `all` brought in replaces it
            out[out.index(taken)] = spec
            from_all.discard(taken)
            continue
        out.append(spec)
    _unique([m.label for m in out], "methods", "each method entry once (give repeats an 'id')")
    return tuple(out)


def _unrecordable(spec: MethodSpec) -> str:
    """Why no scoring run can give the method its declared signals, or '' when one can."""
    declared = create_method(spec.name, **spec.params).required_signals()
    unknown = unknown_signals(declared)
    if unknown:
        return (f"method {spec.label!r} declares signal {unknown[0]!r}, which no scoring run records; "
                f"known: {', '.join(list_signals())}")
    broken = unimportable_hooks(declared)
    if broken:
        name = sorted(broken)[0]
        return f"method {spec.label!r} declares plug-in signal {name!r}, whose {broken[name]}"
    return ""

def _method_options_fit(methods: Sequence[MethodSpec], datasets: Sequence[DatasetSpec], fractions: Sequence[float]) -> None:
    """Every method entry has its options on every dataset and fraction of the grid (e.g. CCS's
    β: a dataset without a reference table needs it set), before any training."""
    for spec in methods:
        method = create_method(spec.name, **spec.params)
        for ds in datasets:
            for f in fractions:
                try:
                    method.options_for(f, ds.name)
                except ConfigError as exc:
                    raise ConfigError(f"methods.{spec.label}.{exc}") from None


def _unique(values: Sequence[Any], field_name: str, allowed: str = "each entry once") -> None:
    """Repeated axis entries would give two cells the same results path."""
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise invalid(field_name, v, allowed)
        seen.add(v)


def _unique_paths(grid: GridSpec) -> None:
    """Two cells with one results path would overwrite (or skip) each other: e.g. a scorer with
    the same label as the target but other kwargs, or labels that differ only in odd characters."""
    seen: dict[Path, Cell] = {}
    for cell in grid.cells():
        path = cell.relpath(grid.name)
        long = next((part for part in path.parts if len(part.encode()) > 255), None)
        if long is not None:  # a file name's limit on every common filesystem
            where = next(w for w, label in (("datasets", cell.dataset.label), ("architectures", cell.arch.label),
                                            ("methods", cell.method.label)) if slug(label) == long)
            raise invalid(where, long, "labels (names or ids) of at most 255 characters (each is a folder name)")
        other = seen.setdefault(path, cell)
        if other is cell:
            continue
        if other.fraction != cell.fraction:  # the folder spells a fraction with 6 significant digits
            raise invalid("fractions", cell.fraction, f"fractions that differ in their first 6 significant digits "
                          f"({other.fraction!r} and {cell.fraction!r} share {path.parent.as_posix()})")
        pairs = (("datasets", other.dataset, cell.dataset), ("architectures", other.arch, cell.arch),
                 ("methods", other.method, cell.method), ("scoring_architectures", other.scoring_arch, cell.scoring_arch))
        where, _, spec = next((p for p in pairs if p[1] != p[2]), pairs[-1])
        raise invalid(where, spec.label, f"entries with distinct labels (two cells share {path.as_posix()}; give one an 'id')")
