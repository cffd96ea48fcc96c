"""The result record: one JSON object per cell, the only thing a leaderboard is built from.

`Record` is the schema (docs/RESULTS.md describes it in words, docs/record.schema.json is its
JSON Schema, exported from this model and tested to be current). The runner builds a record
through it and the results store reads every file back through it, so a field is spelled,
typed and range-checked in exactly one place. Reading is strict: a record is JSON the suite
wrote, so a number stored as a string, an accuracy above 100 or an unknown key is an error
that names the field.

Schema 2 adds `metrics.robust` (robust accuracy at each ε), `training` (what was actually
trained) and `cost` (the scoring runs the selection used, and the training steps and
seconds); `config.evaluation.eps` becomes the list of ε. Records of schema 1 (no such fields,
one ε) are still read: the new fields are optional there and required in schema 2.

`per_image_outcomes` (optional; records written before it lack it) keeps, for every evaluated
test image, whether the model was right on it, and robust at each ε (PGD-k and AutoAttack):
bit-packed (`pack_bits`: base64 of `numpy.packbits`, 13 bytes for 100 images), and checked
against the accuracies beside it, so a reader can recompute every number and the boards can
pair two models image by image (`corebench.boards.stats.paired_components`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from corebench.core.checked import PositiveInt, describe
from corebench.core.errors import ResultsError
from corebench.core.spec import (
    ArchSpec,
    AttackConfig,
    DatasetSpec,
    EvaluationConfig,
    Regime,
    ScoringConfig,
    TrainingConfig,
    to_jsonable,
)

SCHEMA_VERSION = 2
KNOWN_SCHEMA_VERSIONS = (1, 2)  # 1: read only (no metrics.robust, training, cost; one ε)

Accuracy = Annotated[float, Field(ge=0, le=100)]  # percent
NonEmpty = Annotated[StrictStr, Field(min_length=1)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PrimaryRef(_Part):
    """A comparison the grid declared primary (`spec.Comparison`): method − against."""

    method: NonEmpty
    against: NonEmpty
    fraction: Fraction
    regime: NonEmpty
    eps: Annotated[float, Field(gt=0, le=1)]


class GridRef(_Part):
    """The grid a record came from, with how its boards test it: the declared primary
    comparisons and the correction across each board's family (records older than these
    fields have none and Holm)."""

    name: NonEmpty
    source: StrictStr | None = None
    primary: list[PrimaryRef] = Field(default_factory=list)
    correction: Literal["holm", "bh"] = "holm"


class CellKey(_Part):
    """What a board groups and ranks by; the record's path spells it (`spec.record_relpath`)."""

    dataset: NonEmpty
    arch: NonEmpty
    scoring_arch: NonEmpty
    regime: NonEmpty
    method: NonEmpty
    method_label: NonEmpty
    fraction: Fraction
    seed: StrictInt


class CellConfig(_Part):
    """Every setting that changes the cell's numbers, resolved (ε filled in from the dataset)."""

    dataset: DatasetSpec
    arch: ArchSpec
    scoring_arch: ArchSpec
    scoring: ScoringConfig
    training: TrainingConfig
    attack: AttackConfig
    evaluation: EvaluationConfig
    threads: PositiveInt = 1  # torch threads of the process that made it (grid setting `threads`)


class RobustAtEps(_Part):
    """Robust accuracy at one ε (clean accuracy is measured once, in `Metrics.clean_acc`)."""

    eps: Annotated[float, Field(gt=0, le=1)]
    pgd_acc: Accuracy | None
    autoattack_acc: Accuracy | None  # None when AutoAttack is disabled
    autoattack_per_attack: dict[str, Accuracy] = Field(default_factory=dict)


class Metrics(_Part):
    """Top-level `pgd_acc` / `autoattack_acc` / `autoattack_per_attack` are those of the
    largest ε; `robust` has one entry per ε, ascending (schema 2)."""

    clean_acc: Accuracy
    pgd_acc: Accuracy | None
    autoattack_acc: Accuracy | None  # None when AutoAttack is disabled
    n_eval: PositiveInt
    autoattack_per_attack: dict[str, Accuracy] = Field(default_factory=dict)
    robust: list[RobustAtEps] | None = None  # absent in schema 1
    # how many of the n_eval clean predictions fell in each class (absent in older records);
    # `board.degenerate` flags a seed whose model predicts one class for most images
    predicted_histogram: list[Annotated[StrictInt, Field(ge=0)]] | None = None


def pack_bits(values: Any) -> str:
    """A bool array as text: base64 of `numpy.packbits` (big-endian bit order, zero-padded)."""
    return base64.b64encode(np.packbits(np.asarray(values, dtype=bool))).decode("ascii")


