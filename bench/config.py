"""Grid files (YAML) turned into validated, frozen dataclasses and expanded into cells.

A grid file has six axes that multiply (datasets, architectures, scoring_architectures,
regimes, methods, fractions, seeds) and one section per phase (scoring, training, attack,
evaluation) whose keys all have defaults. Every mistake is reported before any training
starts, as one line that names the field, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml
from corebench.errors import ConfigError, invalid

Regime = Literal["standard", "pgd_at", "trades"]
REGIMES: tuple[str, ...] = get_args(Regime)
# the attack names pyautoattack's AutoAttack runs (its `AttackName` literal)
AUTOATTACK_ATTACKS: tuple[str, ...] = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
FULL_DATA = "full"  # method name of the full-data reference cells
SAME_AS_TARGET = "same"  # scoring architecture placeholder: score with the target architecture


# --------------------------------------------------------------------------- axis entries


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the grid. `options` go to the dataset's loader (e.g. synthetic sizes)."""

    name: str
    root: str | None = None  # torchvision datasets: folder holding the files
    download: bool = False  # opt-in for users with internet
    path: str | None = None  # npz datasets: the file
    options: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""  # label in results and boards; defaults to name

    def __hash__(self) -> int:  # mappings inside: hash the JSON form
        return hash(stable_hash(self))

    @property
    def label(self) -> str:
        return self.id or self.name


@dataclass(frozen=True)
class ArchSpec:
    """A timm architecture by name plus kwargs passed through to `timm.create_model`."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    small_input_stem: bool | None = None  # None: on for inputs of 64 px or less
    id: str = ""

    def __hash__(self) -> int:  # mappings inside: hash the JSON form
        return hash(stable_hash(self))

    @property
    def label(self) -> str:
        return self.id or self.name


@dataclass(frozen=True)
class MethodSpec:
    """A registered coreset method with its parameters (validated by the method's dataclass)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""

    def __hash__(self) -> int:  # mappings inside: hash the JSON form
        return hash(stable_hash(self))

    @property
    def label(self) -> str:
        if self.id:
            return self.id
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={_short(v)}" for k, v in sorted(self.params.items()))
        return f"{self.name}[{inner}]"


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_short(v) for v in value)
    if isinstance(value, Mapping):
        return "-".join(f"{k}{_short(v)}" for k, v in sorted(value.items()))
    return str(value)


# --------------------------------------------------------------------------- phase sections


@dataclass(frozen=True)
class ScoringConfig:
    """The proxy training run on the FULL train set that records per-sample signals.

    Defaults follow the EasyCore setup (AIGN averaged over every epoch of a normal training
    run). Snapshot signals (GraNd, eval-mode EL2N) are taken only at `snapshot_epochs`, as the
    references score one checkpoint: None means (0, ⌈0.1·epochs⌉), i.e. at initialisation
    (GraNd, Paul et al. 2021) and 10 % into training (EL2N: epoch 20 of 200).
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    augment: bool = True
    snapshot_epochs: tuple[int, ...] | None = None  # 0 = at initialisation

    def snapshots(self) -> tuple[int, ...]:
        """The snapshot epochs, sorted, with the default filled in."""
        if self.snapshot_epochs is not None:
            return tuple(sorted(set(self.snapshot_epochs)))
        return (0, max(1, math.ceil(0.1 * self.epochs - 1e-9)))


@dataclass(frozen=True)
class TrainingConfig:
    """Training of the target model on the coreset (same epochs for every fraction)."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    augment: bool = True


@dataclass(frozen=True)
class AttackConfig:
    """The training-time attack of PGD-AT (Madry et al. 2018) and TRADES (Zhang et al. 2019).

    `eps` None means the dataset's default (8/255 on CIFAR/SVHN). `step_size` None means
    eps/4 (2/255 at 8/255, the references' value).
    """

    eps: float | None = None
    step_size: float | None = None
    steps: int = 10
    random_start: bool = True
    trades_beta: float = 6.0


@dataclass(frozen=True)
class AutoAttackConfig:
    """AutoAttack (Croce & Hein 2020) through `pyautoattack`; 'standard' as RobustBench runs it."""

    version: Literal["standard", "plus", "rand", "custom"] = "standard"
    attacks: tuple[str, ...] | None = None  # only with version 'custom'
    seed: int = 0
    enabled: bool = True


@dataclass(frozen=True)
class EvaluationConfig:
    """Clean, PGD-k and AutoAttack accuracy on the first `n_examples` test images."""

    n_examples: int = 1000
    batch_size: int = 500
    norm: Literal["Linf"] = "Linf"
    eps: float | None = None  # None: the dataset's default
    pgd_steps: int = 20
    pgd_step_size: float | None = None  # None: eps/4
    autoattack: AutoAttackConfig = field(default_factory=AutoAttackConfig)


