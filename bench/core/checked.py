"""How a value from a user enters the suite: checked types, and one-line errors when it fails.

Grid files, `--param` values and method parameters are checked here, once, at the boundary;
the code below trusts what passed. A failure becomes one line that names the field, the value
and what is allowed (`describe` turns pydantic's errors into it), the CLI prints it and exits 2.
Result records are read back through the same machinery (`corebench.store.record`), strictly.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    create_model,
)
from pydantic_core import PydanticCustomError

from corebench.core.errors import ConfigError, cut, shown

# --------------------------------------------------------------------------- checked types


def not_allowed(field_name: str, value: Any, allowed: str) -> PydanticCustomError:
    """A validator's error that names its own field and value (for cross-field checks)."""
    return PydanticCustomError(
        "not_allowed", "{field}: {value} is not allowed; allowed: {allowed}",
        {"field": field_name, "value": repr(value), "allowed": allowed},
    )  # fmt: skip


def _number(value: Any, info: ValidationInfo) -> Any:
    """Accept '8/255' as well as 0.031 in a grid file (ε is usually written as a fraction);
    never a bool, and never a string in JSON the suite wrote (a record)."""
    if isinstance(value, str) and info.mode == "json":
        raise PydanticCustomError("number", "a number (written as a JSON number, not a string)")
    if isinstance(value, bool):
        raise PydanticCustomError("number", "a number such as 0.03 or 8/255")
    if isinstance(value, str):
        try:
            if "/" in value:
                num, den = value.split("/")
                return float(num) / float(den)
            return float(value)
        except (ValueError, ZeroDivisionError):
            raise PydanticCustomError("number", "a number such as 0.03 or 8/255") from None
    return value


def _radius(value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise PydanticCustomError("radius", "a number in (0, 1] (pixel units, e.g. 8/255), or leave it out")
    return value


def _one_or_many(value: Any) -> Any:
    """A single value as a tuple of one; a list as a tuple (then checked entry by entry)."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


Number = Annotated[float, BeforeValidator(_number)]
Radius = Annotated[Number, AfterValidator(_radius)]
Radii = Annotated[tuple[Radius, ...], BeforeValidator(_one_or_many)]  # 8/255 or [1/255, 8/255]
MAX_COUNT = 2**31 - 1  # any count a grid gives (examples, steps, batch): a C int, so numpy and torch take it
MAX_EPOCHS = 100_000  # far beyond any reference schedule (200); more is a typo found before training, not after


def _below(limit: int, what: str) -> Any:
    def check(value: int) -> int:
        if value > limit:
            raise PydanticCustomError("count", what)
        return value
    return AfterValidator(check)


PositiveInt = Annotated[StrictInt, Field(gt=0), _below(MAX_COUNT, f"a positive integer of at most {MAX_COUNT}")]
NonNegativeInt = Annotated[StrictInt, Field(ge=0), _below(MAX_COUNT, f"an integer in [0, {MAX_COUNT}]")]
Epochs = Annotated[StrictInt, Field(gt=0), _below(MAX_EPOCHS, f"a positive integer of at most {MAX_EPOCHS}")]
Momentum = Annotated[Number, Field(ge=0, lt=1)]
LearningRate = Annotated[Number, Field(gt=0, le=10)]  # SGD above 10 only diverges
WeightDecay = Annotated[Number, Field(ge=0, lt=1)]  # 1 would zero the weights at lr 1
TradesBeta = Annotated[Number, Field(ge=0, le=100)]  # the references use 1 to 6
Seed = Annotated[StrictInt, Field(ge=0, lt=2**31)]  # torch and numpy accept every one of these
Threads = Annotated[StrictInt, Field(ge=1, le=1024)]

def _device(value: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise PydanticCustomError("device", "auto, cpu, cuda, cuda:N")
    return value


Device = Annotated[StrictStr, AfterValidator(_device)]


def _minutes(value: Any) -> Any:
    """A wall time in minutes, or as Slurm writes it (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S)."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+(?::\d+){0,2})", text)
    if not match or (match.group(1) is None and text.count(":") > 2):
        raise PydanticCustomError("minutes", "minutes (240) or a Slurm time (4:00:00, 1-12:00:00)")
    parts = [int(p) for p in match.group(2).split(":")]
    if match.group(1) is not None:  # D-H[:M[:S]]
        hours, minutes, seconds = (parts + [0, 0])[:3]
        hours += 24 * int(match.group(1))
    elif len(parts) == 3:  # H:M:S
        hours, minutes, seconds = parts
    else:  # M or M:S
        hours, minutes, seconds = 0, parts[0], (parts + [0])[1]
    return hours * 60 + minutes + math.ceil(seconds / 60)


def _memory(value: Any) -> Any:
    """Memory as Slurm's --mem takes it: 16G, 4000M; a bare number means gigabytes."""
    text = str(value).strip().upper() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not re.fullmatch(r"[1-9]\d*[KMGT]?", text):
        raise PydanticCustomError("memory", "a size such as 16G or 4000M (a bare number: gigabytes)")
    return text if text[-1].isalpha() else f"{text}G"


