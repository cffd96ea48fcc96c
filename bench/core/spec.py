"""The suite's vocabulary: the typed settings of a grid, and the names every layer shares.

At the bottom of the layers (it imports only `corebench.core.checked`, which says how a value is
checked): data, models, methods, attacks, the runner and the boards all speak these types, and
none of them needs grid parsing to do it. The settings are frozen pydantic dataclasses, so a
value is checked once, where it enters (`checked.build`), and the code below trusts it.

What lives here, each in one place:
- the grid's axis entries (`DatasetSpec`, `ArchSpec`, `MethodSpec`) and phase sections
  (`ScoringConfig`, `TrainingConfig`, `AttackConfig`, `EvaluationConfig`), and `GridSpec`;
- a `Cell` with its key and the path of its record (`record_relpath`, `slug`);
- the regimes, AutoAttack's attack names and version tables, the metric names;
- `stable_hash`, the hash behind cell ids and cache keys; `slug`, the one path-safe spelling.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import field
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from corebench.core.checked import (
    Device,
    Epochs,
    LearningRate,
    Memory,
    Minutes,
    Momentum,
    NonNegativeInt,
    Number,
    PositiveInt,
    Radii,
    Radius,
    Seed,
    Threads,
    TradesBeta,
    WeightDecay,
    not_allowed,
)
from corebench.core.errors import ConfigError

# --------------------------------------------------------------------------- vocabulary

Regime = Literal["standard", "pgd_at", "trades"]
CpuKernels = Literal["native", "portable"]  # how a CPU run computes (corebench.compute.kernels)
REGIMES: tuple[str, ...] = get_args(Regime)
FULL_DATA = "full"  # method name of the full-data reference cells
SAME_AS_TARGET = "same"  # scoring architecture placeholder: score with the target architecture
METRICS: tuple[str, ...] = ("clean_acc", "pgd_acc", "autoattack_acc")  # percent, in records

# AutoAttack (Croce & Hein 2020) as pyautoattack runs it: the attack names, what each version
# runs and in which order (pyautoattack `AutoAttack._set_version`), and the classes the
# DLR-loss attacks need (they read the 3rd / 4th largest logit).
AUTOATTACK_ATTACKS: tuple[str, ...] = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
AUTOATTACK_VERSION_ATTACKS: dict[str, tuple[str, ...]] = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}
AUTOATTACK_VERSIONS: tuple[str, ...] = (*AUTOATTACK_VERSION_ATTACKS, "custom")
# What each version sets in pyautoattack (`AutoAttack.__init__` and `_set_version`, Linf/L2):
# APGD-CE/-DLR restarts, APGD iterations, target classes of APGD-T and FAB-T. `custom` keeps
# the constructor's values, so its APGD-CE restarts 5 times where `standard` restarts once.
AUTOATTACK_VERSION_SETTINGS: dict[str, dict[str, int]] = {
    "standard": {"apgd_restarts": 1, "apgd_iterations": 100, "target_classes": 9},
    "plus": {"apgd_restarts": 5, "apgd_iterations": 100, "target_classes": 9},
    "rand": {"apgd_restarts": 1, "apgd_iterations": 100, "target_classes": 9},
    "custom": {"apgd_restarts": 5, "apgd_iterations": 100, "target_classes": 9},
}
AUTOATTACK_MIN_CLASSES: dict[str, int] = {"apgd-dlr": 3, "apgd-t": 4}


def check_attacks_fit(attacks: Iterable[str], classes: int, dataset: str | None = None) -> None:
    """Raise a one-line ConfigError when an AutoAttack attack needs more classes than there are
    (`AUTOATTACK_MIN_CLASSES`: the DLR loss reads the third-largest logit, the targeted attacks
    aim at 3 other classes); `dataset` names it when known. The one check the grid parser (before any
    compute) and the AutoAttack adapter (a model's own classes) both make."""
    for name in attacks:
        need = AUTOATTACK_MIN_CLASSES.get(name, 2)
        if classes < need:
            fits = [a for a in AUTOATTACK_ATTACKS if AUTOATTACK_MIN_CLASSES.get(a, 2) <= classes]
            why = f"dataset {dataset} ({classes} classes; {name} needs" if dataset else f"{classes} classes (needs"
            raise ConfigError(f"evaluation.autoattack.attacks: {name!r} is not allowed with {why} at least {need}); "
                              f"allowed: {', '.join(fits)}")
AutoAttackName = Literal[AUTOATTACK_ATTACKS]  # type: ignore[valid-type]
AutoAttackVersion = Literal[AUTOATTACK_VERSIONS]  # type: ignore[valid-type]


# How a training step computes (corebench.compute.fastpath): "auto" is bf16 autocast on a CUDA device
# that supports it and fp32 elsewhere; what a run used is recorded as resolved.
Precision = Literal["auto", "fp32", "bf16"]


def default_snapshot_epoch(epochs: int) -> int:
    """"10 % into training" for an E-epoch run (the EL2N paper's epoch 20 of 200), at least 1."""
    return max(1, math.ceil(0.1 * epochs - 1e-9))


def scoring_seed(seed: int, run: int) -> int:
    """The seed of scoring run `run` (0, 1, …) of a cell whose seed is `seed`.

    Derived, not `seed` itself: the target model of the cell is initialised with `seed`, and a
    scoring run starting from the very weights the target then trains from would measure, e.g.,
    GraNd at initialisation on the target's own initial weights. The derivation hashes the
    pair: the first 8 hex digits of `stable_hash({"cell_seed": seed, "scoring_run": run})`,
    shifted right by one bit (a 31-bit integer). Every method of a cell reads the same runs,
    and cells of one seed share them.
    """
    return int(stable_hash({"cell_seed": int(seed), "scoring_run": int(run)})[:8], 16) >> 1


# --------------------------------------------------------------------------- checked types


_SPEC_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


def spec(cls: type) -> type:
    """A frozen, validated settings type: unknown keys, wrong types and non-finite numbers fail."""
    return pydantic_dataclass(frozen=True, config=_SPEC_CONFIG)(cls)


# --------------------------------------------------------------------------- axis entries


@spec
class DatasetSpec:
    """One dataset of the grid. `options` go to the dataset's loader (e.g. synthetic sizes)."""

    name: StrictStr
    root: StrictStr | None = None  # torchvision datasets: folder holding the files
    download: StrictBool = False  # opt-in for users with internet
    path: StrictStr | None = None  # npz datasets: the file
    options: Mapping[str, Any] = field(default_factory=dict)
    id: StrictStr = ""  # label in results and boards; defaults to name
    # `corebench run --smoke`: a tiny generated stand-in with this dataset's name, image shape
    # and classes instead of its files (`data.stand_in`); its records say so
    stand_in: StrictBool = False

    def __hash__(self) -> int:  # mappings inside: hash the JSON form
        return hash(stable_hash(self))

    @property
    def label(self) -> str:
        return self.id or self.name


@spec
class ArchSpec:
    """A timm architecture by name plus kwargs passed through to `timm.create_model`."""

    name: StrictStr
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    small_input_stem: StrictBool | None = None  # None: on for inputs of 64 px or less
    id: StrictStr = ""

    def __hash__(self) -> int:
        return hash(stable_hash(self))

    @property
    def label(self) -> str:
        return self.id or self.name


@spec
class MethodSpec:
    """A registered coreset method with its parameters (validated by the method's Params)."""

    name: StrictStr
    params: Mapping[str, Any] = field(default_factory=dict)
    id: StrictStr = ""

    def __hash__(self) -> int:
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


@spec
class AttackConfig:
    """The training-time attack of PGD-AT (Madry et al. 2018) and TRADES (Zhang et al. 2019).

    `eps` None means the dataset's default (8/255 on CIFAR/SVHN). `step_size` None means
    eps/4 (2/255 at 8/255, the references' value). A record stores it resolved.
    """

    eps: Radius | None = None
    step_size: Radius | None = None
    steps: PositiveInt = 10
    random_start: StrictBool = True
    trades_beta: TradesBeta = 6.0

    def resolved(self, default_eps: float) -> AttackConfig:
        """ε from the dataset when unset, the step as ε/4 when unset."""
        eps = default_eps if self.eps is None else self.eps
        step = eps / 4 if self.step_size is None else self.step_size
        return dataclasses.replace(self, eps=eps, step_size=step)


@spec
class ScoringConfig:
    """The proxy training run on the FULL train set that records per-sample signals.

    Defaults follow the EasyCore setup (AIGN averaged over every epoch of a normal training
    run). Snapshot signals (GraNd, eval-mode EL2N) are taken only at `snapshot_epochs`, as the
    references score one checkpoint: None means (0, `default_snapshot_epoch(epochs)`), i.e.
    at initialisation (GraNd, Paul et al. 2021) and 10 % into training (EL2N).
    """

    epochs: Epochs = 10
    batch_size: PositiveInt = 128
    lr: LearningRate = 0.1
    momentum: Momentum = 0.9
    nesterov: StrictBool = True
    weight_decay: WeightDecay = 5e-4
    augment: StrictBool = True
    snapshot_epochs: tuple[NonNegativeInt, ...] | None = None  # 0 = at initialisation
    # how the proxy's training steps run (corebench.compute.fastpath); the measurement passes stay fp32
    precision: Precision = "auto"
    channels_last: StrictBool | None = None
    compile: StrictBool = False
    # the regime the proxy trains under, and its attack (ε from the dataset when unset): an
    # adversarial scoring run (PGD-AT or TRADES) for the methods that score under attack.
    # Both are left out of the cache key and the cell id at their defaults (SCORING_ADDED).
    regime: Regime = "standard"
    attack: AttackConfig = field(default_factory=AttackConfig)

    def with_regime(self, regime: str | None) -> ScoringConfig:
        """The same run under another regime (None or "grid": this one's)."""
        if regime in (None, "grid", self.regime):
            return self
        return dataclasses.replace(self, regime=regime)

    def key_form(self) -> dict[str, Any]:
        """The settings as the scoring cache key hashes them: every field, except the fields
        added since (SCORING_ADDED) while at their defaults, so a standard run keeps its key."""
        form = to_jsonable(self)
        for name, default in SCORING_ADDED.items():
            if form.get(name) == to_jsonable(default):
                form.pop(name)
        return form

    def snapshots(self) -> tuple[int, ...]:
        """The snapshot epochs, sorted, with the default filled in."""
        if self.snapshot_epochs is not None:
            return tuple(sorted(set(self.snapshot_epochs)))
        return (0, default_snapshot_epoch(self.epochs))

    @model_validator(mode="after")
    def _snapshots_within_run(self) -> ScoringConfig:
        for e in self.snapshots():
            if e > self.epochs:
                raise not_allowed("snapshot_epochs", e, f"epochs between 0 and scoring.epochs ({self.epochs})")
        return self


# Scoring settings added after the cache key's version 3, with their defaults: left out of
# the key while at them (`ScoringConfig.key_form`), so existing cache entries stay valid.
SCORING_ADDED: dict[str, Any] = {"regime": "standard", "attack": AttackConfig()}


TrainingBudget = Literal["epochs", "steps"]


@spec
class TrainingConfig:
    """Training of the target model on the coreset.

    `budget: epochs` (default) trains every fraction for `epochs` passes over its coreset
    (DeepCore, Moderate-DS and the forgetting reference train a fixed number of epochs);
    `budget: steps` trains every fraction for the same number of SGD steps: `steps` when set,
    else the full-data steps, `epochs` × steps per epoch of the FULL train set (the CCS
    reference's fixed 40,000 iterations, data_diet's 78,000 steps). `steps` is only allowed
    with `budget: steps`. The cosine schedule spans the steps actually trained.
    """

    epochs: Epochs = 200
    batch_size: PositiveInt = 128
    lr: LearningRate = 0.1
    momentum: Momentum = 0.9
    nesterov: StrictBool = True
    weight_decay: WeightDecay = 5e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    augment: StrictBool = True
    budget: TrainingBudget = "epochs"
    steps: PositiveInt | None = None  # only with budget: steps; None = the full-data steps

    # how the training steps run, attack steps included (corebench.compute.fastpath)
    precision: Precision = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    channels_last: StrictBool | None = None  # None: on CUDA
    compile: StrictBool = False  # torch.compile the training step

    @model_validator(mode="after")
    def _steps_need_step_budget(self) -> TrainingConfig:
        if self.steps is not None and self.budget != "steps":
            raise not_allowed("steps", self.steps, f"only with budget: steps (budget is {self.budget})")
        return self

    def total_steps(self, coreset_steps_per_epoch: int, full_steps_per_epoch: int) -> int:
        """The SGD steps a coreset trains for, given steps per epoch of the coreset and of the full set."""
        if self.budget == "epochs":
            return self.epochs * coreset_steps_per_epoch
        return self.steps if self.steps is not None else self.epochs * full_steps_per_epoch


@spec
class AutoAttackConfig:
    """AutoAttack (Croce & Hein 2020) through `pyautoattack`; 'standard' as RobustBench runs it."""

    version: AutoAttackVersion = "standard"
    attacks: tuple[AutoAttackName, ...] | None = None  # only with version 'custom'
    seed: Seed = 0
    enabled: StrictBool = True
    # The attacks' budget; None: what the version sets (AUTOATTACK_VERSION_SETTINGS). Anything
    # else is a weaker or stronger attack than AutoAttack's, so it is part of the protocol.
    apgd_restarts: PositiveInt | None = None
    apgd_iterations: PositiveInt | None = None
    target_classes: PositiveInt | None = None  # of APGD-T and FAB-T (at most K − 1 are used)
    # FAB's iterations and Square's queries; None: the package's (100 and 5,000) in every version
    fab_iterations: PositiveInt | None = None
    square_queries: PositiveInt | None = None

    @model_validator(mode="after")
    def _attacks_fit_version(self) -> AutoAttackConfig:
        where = "attacks"
        if self.version != "custom":
            fixed = AUTOATTACK_VERSION_ATTACKS[self.version]
            if self.attacks is not None and tuple(self.attacks) != fixed:
                raise not_allowed(where, list(self.attacks),
                                  f"only with version: custom (version {self.version} runs {', '.join(fixed)})")
        elif not self.attacks:
            raise not_allowed(where, self.attacks, "a non-empty list with version: custom, of " + ", ".join(AUTOATTACK_ATTACKS))
        elif len(set(self.attacks)) != len(self.attacks):
            raise not_allowed(where, list(self.attacks), "each attack at most once")
        return self

    def run_list(self) -> tuple[str, ...]:
        """The attacks this version runs, in the order it runs them."""
        return tuple(self.attacks) if self.version == "custom" else AUTOATTACK_VERSION_ATTACKS[self.version]

    def resolved(self) -> AutoAttackConfig:
        """The attack list and budget filled in from the version (what a record stores)."""
        settings = {k: v if getattr(self, k) is None else getattr(self, k)
                    for k, v in AUTOATTACK_VERSION_SETTINGS[self.version].items()}  # fmt: skip
        return dataclasses.replace(self, attacks=self.run_list(), **settings)


@spec
class EvaluationConfig:
    """Clean accuracy once, then PGD-k and AutoAttack accuracy at each ε, on the first
    `n_examples` test images.

    `eps` is one radius or a list of them (e.g. [1/255, 2/255, 8/255]), held as a tuple; None
    means the dataset's default. `pgd_step_size` None means ε/4 at each ε; one number is used at
    every ε; a list (as a resolved record stores it) pairs with `eps` entry by entry.
    """

    n_examples: PositiveInt = 1000
    batch_size: PositiveInt = 500
    norm: Literal["Linf"] = "Linf"
    eps: Radii | None = None  # None: the dataset's default
    pgd_steps: NonNegativeInt = 20
    pgd_step_size: Radii | None = None  # None: eps/4
    autoattack: AutoAttackConfig = field(default_factory=AutoAttackConfig)
    precision: Literal["fp32", "bf16"] = "fp32"  # of the attacks (PGD, AutoAttack): fp32 unless asked
    channels_last: StrictBool | None = None  # the model's layout during the attacks; None: on CUDA

    @model_validator(mode="after")
    def _eps_list(self) -> EvaluationConfig:
        if self.eps is not None:
            if not self.eps:
                raise not_allowed("eps", [], "one radius or a non-empty list of radii, e.g. [1/255, 2/255, 8/255]")
            if len(set(self.eps)) != len(self.eps):
                raise not_allowed("eps", list(self.eps), "each ε at most once")
        if self.pgd_step_size is not None:
            n_eps = len(self.eps) if self.eps is not None else 1
            if len(self.pgd_step_size) not in (1, n_eps):
                raise not_allowed("pgd_step_size", list(self.pgd_step_size),
                                  f"one number for every ε, or a list with one step per ε ({n_eps})")
        return self

    def resolved(self, default_eps: float) -> EvaluationConfig:
        """ε as a sorted tuple (the dataset's default when unset), the PGD step per ε (ε/4 when
        unset) and the attack list a version runs filled in: what a record stores, so boards
        compare protocols field by field."""
        eps = (default_eps,) if self.eps is None else self.eps
        if self.pgd_step_size is None:
            steps = tuple(e / 4 for e in eps)
        elif len(self.pgd_step_size) == len(eps):
            steps = self.pgd_step_size
        else:
            steps = self.pgd_step_size * len(eps)
        pairs = sorted(zip(eps, steps, strict=True))
        return dataclasses.replace(self, eps=tuple(e for e, _ in pairs), pgd_step_size=tuple(s for _, s in pairs),
                                   autoattack=self.autoattack.resolved())

    def radii(self) -> tuple[tuple[float, float], ...]:
        """(ε, PGD step) pairs of a resolved config, ε ascending."""
        return tuple(zip(self.eps, self.pgd_step_size, strict=True))


@spec
class SlurmConfig:
    """How `corebench run --executor slurm` asks Slurm for resources: every array task (one
    scoring run or one cell) gets these. None leaves the choice to the cluster's defaults.

    `time` is per task, in minutes or as Slurm writes it; a cell that runs out of time is
    checkpointed and requeued (per-epoch checkpoints), so it need not fit a whole cell.
    `array_parallelism` caps how many tasks of one array run at once.
    """

    partition: StrictStr | None = None
    account: StrictStr | None = None
    qos: StrictStr | None = None
    constraint: StrictStr | None = None
    time: Minutes = 240
    gpus: NonNegativeInt = 0
    cpus: PositiveInt | None = None  # None: the grid's `threads`
    mem: Memory | None = None
    array_parallelism: PositiveInt | None = None


Correction = Literal["holm", "bh"]  # across a board's family of comparisons (`stats.adjust`)


@spec
class Comparison:
    """A declared primary comparison: `method` minus `against` (row labels, method ids) at one
    fraction, regime and ε, on every dataset × architecture of the grid. Declared before the
    runs, it is reported first on its board and is not corrected for the exploratory family."""

    method: StrictStr
    fraction: Number
    regime: Regime
    eps: Radius
    against: StrictStr = "random"

    def text(self) -> str:
        return f"{self.method} − {self.against} at {100 * self.fraction:g} %, {self.regime}"


@spec
class GridSpec:
    """A whole grid file, validated. `primary` and `correction` say how the boards test the
    grid's numbers; they are not cell settings (no cell id depends on them)."""

    name: StrictStr
    datasets: tuple[DatasetSpec, ...]
    architectures: tuple[ArchSpec, ...]
    fractions: tuple[Number, ...]
    methods: tuple[MethodSpec, ...]
    regimes: tuple[Regime, ...]
    seeds: tuple[Seed, ...]
    scoring_architectures: tuple[ArchSpec | None, ...] = (None,)  # None: same as target
    regime_fractions: dict[Regime, tuple[Number, ...]] = field(default_factory=dict)  # regime -> its fractions
    regime_seeds: dict[Regime, tuple[Seed, ...]] = field(default_factory=dict)  # regime -> its seeds
    full_data_reference: StrictBool | tuple[Seed, ...] = True  # a tuple: at those seeds only
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)  # cluster resources, not a result setting
    device: Device = "auto"
    threads: Threads = 1  # torch threads per process (each worker): results depend on it on CPU
    primary: tuple[Comparison, ...] = ()  # declared comparisons, reported first on the boards
    correction: Correction = "holm"  # across each board's exploratory family
    source: StrictStr = ""  # the grid file it came from

    def seeds_of(self, regime: str) -> tuple[int, ...]:
        """The seeds a regime's cells are trained with (`regime_seeds`, else `seeds`)."""
        return self.regime_seeds.get(regime, self.seeds)

    def has_reference(self, seed: int) -> bool:
        """Whether the full-data reference is trained at this seed."""
        ref = self.full_data_reference
        return ref if isinstance(ref, bool) else seed in ref

    def cells(self) -> list[Cell]:
        """Every cell of the grid, in a fixed order; full-data references first."""
        out: list[Cell] = []
        for ds in self.datasets:
            for arch in self.architectures:
                for regime in self.regimes:
                    for seed in self.seeds_of(regime):
                        if self.has_reference(seed):
                            out.append(Cell(ds, arch, arch, regime, MethodSpec(FULL_DATA), 1.0, seed))
                        for scorer in self.scoring_architectures:
                            for method in self.methods:
                                for fraction in self.regime_fractions.get(regime, self.fractions):
                                    out.append(Cell(ds, arch, scorer or arch, regime, method, fraction, seed))
        return out