def unpack_bits(text: str, n: int) -> np.ndarray:
    """The first `n` bools packed by `pack_bits`; ValueError when `text` holds fewer."""
    try:
        raw = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8)
    except (binascii.Error, ValueError):
        raise ValueError("not base64 text") from None
    if raw.size * 8 < n or raw.size > (n + 7) // 8:
        raise ValueError(f"holds {raw.size} bytes; {n} images need {(n + 7) // 8}")
    return np.unpackbits(raw, count=n).astype(bool)


class OutcomesAtEps(_Part):
    """Per image at one ε: robust to PGD-k, and to AutoAttack (None when it is disabled)."""

    eps: Annotated[float, Field(gt=0, le=1)]
    pgd: StrictStr
    autoattack: StrictStr | None


class PerImageOutcomes(_Part):
    """Per evaluated test image (the first `n` of the test split, in order), packed by `pack_bits`."""

    n: PositiveInt
    clean: StrictStr
    robust: list[OutcomesAtEps]

    def unpacked(self) -> dict[str, Any]:
        """{'clean': bools, 'robust': {ε: (pgd bools, autoattack bools or None)}}."""
        return {"clean": unpack_bits(self.clean, self.n),
                "robust": {r.eps: (unpack_bits(r.pgd, self.n),
                                   None if r.autoattack is None else unpack_bits(r.autoattack, self.n))
                           for r in self.robust}}  # fmt: skip

    def check(self, metrics: Metrics) -> None:
        """The outcomes count to the accuracies beside them (ValueError naming the field)."""
        if self.n != metrics.n_eval:
            raise ValueError(f"per_image_outcomes.n: {self.n} is not allowed; allowed: metrics.n_eval ({metrics.n_eval})")
        try:
            got = self.unpacked()
        except ValueError as exc:
            raise ValueError(f"per_image_outcomes: {exc}") from None
        expected = {r.eps: (r.pgd_acc, r.autoattack_acc) for r in metrics.robust or ()}
        if set(got["robust"]) != set(expected):
            raise ValueError(f"per_image_outcomes.robust: ε {sorted(got['robust'])} is not allowed; "
                             f"allowed: those of metrics.robust {sorted(expected)}")
        pairs = [("clean", got["clean"], metrics.clean_acc)]
        for eps, (pgd, aa) in got["robust"].items():
            pairs += [(f"robust[{eps:g}].pgd", pgd, expected[eps][0]), (f"robust[{eps:g}].autoattack", aa, expected[eps][1])]
        for name, bits, acc in pairs:
            if (bits is None) != (acc is None) or (bits is not None and abs(100.0 * bits.sum() / self.n - acc) > 1e-6):
                share = None if bits is None else 100.0 * bits.sum() / self.n
                raise ValueError(f"per_image_outcomes.{name}: {share!r} % correct is not allowed; allowed: the "
                                 f"accuracy in metrics ({acc!r})")


class TrainingDone(_Part):
    """What the target model was actually trained for (`epochs` is fractional under a step
    budget: steps / steps per epoch of the coreset)."""

    budget: Literal["epochs", "steps"]
    epochs: Annotated[float, Field(ge=0)]
    steps: Annotated[StrictInt, Field(ge=0)]
    seconds: Annotated[float, Field(ge=0)]


class ScoringRunCost(_Part):
    """One scoring run a selection used: its cache key, seed, the epochs it trained, the
    seconds of the run that made it (read from the cache when reused), the regime it trained
    under (records written before issue 22: standard), and what the cell's method needed of it
    (`methods.base.scoring_need`: a run shared with a longer need trains more than this method
    needs; absent in older records)."""

    key: NonEmpty
    seed: Annotated[StrictInt, Field(ge=0)]
    epochs: Annotated[StrictInt, Field(ge=0)]
    seconds: Annotated[float, Field(ge=0)]
    regime: Regime = "standard"
    epochs_needed: Annotated[StrictInt, Field(ge=0)] | None = None
    passes_needed: Annotated[StrictInt, Field(ge=0)] | None = None


class Cost(_Part):
    """The cell's compute: every scoring run its selection used (none for random and full
    data) and the target model's training steps and seconds."""

    scoring_runs: list[ScoringRunCost]
    train_steps: Annotated[StrictInt, Field(ge=0)]
    train_s: Annotated[float, Field(ge=0)]


class BoundRun(_Part):
    """One scoring run a selection read: its cache key, the epochs of it the method was served,
    and the digest of every array served (`corebench.store.inputs`)."""

    key: NonEmpty
    epochs: Annotated[StrictInt, Field(ge=0)]
    signals: dict[str, NonEmpty]


class Inputs(_Part):
    """The files a finished record was derived from, by digest (`corebench.store.inputs`): its kept
    indices, and the scoring runs its selection read. The data is bound by the cell id."""

    indices: NonEmpty
    scoring_runs: list[BoundRun]