Minutes = Annotated[int, BeforeValidator(_minutes), Field(gt=0)]
Memory = Annotated[StrictStr, BeforeValidator(_memory)]


# --------------------------------------------------------------------------- the boundary


def build(cls: type, data: Any, where: str) -> Any:
    """Build settings of type `cls` from user data (YAML, --param), or a one-line ConfigError.

    `cls` is a `spec` type, or a plain frozen dataclass such as a method's `Params`; the latter
    is checked strictly (an int is never a bool or a string) with its fields' `Annotated`
    constraints, then constructed, so its `__post_init__` runs too.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: {shown(data)} is not allowed; allowed: a mapping of keys {', '.join(_field_names(cls))}")
    try:
        if hasattr(cls, "__pydantic_validator__"):
            return _adapter(cls).validate_python(dict(data))
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        checked = _strict_model(cls).model_validate(values)
        return cls(**{f: getattr(checked, f) for f in _field_names(cls)})
    except ValidationError as exc:
        raise ConfigError(describe(exc, where, cls)) from None


def number(value: Any, where: str) -> float:
    """A number from user data: 0.5, 1/2 or '8/255'; a one-line ConfigError otherwise."""
    try:
        return _adapter(Number).validate_python(value)
    except ValidationError as exc:
        raise ConfigError(describe(exc, where)) from None


@cache
def _adapter(cls: Any) -> TypeAdapter:
    return TypeAdapter(cls)


@cache
def _strict_model(cls: type) -> type:
    hints = get_type_hints(cls, include_extras=True)
    fields = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            fields[f.name] = (hints[f.name], f.default)
        elif f.default_factory is not dataclasses.MISSING:
            fields[f.name] = (hints[f.name], Field(default_factory=f.default_factory))
        else:
            fields[f.name] = (hints[f.name], ...)
    config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    return create_model(cls.__name__, __config__=config, **fields)


def _field_names(cls: type) -> list[str]:
    return list(_field_types(cls) or {})


def _field_types(tp: Any) -> dict[str, Any] | None:
    """Field name -> annotation of a settings dataclass or a pydantic model; None otherwise."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {name: f.annotation for name, f in tp.model_fields.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a class, not a validator instance
        hints = get_type_hints(tp, include_extras=True)
        return {f.name: hints[f.name] for f in dataclasses.fields(tp)}
    return None


_ALLOWED_BY_TYPE = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string", "float_type": "a number", "float_parsing": "a number",
    "finite_number": "a finite number", "dict_type": "a mapping", "mapping_type": "a mapping",
    "tuple_type": "a list", "list_type": "a list", "iterable_type": "a list",
}  # fmt: skip


def describe(exc: ValidationError, where: str, cls: type | None = None) -> str:
    """The first error of a ValidationError as one line: '<field>: <value> is not allowed; allowed: …'."""
    err = exc.errors(include_url=False)[0]
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    # a union's member tags ('constrained-float', 'function-after[...]') are not fields: drop them;
    # an unknown key (the last place of its error) is kept whatever it is ('', 'batch-size')
    loc, key = err["loc"], ()
    if kind in ("extra_forbidden", "unexpected_keyword_argument") and loc:
        loc, key = loc[:-1], loc[-1:]
    err["loc"] = tuple(p for p in loc if not (isinstance(p, str) and not p.isidentifier())) + key
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]  # the value names the list entry
    if kind == "not_allowed":
        path = ".".join([where, *loc, ctx["field"]])
        return f"{path}: {cut(ctx['value'], 200)} is not allowed; allowed: {ctx['allowed']}"
    path = ".".join(p for p in [where, *loc] if p) or "top level"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        owner = _type_at(cls, err["loc"][:-1]) if cls is not None else None
        allowed = "keys " + ", ".join(_field_names(owner)) if owner is not None else "a known key"
        return f"{path}: {shown(loc[-1])} is not allowed; allowed: {allowed}"
    if kind in ("dataclass_type", "model_type", "dataclass_args_type", "model_attributes_type"):
        owner = _type_at(cls, err["loc"]) if cls is not None else None
        keys = f" of keys {', '.join(_field_names(owner))}" if owner is not None else ""
        return f"{path}: {shown(value)} is not allowed; allowed: a mapping{keys}"
    if kind == "missing":
        return f"{path}: missing; allowed: a value (the key is required)"
    allowed = _allowed(kind, ctx, err["msg"], value)
    if kind in _RANGED_ERRORS and cls is not None:  # say the whole range: 'a number in [0, 100]'
        owner, name = _type_at(cls, err["loc"][:-1]), loc[-1] if loc else ""
        ranged = _range_of(owner, name)
        if ranged:
            noun = "an integer" if kind.startswith("int") or _is_int_field(owner, name) else "a number"
            allowed = f"a positive {noun.split()[-1]}" if ranged == " > 0" else noun + ranged
    return f"{path}: {shown(value)} is not allowed; allowed: {allowed}"