@dataclass(frozen=True)
class GridSpec:
    """A whole grid file, validated."""

    name: str
    datasets: tuple[DatasetSpec, ...]
    architectures: tuple[ArchSpec, ...]
    fractions: tuple[float, ...]
    methods: tuple[MethodSpec, ...]
    regimes: tuple[str, ...]
    seeds: tuple[int, ...]
    scoring_architectures: tuple[ArchSpec | None, ...] = (None,)  # None: same as target
    full_data_reference: bool = True
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    device: str = "auto"
    source: str = ""  # the grid file it came from

    def cells(self) -> list[Cell]:
        """Every cell of the grid, in a fixed order; full-data references first."""
        out: list[Cell] = []
        for ds in self.datasets:
            for arch in self.architectures:
                for regime in self.regimes:
                    for seed in self.seeds:
                        if self.full_data_reference:
                            out.append(Cell(ds, arch, arch, regime, MethodSpec(FULL_DATA), 1.0, seed))
                        for scorer in self.scoring_architectures:
                            for method in self.methods:
                                for fraction in self.fractions:
                                    out.append(
                                        Cell(ds, arch, scorer or arch, regime, method, fraction, seed)
                                    )
        return out


@dataclass(frozen=True)
class Cell:
    """One trained-and-attacked model: dataset × arch × scorer × regime × method × fraction × seed."""

    dataset: DatasetSpec
    arch: ArchSpec
    scoring_arch: ArchSpec
    regime: str
    method: MethodSpec
    fraction: float
    seed: int

    @property
    def method_label(self) -> str:
        """The method's row label; names the scorer when it differs from the target."""
        if self.scoring_arch.label != self.arch.label and self.method.name != FULL_DATA:
            return f"{self.method.label}@{self.scoring_arch.label}"
        return self.method.label

    def key(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset.label,
            "arch": self.arch.label,
            "scoring_arch": self.scoring_arch.label,
            "regime": self.regime,
            "method": self.method.name,
            "method_label": self.method_label,
            "fraction": self.fraction,
            "seed": self.seed,
        }

    def relpath(self, grid_name: str) -> Path:
        """Where its record lives: the path spells the key (RobustBench-style)."""
        return (
            Path(grid_name)
            / _safe(self.dataset.label)
            / _safe(self.arch.label)
            / self.regime
            / _safe(self.method_label)
            / f"f{self.fraction:g}"
            / f"seed{self.seed}.json"
        )


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=,@[]" else "_" for c in text)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-able object, independent of dict order (cache keys, cell ids)."""
    blob = json.dumps(to_jsonable(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples, Paths and numpy scalars as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    return obj


# --------------------------------------------------------------------------- parsing


def build_dataclass(cls: type, data: Any, where: str) -> Any:
    """Build a frozen config dataclass from a mapping, rejecting unknown keys and bad types."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise invalid(where, data, "a mapping of " + ", ".join(f.name for f in fields(cls)))
    known = [f.name for f in fields(cls)]
    hints = get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise invalid(f"{where}.{key}", key, "keys " + ", ".join(known))
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check and convert one value against a type hint (Literal, Optional, tuple, scalars)."""
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, where)
    if origin is Literal:
        if value not in args:
            raise invalid(where, value, args)
        return value
    if origin in (Union, UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise invalid(where, value, f"a value of type {tp}")
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(option, value, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is tuple:
        if isinstance(value, (int, float, str)):
            value = [value]
        if not isinstance(value, Sequence):
            raise invalid(where, value, "a list")
        return tuple(_coerce(args[0], v, where) for v in value)
    if tp in (bool, int, float, str):
        return _scalar(value, tp, where)
    if tp is Any or origin in (Mapping, dict) or tp in (Mapping, dict):
        if origin in (Mapping, dict) or tp in (Mapping, dict):
            if not isinstance(value, Mapping):
                raise invalid(where, value, "a mapping")
        return value
    return value


def _scalar(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise invalid(where, value, "true or false")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(where, value, "an integer")
        return value
    if kind is float:
        if isinstance(value, str):
            value = _parse_number(value, where)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid(where, value, "a number")
        return float(value)
    if not isinstance(value, str):
        raise invalid(where, value, "a string")
    return value


def _parse_number(text: str, where: str) -> float:
    """Accept '8/255' as well as '0.031' (ε is usually written as a fraction)."""
    try:
        if "/" in text:
            num, den = text.split("/")
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise invalid(where, text, "a number such as 0.03 or 8/255") from None


def _entries(raw: Any, field_name: str) -> list[Any]:
    if raw is None or raw == [] or raw == ():
        raise invalid(field_name, raw, "a non-empty list")
    if isinstance(raw, (str, int, float, Mapping)):
        raw = [raw]
    if not isinstance(raw, Sequence):
        raise invalid(field_name, raw, "a non-empty list")
    return list(raw)


def _named(entry: Any, field_name: str, cls: type, known_keys: tuple[str, ...]) -> Any:
    """An axis entry: a bare name or a mapping with `name` and the entry's keys."""
    if isinstance(entry, str):
        return cls(name=entry)
    if not isinstance(entry, Mapping) or "name" not in entry:
        raise invalid(field_name, entry, "a name or a mapping with a 'name' key")
    where = f"{field_name}.{entry['name']}" if isinstance(entry["name"], str) else field_name
    extra = set(entry) - set(known_keys)
    if extra:
        raise invalid(f"{where}.{sorted(extra)[0]}", sorted(extra)[0], known_keys)
    return build_dataclass(cls, entry, where)  # checks the types of root, kwargs, ...


def _unique(values: Sequence[Any], field_name: str, allowed: str = "each entry once") -> None:
    """Repeated axis entries would give two cells the same results path."""
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise invalid(field_name, v, allowed)
        seen.add(v)


def suggest(value: str, known: Sequence[str]) -> str:
    """The known names, or for long lists the closest ones."""
    if len(known) <= 40:
        return ", ".join(known)
    close = difflib.get_close_matches(value, known, n=5, cutoff=0.5)
    hint = f"closest: {', '.join(close)}; " if close else ""
    return f"{hint}any of the {len(known)} names of timm.list_models()"


def parse_grid(data: Mapping[str, Any], source: str = "") -> GridSpec:
    """Validate a grid mapping (from YAML) against every registry; raise ConfigError."""
    from corebench.data import list_datasets
    from corebench.methods import create_method, list_methods
    from corebench.models import list_architectures

    if not isinstance(data, Mapping):
        raise invalid("grid", type(data).__name__, "a YAML mapping")
    allowed_top = {f.name for f in fields(GridSpec)} - {"source"}
    for key in data:
        if key not in allowed_top:
            raise invalid(key, key, "top-level keys " + ", ".join(sorted(allowed_top)))

    name = data.get("name") or (Path(source).stem if source else "grid")
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise invalid("name", name, "letters, digits, '-' and '_'")

    datasets = tuple(
        _named(e, "datasets", DatasetSpec, ("name", "root", "download", "path", "options", "id"))
        for e in _entries(data.get("datasets"), "datasets")
    )
    known_ds = list_datasets()
    for ds in datasets:
        if ds.name not in known_ds:
            raise invalid("datasets", ds.name, known_ds)

    arch_keys = ("name", "kwargs", "small_input_stem", "id")
    architectures = tuple(
        _named(e, "architectures", ArchSpec, arch_keys)
        for e in _entries(data.get("architectures"), "architectures")
    )
    scorer_entries = data.get("scoring_architectures", [SAME_AS_TARGET])
    scorers = tuple(
        None if e == SAME_AS_TARGET else _named(e, "scoring_architectures", ArchSpec, arch_keys)
        for e in _entries(scorer_entries, "scoring_architectures")
    )
    _unique([d.label for d in datasets], "datasets", "each dataset once (give repeats an 'id')")
    _unique([a.label for a in architectures], "architectures", "each architecture once (give repeats an 'id')")
    known_archs = list_architectures()
    for where, arch in [("architectures", a) for a in architectures] + [
        ("scoring_architectures", s) for s in scorers if s is not None
    ]:
        if arch.name not in known_archs:
            raise ConfigError(
                f"{where}: {arch.name!r} is not a timm architecture; allowed: "
                + suggest(arch.name, known_archs)
            )

    fractions = tuple(_scalar(f, float, "fractions") for f in _entries(data.get("fractions"), "fractions"))
    for f in fractions:
        if not 0.0 < f <= 1.0:
            raise invalid("fractions", f, "numbers in (0, 1]")
    _unique(fractions, "fractions")

    raw_methods = _entries(data.get("methods"), "methods")
    if raw_methods == ["all"]:
        raw_methods = list_methods()
    methods: list[MethodSpec] = []
    for e in raw_methods:
        if isinstance(e, Mapping):
            e = dict(e)
            spec = MethodSpec(name=e.pop("name", None), id=e.pop("id", ""), params=e)
        elif isinstance(e, str):
            spec = MethodSpec(name=e)
        else:
            raise invalid("methods", e, "a method name or a mapping with 'name' and its parameters")
        if spec.name not in list_methods():
            raise invalid("methods", spec.name, list_methods())
        create_method(spec.name, **spec.params)  # validates the parameters now
        methods.append(spec)
    labels = [m.label for m in methods]
    dup = {lab for lab in labels if labels.count(lab) > 1}
    if dup:
        raise invalid("methods", sorted(dup)[0], "each method entry once (give repeats an 'id')")

    regimes = tuple(_scalar(r, str, "regimes") for r in _entries(data.get("regimes"), "regimes"))
    for r in regimes:
        if r not in REGIMES:
            raise invalid("regimes", r, REGIMES)
    _unique(regimes, "regimes")

    seeds = tuple(_scalar(s, int, "seeds") for s in _entries(data.get("seeds", [0]), "seeds"))
    for s in seeds:
        if s < 0:
            raise invalid("seeds", s, "integers >= 0 (numpy generators reject negative seeds)")
    _unique(seeds, "seeds")

    sections = {
        key: build_dataclass(cls, data.get(key), key)
        for key, cls in (
            ("scoring", ScoringConfig),
            ("training", TrainingConfig),
            ("attack", AttackConfig),
            ("evaluation", EvaluationConfig),
        )
    }
    aa = sections["evaluation"].autoattack
    if aa.attacks is not None and aa.version != "custom":
        raise invalid("evaluation.autoattack.attacks", list(aa.attacks), "only with version: custom")
    if aa.version == "custom" and not aa.attacks:
        raise invalid("evaluation.autoattack.attacks", aa.attacks, "a list of attacks with version: custom")
    for attack_name in aa.attacks or ():
        if attack_name not in AUTOATTACK_ATTACKS:
            raise invalid("evaluation.autoattack.attacks", attack_name, AUTOATTACK_ATTACKS)
    _check_positive(sections)

    device = data.get("device", "auto")
    if not isinstance(device, str) or not (device in ("auto", "cpu") or device.startswith("cuda")):
        raise invalid("device", device, "auto, cpu, cuda, cuda:N")

    grid = GridSpec(
        name=name,
        datasets=datasets,
        architectures=architectures,
        fractions=fractions,
        methods=tuple(methods),
        regimes=regimes,
        seeds=seeds,
        scoring_architectures=scorers,
        full_data_reference=_scalar(data.get("full_data_reference", True), bool, "full_data_reference"),
        device=device,
        source=source,
        **sections,
    )
    _unique_paths(grid)
    return grid


def _unique_paths(grid: GridSpec) -> None:
    """Two cells with one results path would overwrite (or skip) each other: e.g. a scorer with
    the same label as the target but other kwargs, or labels that differ only in odd characters."""
    seen: dict[Path, Cell] = {}
    for cell in grid.cells():
        path = cell.relpath(grid.name)
        other = seen.setdefault(path, cell)
        if other is cell:
            continue
        pairs = (("datasets", other.dataset, cell.dataset), ("architectures", other.arch, cell.arch),
                 ("methods", other.method, cell.method), ("scoring_architectures", other.scoring_arch, cell.scoring_arch))
        where, _, spec = next((p for p in pairs if p[1] != p[2]), pairs[-1])
        raise invalid(where, spec.label, f"entries with distinct labels (two cells share {path.as_posix()}; give one an 'id')")


def _check_positive(sections: Mapping[str, Any]) -> None:
    checks = {
        "scoring.epochs": sections["scoring"].epochs,
        "scoring.batch_size": sections["scoring"].batch_size,
        "training.epochs": sections["training"].epochs,
        "training.batch_size": sections["training"].batch_size,
        "attack.steps": sections["attack"].steps,
        "evaluation.n_examples": sections["evaluation"].n_examples,
        "evaluation.batch_size": sections["evaluation"].batch_size,
    }
    for where, value in checks.items():
        if value <= 0:
            raise invalid(where, value, "a positive integer")
    radii = {
        "attack.eps": sections["attack"].eps,
        "attack.step_size": sections["attack"].step_size,
        "evaluation.eps": sections["evaluation"].eps,
        "evaluation.pgd_step_size": sections["evaluation"].pgd_step_size,
    }
    for where, value in radii.items():
        if value is not None and not 0.0 < value <= 1.0:
            raise invalid(where, value, "a number in (0, 1] (pixel units, e.g. 8/255), or leave it out")
    for where, value in {"scoring.lr": sections["scoring"].lr, "training.lr": sections["training"].lr}.items():
        if not value > 0.0:
            raise invalid(where, value, "a positive number")
    for e in sections["scoring"].snapshots():
        if not 0 <= e <= sections["scoring"].epochs:
            raise invalid("scoring.snapshot_epochs", e, f"epochs between 0 and scoring.epochs ({sections['scoring'].epochs})")


def load_grid(path: str | Path) -> GridSpec:
    """Read and validate a grid file (yaml.safe_load; never executes anything)."""
    path = Path(path)
    if not path.is_file():
        raise invalid("grid file", str(path), "an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ConfigError(f"grid file {path}: not valid YAML ({first})") from None
    return parse_grid(data, source=str(path))