class Coreset(_Part):
    n_train: PositiveInt
    size: PositiveInt
    indices_file: NonEmpty
    class_histogram: list[Annotated[StrictInt, Field(ge=0)]]


class Stability(_Part):
    """How stable the cell's selection is, on equal footing for every method
    (`corebench.selection.stability.selection_stability`; absent in older records and for full data)."""

    runs_averaged: Annotated[StrictInt, Field(ge=0)]  # scoring runs the selection averaged
    single_run_indices_file: NonEmpty  # the selection from the first scoring run alone
    single_run_spearman: Annotated[float, Field(ge=-1, le=1)] | None  # runs 0 and 1, single-run scores
    single_run_jaccard: Annotated[float, Field(ge=0, le=1)] | None  # runs 0 and 1, single-run selections
    own_randomness_jaccard: Annotated[float, Field(ge=0, le=1)] | None  # same signals, another seed
    boundary_ties: Annotated[StrictInt, Field(ge=0)] | None  # samples tied with the last kept score


class MethodSource(_Part):
    """The installed package that provided the cell's method (`methods.registry.method_source`)."""

    module: NonEmpty
    distribution: StrictStr | None  # None: the module belongs to no installed distribution
    version: StrictStr | None
    editable: StrictBool = False
    git_commit: StrictStr | None = None  # of an editable install's source tree ("-dirty": changed files)
    code: StrictStr | None = None  # a plug-in's source hash (`methods.registry.plugin_fingerprint`), in its cell id


class DataRef(_Part):
    """The data a cell was trained and evaluated on: what a reader must know to trust it."""

    name: NonEmpty
    source: StrictStr = ""  # where the arrays came from (a file and its hash, a folder)
    fingerprint: StrictStr = ""  # hash of every array (Dataset.fingerprint)
    n_train: PositiveInt
    n_test: PositiveInt
    num_classes: PositiveInt
    notes: list[StrictStr] = Field(default_factory=list)  # caveats every board must state


class Execution(_Part):
    """How the cell's training steps ran on its device, as resolved from `training`'s settings
    (`corebench.compute.fastpath`): precision of the autocast, memory format, compiled or not, the SGD
    implementation and the storage of the train split on the device."""

    precision: Literal["fp32", "bf16"]
    channels_last: StrictBool
    compile: StrictBool
    sgd: Literal["for-loop", "foreach", "fused"]
    data: Literal["uint8", "float32"]


def _as_plain(value: Any) -> Any:
    """A `CellConfig` handed in from Python (the runner) as the plain JSON it is written as."""
    return to_jsonable(value) if isinstance(value, BaseModel) else value


# `config` as its writer wrote it: the same JSON key read a second time, untyped, in the one
# parse (not a second parse of the bytes). The boards print a record's settings from it, so a
# record written before a setting existed does not claim that setting's default (pydantic
# dataclasses, unlike models, do not remember which fields were given). Never serialised.
ConfigAsWritten = SkipJsonSchema[Annotated[dict[str, Any], BeforeValidator(_as_plain)]]


