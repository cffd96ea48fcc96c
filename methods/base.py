"""The method contract: what a coreset method receives, returns, and how that is checked.

Methods never train models. The scoring run records per-sample signals once; a method turns
them (and the labels) into the indices to KEEP. The harness validates every selection, so a
broken method fails its own cell with a message naming it, not the grid.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from corebench.core.errors import MethodError
from corebench.core.spec import to_jsonable
from corebench.signals import companions, list_signals, taken_at, unknown_signals

Direction = Literal["hardest", "easiest"]
# Which scoring run a method reads: "grid" = the grid's `scoring.regime`, or one regime of its own.
ScoringRegime = Literal["grid", "standard", "pgd_at", "trades"]
# Parameter types with their ranges, for `Params` fields (checked when a method is created):
RunCount = Annotated[int, Field(ge=1)]  # scoring runs a score is averaged over
Epoch = Annotated[int, Field(ge=0)]  # a scoring epoch; 0 = at initialisation
PositiveCount = Annotated[int, Field(ge=1)]


def budget_for(fraction: float, n: int) -> int:
    """Number of samples to keep: round(fraction × n), halves rounded up, at least 1."""
    return max(1, min(n, math.floor(fraction * n + 0.5)))


@dataclass(frozen=True)
class NoParams:
    """Parameters of a method that has none."""


@dataclass(frozen=True)
class SelectionContext:
    """Everything a method may look at, for one dataset × scoring architecture × seed.

    Attributes:
        labels: int64 [N] training labels.
        num_classes: number of classes.
        runs: the signals of each scoring run, runs[0] from this cell's seed; a mapping
            signal name -> array (shapes in `corebench.signals`). A method is handed a view
            holding only the signals it declared (`only`); reading another is a MethodError.
        seed: the cell's seed; `rng()` derives every random choice from it.
        method: the method the context was handed to (names it in errors).
        dataset: the dataset's registry name (e.g. "cifar10"; "" when unknown), for options
            whose reference values are per dataset (CCS's β table).
        scoring_epochs: E, the length of the scoring runs' schedule (None when unknown). A run
            that trained only k < E epochs (the method asked for k, `CoresetMethod.scoring_epochs`)
            has k rows of its [E, N] signals, so "10 % into training" is taken from E, not k.
    """

    labels: np.ndarray
    num_classes: int
    runs: tuple[Mapping[str, np.ndarray], ...]
    seed: int = 0
    method: str = ""
    dataset: str = ""
    scoring_epochs: int | None = None

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def signals(self) -> Mapping[str, np.ndarray]:
        """The signals of the first scoring run (the cell's own seed)."""
        return self.runs[0]

    def rng(self) -> np.random.Generator:
        """A fresh generator from the seed: the same call gives the same draw, every time."""
        return np.random.default_rng(self.seed)

    def signal_runs(self, name: str, n_runs: int = 1) -> list[np.ndarray]:
        """Signal `name` from the first `n_runs` scoring runs (for averaging over runs)."""
        if len(self.runs) < n_runs:
            raise MethodError(f"{self._who}needs {n_runs} scoring runs of {name!r}, only {len(self.runs)} given")
        return [np.asarray(self.runs[i][name]) for i in range(n_runs)]

    @property
    def _who(self) -> str:
        return f"method {self.method!r}: " if self.method else ""

    def only(self, method: str, declared: tuple[str, ...]) -> SelectionContext:
        """The view handed to `method`: only its declared signals (and their companions)."""
        runs = tuple(DeclaredSignals(run, method, declared) for run in self.runs)
        return dataclasses.replace(self, runs=runs, method=method)

    def budget(self, fraction: float) -> int:
        return budget_for(fraction, self.n)

    def keep_lowest(self, scores: np.ndarray, fraction: float, class_balanced: bool = False) -> np.ndarray:
        """Indices of the round(fraction × N) lowest scores (ties in a random order from `rng()`)."""
        from corebench.methods._common import keep_extreme

        return keep_extreme(scores, self.budget(fraction), "lowest", self.labels if class_balanced else None,
                            self.rng())

    def keep_highest(self, scores: np.ndarray, fraction: float, class_balanced: bool = False) -> np.ndarray:
        """Indices of the round(fraction × N) highest scores (ties in a random order from `rng()`)."""
        from corebench.methods._common import keep_extreme

        return keep_extreme(scores, self.budget(fraction), "highest", self.labels if class_balanced else None,
                            self.rng())


class DeclaredSignals(Mapping):
    """One run's signals as a method sees them: the declared ones only.

    Reading an undeclared signal is a MethodError naming the method and the signal, whatever
    else the scoring run recorded for the grid's other methods; `in` and iteration show only
    the declared signals that were recorded. `seen` collects the names read (for the kit).
    """

    def __init__(self, run: Mapping[str, np.ndarray], method: str, declared: tuple[str, ...],
                 seen: set[str] | None = None) -> None:
        self._run, self._method, self._declared = run, method, tuple(declared)
        self._allowed = set(declared) | companions(set(declared) - set(unknown_signals(declared)))
        self.seen = seen if seen is not None else set()

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._allowed:
            raise MethodError(
                f"method {self._method!r} reads signal {key!r}, which it did not declare "
                f"(declared: {', '.join(self._declared) or 'none'}); add it to `signals` or `required_signals()`"
            )
        self.seen.add(key)
        if key not in self._run:
            raise MethodError(f"method {self._method!r}: signal {key!r} was not recorded by the scoring run")
        return self._run[key]

    def __contains__(self, key: object) -> bool:
        return key in self._allowed and key in self._run

    def __iter__(self) -> Iterator[str]:
        return (k for k in self._run if k in self._allowed)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def declared_signals(method: CoresetMethod) -> tuple[str, ...]:
    """The signals the configured method declares, or a MethodError naming an unknown one."""
    declared = tuple(method.required_signals())
    unknown = unknown_signals(declared)
    if unknown:
        raise MethodError(
            f"method {method.name!r} declares signal {unknown[0]!r}, which no scoring run records; "
            f"known: {', '.join(list_signals())}"
        )
    return declared


@dataclass(frozen=True)
class ScoringNeed:
    """What a configured method's signals need of the scoring schedule, per scoring run.

    Attributes:
        runs: scoring runs it averages (`scoring_runs()`).
        epochs: training epochs each run must train for it (`scoring_epochs`, all of them when
            it reads a final-model signal): GraNd at initialisation needs 0.
        passes: measurement passes over the train set each run makes for it beyond training:
            one per epoch trained for an every-epoch eval signal, one per snapshot epoch within
            `epochs` for snapshot signals, one for final-model signals. Counted, not weighted
            (a per-sample gradient pass costs more than a forward pass).
    """

    runs: int
    epochs: int
    passes: int


def scoring_need(method: CoresetMethod, epochs: int, snapshots: tuple[int, ...]) -> ScoringNeed:
    """The scoring work `method` needs of an `epochs`-epoch schedule with these snapshot epochs.

    A run shared by several methods trains for the longest need; the cost table charges each
    method only its own need (issue 18: GraNd at initialisation was charged a 30-epoch run).
    """
    signals = declared_signals(method)
    if not signals:
        return ScoringNeed(0, 0, 0)
    final = bool(taken_at("final", signals))
    need = epochs if final else min(int(method.scoring_epochs(epochs, snapshots)), epochs)
    passes = (need if taken_at("eval_pass", signals) else 0) + int(final)
    if taken_at("snapshot", signals):
        passes += sum(1 for e in snapshots if e <= need)
    return ScoringNeed(method.scoring_runs(), need, passes)


class CoresetMethod(ABC):
    """Base class of every method. Subclasses set `Params`, `signals` and `select`.

    Register with `@register_method("name")`; create with `create_method("name", **params)`.
    `Params` is a frozen dataclass whose defaults follow the method's reference; every field
    is written into each result record, so a number can be traced to the options that made it.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    signals: ClassVar[tuple[str, ...]] = ()  # what the scoring run must record
    # How selection time grows with N: "sort" (a ranking, about N log N; the selection
    # benchmark holds these to its target) or "greedy" (a pick at a time, N × budget × D).
    selection_cost: ClassVar[str] = "sort"
    # Whether a grid's `methods: all` brings it in. The methods built on adversarial scoring runs
    # or long per-epoch windows (issue 22) say False: they add scoring runs (PGD-AT for Dong et
    # al.'s count) or need more scoring epochs than a short grid trains, so a grid names them.
    in_all: ClassVar[bool] = True
    reference: ClassVar[str] = ""  # the paper and the public code it follows, one line (`corebench methods`)
    # Why `class_balanced` defaults as it does: the method's reference and what it does (every
    # method takes `class_balanced: true|false`, the kit checks it; a global keep can drop classes).
    class_balanced_source: ClassVar[str] = ""
    # How the method's reference trains on its coreset: "epochs: ..." (the same passes at every
    # fraction) or "steps: ..." (the same SGD steps), with the source; boards print it beside the
    # budget the grid used, as a fixed-epoch budget gives small coresets few steps (issue 18).
    reference_budget: ClassVar[str] = ""
    # What draws at random in the selection itself, given the signals (boards print it beside
    # the stability measures): "" = nothing beyond ties at the boundary, broken by the seed.
    randomness: ClassVar[str] = ""

    def __init__(self, params: Any | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def required_signals(self) -> tuple[str, ...]:
        """Signals this configured method needs (override when they depend on params)."""
        return tuple(self.signals)

    def scoring_regime(self) -> str:
        """The regime of the scoring runs it reads: its `scoring_regime` parameter when it has
        one, else "grid" (the grid's `scoring.regime`)."""
        return str(getattr(self.params, "scoring_regime", "grid"))

    def scoring_runs(self) -> int:
        """How many scoring runs (different seeds) the method averages over."""
        return int(getattr(self.params, "n_runs", 1))

    def scoring_epochs(self, epochs: int, snapshots: tuple[int, ...]) -> int:
        """How many epochs of the `epochs`-epoch scoring schedule its runs must train.

        `snapshots` are the schedule's snapshot epochs (`ScoringConfig.snapshots()`). Default:
        all of them (safe for signals read at every epoch or from the final model). A method
        that reads one early snapshot overrides it (GraNd at initialisation: 0; EL2N at epoch
        k: k), so its runs stop there unless another method sharing them needs more.
        """
        return epochs

    def options(self) -> dict[str, Any]:
        """Every parameter with its value, for the result record."""
        return {f.name: to_jsonable(getattr(self.params, f.name)) for f in fields(self.params)}

    def options_for(self, fraction: float, dataset: str = "") -> dict[str, Any]:
        """The options as used at `fraction` on `dataset` (its registry name; "" when unknown):
        a method fills in per-fraction or per-dataset defaults here, and may raise a
        `ConfigError` when an option has no default for that dataset (the grid calls this for
        every method × dataset × fraction before any training)."""
        return self.options()

    @abstractmethod
    def select(self, ctx: SelectionContext, fraction: float) -> np.ndarray:
        """Return the indices of the samples to KEEP (exactly ctx.budget(fraction) of them)."""


class ScoreBasedMethod(CoresetMethod):
    """A method that ranks samples by one hardness score (higher = harder) and keeps one end.

    Subclasses implement `hardness` and give their `Params` a `direction` (the reference's
    by default) and a `class_balanced` field.
    """

    @abstractmethod
    def hardness(self, ctx: SelectionContext) -> np.ndarray:
        """Per-sample hardness [N]; higher means harder."""

    def select(self, ctx: SelectionContext, fraction: float) -> np.ndarray:
        scores = check_scores(self.name, self.hardness(ctx), ctx.n, ctx)
        balanced = bool(getattr(self.params, "class_balanced", False))
        if self.params.direction == "hardest":
            return ctx.keep_highest(scores, fraction, balanced)
        return ctx.keep_lowest(scores, fraction, balanced)


def check_scores(method: str, scores: np.ndarray, n: int, ctx: SelectionContext | None = None) -> np.ndarray:
    """Scores must be one finite number per sample; a failure names the signal that holds a
    non-finite value, when one does (`ctx`: the method's view of its signals)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (n,):
        raise MethodError(f"method {method!r}: scores have shape {scores.shape}, expected ({n},)")
    bad = ~np.isfinite(scores)
    if bad.any():
        raise MethodError(
            f"method {method!r}: {int(bad.sum())} of {n} scores are NaN or infinite "
            f"(first at index {int(np.flatnonzero(bad)[0])}){nonfinite_signal(ctx)}"
        )
    return scores


def nonfinite_signal(ctx: SelectionContext | None) -> str:
    """'; signal X of scoring run r holds k NaN or infinite values' for the first such signal, or ''."""
    for r, run in enumerate(ctx.runs if ctx is not None else ()):
        for name in sorted(run):
            arr = np.asarray(run[name])
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                count = int((~np.isfinite(arr)).sum())
                return f"; signal {name!r} of scoring run {r} holds {count} NaN or infinite values"
    return ""


def validate_selection(method: str, indices: Any, n: int, budget: int) -> np.ndarray:
    """Check a method's output; return it as sorted int64 or raise MethodError naming the method."""
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise MethodError(f"method {method!r}: returned an array of shape {arr.shape}, expected 1-D indices")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise MethodError(f"method {method!r}: returned dtype {arr.dtype}, expected integer indices")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        bad = arr[(arr < 0) | (arr >= n)][0]
        raise MethodError(f"method {method!r}: index {int(bad)} is out of range [0, {n})")
    uniq = np.unique(arr)
    if uniq.size != arr.size:
        raise MethodError(f"method {method!r}: returned {arr.size - uniq.size} duplicate indices")
    if arr.size != budget:
        raise MethodError(f"method {method!r}: returned {arr.size} indices, expected exactly {budget}")
    return uniq


def run_selection(method: CoresetMethod, ctx: SelectionContext, fraction: float) -> np.ndarray:
    """Call the method on a view of its declared signals only and validate what it returns
    (sorted, unique int64 indices to keep). Anything the method raises becomes a MethodError
    that names it, so a broken method fails its own cells only."""
    if not 0.0 < fraction <= 1.0:
        raise MethodError(f"method {method.name!r}: fraction {fraction!r} is not in (0, 1]")
    view = ctx.only(method.name, declared_signals(method))
    try:
        raw = method.select(view, fraction)
    except MethodError as exc:
        if f"method {method.name!r}" in str(exc):
            raise
        raise MethodError(f"method {method.name!r}: {exc}") from exc
    except Exception as exc:  # a plug-in's own bug: name it, keep the first line
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise MethodError(f"method {method.name!r} raised {type(exc).__name__}: {first}".rstrip(": ")) from exc
    return validate_selection(method.name, raw, ctx.n, ctx.budget(fraction))