_RANGED_ERRORS = ("int_type", "int_parsing", "float_type", "float_parsing", "number", "greater_than",
                  "greater_than_equal", "less_than", "less_than_equal")  # fmt: skip


def _is_int_field(owner: type | None, name: str) -> bool:
    """Whether a settings field holds integers (so its range is worded 'an integer ...')."""
    fields = getattr(owner, "__pydantic_fields__", None) or {}
    if name not in fields:
        return False
    annotation = fields[name].annotation
    return annotation is int or any(a is int for a in get_args(annotation))


def _range_of(owner: type | None, name: str) -> str:
    """' in [lo, hi]' (or ' >= lo', ...) from a field's constraints; '' when it has none."""
    fields = getattr(owner, "__pydantic_fields__", None) or {}
    if name not in fields:
        return ""
    found = [*fields[name].metadata, *_constraints_in(fields[name].annotation)]
    bounds = {type(m).__name__.lower(): getattr(m, type(m).__name__.lower()) for m in found
              if type(m).__name__ in ("Ge", "Gt", "Le", "Lt")}  # fmt: skip
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    high = (bounds["le"], "]") if "le" in bounds else (bounds["lt"], ")") if "lt" in bounds else None
    if low and high:
        return f" in {low[0]}{_fmt(low[1])}, {_fmt(high[0])}{high[1]}"
    if low:
        return f" {'>=' if low[0] == '[' else '>'} {_fmt(low[1])}"
    if high:
        return f" {'<=' if high[1] == ']' else '<'} {_fmt(high[0])}"
    return ""


def _fmt(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _allowed(kind: str, ctx: Mapping[str, Any], msg: str, value: Any) -> str:
    if kind == "literal_error":
        return ", ".join(re.findall(r"'([^']*)'", str(ctx["expected"])))
    if kind in ("number", "radius", "device", "minutes", "memory", "count"):
        return msg
    noun = "an integer" if isinstance(value, int) else "a number"
    if kind == "greater_than":
        return f"a positive {noun.split()[-1]}" if ctx["gt"] == 0 else f"{noun} > {ctx['gt']}"
    if kind == "greater_than_equal":
        return f"{noun} >= {ctx['ge']}"
    if kind in ("less_than", "less_than_equal"):
        return f"{noun} {'<' if kind == 'less_than' else '<='} {ctx.get('lt', ctx.get('le'))}"
    if kind == "string_pattern_mismatch":
        return f"a string matching {ctx['pattern']}"
    return _ALLOWED_BY_TYPE.get(kind, msg)


def _constraints_in(annotation: Any) -> list[Any]:
    """The annotated-types constraints inside an annotation such as `Annotated[float, Field(ge=0)] | None`."""
    out: list[Any] = []
    for meta in getattr(annotation, "__metadata__", ()):
        out += list(getattr(meta, "metadata", [meta]))
    for arg in get_args(annotation):
        if arg is not annotation:
            out += _constraints_in(arg)
    return out


def _type_at(cls: type, loc: Sequence[Any]) -> type | None:
    """The settings type reached by following `loc` (field names) from `cls`, if any."""
    tp: Any = cls
    for part in loc:
        types = _field_types(tp)
        if isinstance(part, int) or types is None:
            continue
        if part not in types:
            return None
        tp = _settings_in(types[part])
        if tp is None:
            return None
    return tp if _field_types(tp) is not None else None


def _settings_in(tp: Any) -> type | None:
    """The settings type inside an annotation such as `X | None` or `tuple[X, ...]`."""
    if _field_types(tp) is not None:
        return tp
    for arg in get_args(tp) if get_origin(tp) is not None else ():
        found = _settings_in(arg)
        if found is not None:
            return found
    return None


def suggest(value: str, known: Sequence[str]) -> str:
    """The known names, or for long lists the closest ones."""
    if len(known) <= 40:
        return ", ".join(known)
    close = difflib.get_close_matches(value, known, n=5, cutoff=0.5)
    hint = f"closest: {', '.join(close)}; " if close else ""
    return f"{hint}any of the {len(known)} names of timm.list_models()"


# --------------------------------------------------------------------------- YAML


class _NoAliasLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses anchors and aliases: a 2 KB file of nested aliases
    ("billion laughs") expands to gigabytes in every error message, hash and copy made of it.
    A grid never needs them (each axis is a short list)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            mark = event.start_mark
            raise ConfigError(f"{self.where}: a YAML anchor or alias (&{event.anchor} / *{event.anchor}) at line "
                              f"{mark.line + 1} is not allowed; allowed: plain YAML without anchors and aliases "
                              "(write each value out)")
        return super().compose_node(parent, index)


def load_yaml(text: str, where: str) -> Any:
    """YAML read safely (no object construction, no anchors or aliases), or a one-line ConfigError."""
    loader = _NoAliasLoader(text)
    loader.where = where  # type: ignore[attr-defined]
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ConfigError(f"{where}: not valid YAML ({cut(first, 200)})") from None
    finally:
        loader.dispose()