# --------------------------------------------------------------------------- cells, keys, paths


@dataclasses.dataclass(frozen=True)
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
        """The record's `cell` object: what a board groups and ranks by."""
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
        return record_relpath(grid_name, self.key())


_UNSAFE = re.compile(r"[^A-Za-z0-9\-_=,@+\[\]]")


@cache
def slug(text: str) -> str:
    """A label as one safe path component: letters, digits and -_=,@+[] only (no '.', no '/')."""
    return _UNSAFE.sub("_", str(text)) or "_"


def record_relpath(grid_name: str, key: Any) -> Path:
    """Where a cell's record lives under the results folder: the path spells its key (a mapping,
    or an object with the key's attributes such as `record.CellKey`)."""
    return Path(record_relstr(grid_name, key))


def record_relstr(grid_name: str, key: Any) -> str:
    """`record_relpath` as a '/'-joined string (cheap to compare for thousands of records)."""
    if isinstance(key, Mapping):
        dataset, arch, regime, label, fraction, seed = (key["dataset"], key["arch"], key["regime"],
                                                        key["method_label"], key["fraction"], key["seed"])
    else:
        dataset, arch, regime, label, fraction, seed = (key.dataset, key.arch, key.regime, key.method_label,
                                                        key.fraction, key.seed)
    return "/".join((slug(grid_name), slug(dataset), slug(arch), slug(regime), slug(label),
                     f"f{float(fraction):g}", f"seed{int(seed)}.json"))


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-able object, independent of dict order (cache keys, cell ids)."""
    blob = json.dumps(to_jsonable(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, pydantic models, tuples, Paths and numpy scalars as plain JSON values."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    return obj