class Record(_Part):
    # One cell's result. Read it with `parse_record` (strict, from the file's bytes) and its fields
    # as attributes; `config_written` is `config` as the file spells it (see above). (A comment,
    # not a docstring: a docstring would enter docs/record.schema.json.)
    schema_version: Literal[1, 2]
    cell_id: NonEmpty
    status: Literal["ok", "failed"]
    error: StrictStr | None
    grid: GridRef
    cell: CellKey
    method_options: dict[str, Any]
    config: CellConfig
    metrics: Metrics | None
    coreset: Coreset | None
    timings: dict[str, float | None]
    versions: dict[str, StrictStr | None]
    device: StrictStr | None
    method_source: MethodSource | None = None  # None: a full-data cell, or a record older than the field
    data: DataRef | None = None  # absent in records written before it existed
    training: TrainingDone | None = None  # schema 2: required when status is ok
    cost: Cost | None = None  # schema 2: required when status is ok
    execution: Execution | None = None  # None: the cell failed before training, or an older record
    inputs: Inputs | None = None  # None: the cell failed before selecting, or a record older than the field
    stability: Stability | None = None  # None: full data, random, a failed selection, or an older record
    per_image_outcomes: PerImageOutcomes | None = None  # None: failed, or a record older than the field
    config_written: ConfigAsWritten = Field(default_factory=dict, validation_alias="config", exclude=True, repr=False)

    @model_validator(mode="after")
    def _outcome_fits_status(self) -> Record:
        if self.status == "failed":
            if not self.error:
                raise ValueError("error: a one-line error message is required when status is failed")
            return self
        if self.metrics is None:
            raise ValueError("metrics: required when status is ok")
        if self.config.evaluation.autoattack.enabled and self.metrics.autoattack_acc is None:
            raise ValueError("metrics.autoattack_acc: required (AutoAttack is enabled)")
        if not self.config.evaluation.autoattack.enabled and self.metrics.pgd_acc is None:
            raise ValueError("metrics.pgd_acc: required (AutoAttack is disabled)")
        hist = self.metrics.predicted_histogram
        if hist is not None and sum(hist) != self.metrics.n_eval:
            raise ValueError(f"metrics.predicted_histogram: sums to {sum(hist)}; allowed: metrics.n_eval "
                             f"({self.metrics.n_eval}) predictions")
        if self.schema_version >= 2:
            self._schema2_fields()
        self._possible()
        if self.per_image_outcomes is not None:
            self.per_image_outcomes.check(self.metrics)
        return self

    def _possible(self) -> None:
        """What no evaluation can produce (issue 23's hand edits): a robust accuracy above the
        clean one (every attack counts a point robust only if it is right on x itself), more
        images evaluated than the grid asks for, or a coreset larger than its training set. (A plausible hand-edited number passes
        these: `corebench verify` re-derives the record to catch it.)"""
        m = self.metrics
        if m is None:
            return
        n_max = self.config.evaluation.n_examples
        if self.data is not None:
            n_max = min(n_max, self.data.n_test)
        if m.n_eval > n_max:
            raise ValueError(f"metrics.n_eval: {m.n_eval} is not allowed; allowed: at most {n_max} (the grid's "
                             "evaluation.n_examples, and the test images there are)")
        entries = [("metrics", m.pgd_acc, m.autoattack_acc, m.autoattack_per_attack)]
        entries += [(f"metrics.robust[eps={r.eps:g}]", r.pgd_acc, r.autoattack_acc, r.autoattack_per_attack)
                    for r in m.robust or ()]
        for where, pgd, aa, per_attack in entries:
            named = [("pgd_acc", pgd), ("autoattack_acc", aa), *((f"autoattack_per_attack.{k}", v)
                                                                  for k, v in per_attack.items() if k != "clean")]
            for name, value in named:
                if value is None:
                    continue
                if value > m.clean_acc + 1e-9:
                    raise ValueError(f"{where}.{name}: {value!r} is not allowed; allowed: at most the clean accuracy "
                                     f"{m.clean_acc!r} (an attacked image counts only if it is right unattacked)")
        c = self.coreset
        if c is not None and c.size > c.n_train:
            raise ValueError(f"coreset.size: {c.size} is not allowed; allowed: at most coreset.n_train ({c.n_train})")

    def _schema2_fields(self) -> None:
        """Schema 2: training, cost and one robust entry per ε, the largest one's on top."""
        for name in ("training", "cost"):
            if getattr(self, name) is None:
                raise ValueError(f"{name}: required when status is ok (schema 2)")
        robust = self.metrics.robust if self.metrics is not None else None
        radii = list(self.config.evaluation.eps or ())
        if robust is None or [r.eps for r in robust] != radii:
            got = None if robust is None else [r.eps for r in robust]
            raise ValueError(f"metrics.robust: {got!r} is not allowed; allowed: one entry per config.evaluation.eps {radii!r}")
        top = robust[-1]
        m = self.metrics
        if (m.pgd_acc, m.autoattack_acc, m.autoattack_per_attack) != (top.pgd_acc, top.autoattack_acc, top.autoattack_per_attack):
            raise ValueError("metrics: pgd_acc, autoattack_acc and autoattack_per_attack must equal metrics.robust's "
                             f"entry of the largest ε ({top.eps!r})")


def parse_record(text: str | bytes) -> Record:
    """A record from its JSON text; `ResultsError` with one line naming the field otherwise."""
    try:
        return Record.model_validate_json(text, strict=True)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        if err["type"] == "json_invalid":
            raise ResultsError(f"not valid JSON ({err['msg']}); a partial or hand-edited file?") from None
        if err["type"] == "value_error":
            raise ResultsError(err["msg"].removeprefix("Value error, ")) from None
        if err["type"] == "literal_error" and err["loc"] == ("schema_version",):
            known = ", ".join(map(str, KNOWN_SCHEMA_VERSIONS))
            raise ResultsError(f"schema_version: {err['input']!r} is not known; known: {known}") from None
        raise ResultsError(describe(exc, "", Record)) from None


def schema() -> dict[str, Any]:
    """The record's JSON Schema (written to docs/record.schema.json)."""
    return Record.model_json_schema()


if __name__ == "__main__":  # python -m corebench.store.record > docs/record.schema.json
    import json

    print(json.dumps(schema(), indent=2, sort_keys=True, ensure_ascii=False))
