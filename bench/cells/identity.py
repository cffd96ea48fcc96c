"""A cell's identity: the one function that says which settings make a cell's numbers.

A record is valid for a cell while both have the same id, so the id must change exactly when
a result can change, and never otherwise. `cell_settings` builds the canonical settings of a
cell, from a grid (the runner, claims, `status`, `plan`, Slurm) or from a stored record (the
migration of old records, and `status` explaining a stale one), and `cell_id` hashes them.

The canonical form follows three rules:
- **Defaults are dropped.** Every settings value equal to its field's default is left out
  (recursively, for the grid's settings types and the method's `Params`), so adding a setting
  or a method option whose default reproduces today's behaviour leaves every existing id
  unchanged.
- **Data by content.** The dataset's file or folder (`path`, `root`, `download`) is left out:
  the data's content hash (`Dataset.fingerprint`) stands for it, so the same file spelled by
  another path is the same cell, and a changed file is a new one.
- **Execution is not identity.** How a step runs on its device (memory layout, compiled or
  not, the SGD implementation, the train split stored as uint8: the record's `execution`)
  computes the same numbers on the CPU, so only settings that a user sets away from their
  defaults enter the id; the precision a user asks for (`bf16` against `fp32`) does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from corebench.core.spec import FULL_DATA, DatasetSpec, stable_hash, to_jsonable
from corebench.store.record import CellConfig, Record

# Where the data came from, not what it is: the content hash stands for these.
DATA_LOCATION_FIELDS = ("path", "root", "download")


def canonical(value: Any) -> Any:
    """`value` as plain JSON with every field equal to its default left out (see module doc)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            default = _default_of(f)
            if default is not dataclasses.MISSING and to_jsonable(v) == to_jsonable(default):
                continue
            out[f.name] = canonical(v)
        return out
    if isinstance(value, BaseModel):
        out = {}
        for name, info in type(value).model_fields.items():
            v = getattr(value, name)
            if not info.is_required() and to_jsonable(v) == to_jsonable(info.get_default(call_default_factory=True)):
                continue
            out[name] = canonical(v)
        return out
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return to_jsonable(value)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def method_defaults(method: str) -> dict[str, Any] | None:
    """The default of every parameter of a registered method (None: not registered here)."""
    if method == FULL_DATA:
        return {}
    from corebench.methods.registry import get_method_class

    try:
        params = get_method_class(method).Params
    except Exception:  # an unknown or uninstalled plug-in: its options cannot be canonicalised
        return None
    return {f.name: to_jsonable(d) for f in dataclasses.fields(params)
            if (d := _default_of(f)) is not dataclasses.MISSING}  # fmt: skip


def canonical_options(method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The method's options as used, without those equal to the parameter's default."""
    defaults = method_defaults(method) or {}
    return {k: to_jsonable(v) for k, v in options.items() if k not in defaults or to_jsonable(v) != defaults[k]}


def cell_settings(key: Mapping[str, Any], options: Mapping[str, Any], config: CellConfig,
                  data_fingerprint: str, method_code: str | None = None) -> dict[str, Any]:
    """Everything that determines a cell's numbers, canonical: its key, the method's options at
    its fraction, the resolved settings, the data's content hash and, for a plug-in method, the
    hash of its source (`methods.registry.plugin_fingerprint`; left out when None, so the ids
    of the methods corebench ships do not hold it)."""
    settings = canonical(config)
    settings["dataset"] = dataset_identity(config.dataset)
    out = {"cell": dict(key), "options": canonical_options(key["method"], options), "config": settings,
           "data": data_fingerprint}
    if method_code is not None:
        out["method_code"] = method_code
    return out


def cell_id(settings: Mapping[str, Any]) -> str:
    """The hash of a cell's canonical settings: a record is valid for a cell while they agree."""
    return stable_hash(settings)


def record_settings(record: Record | Mapping[str, Any]) -> dict[str, Any]:
    """The canonical settings a stored record was made under (the same function as a grid's):
    of a `Record`, or of a record's JSON form (scripts that migrate files; it needs `cell`,
    `config` and what it has of `method_options`, `data` and `method_source`)."""
    if isinstance(record, Mapping):
        config = CellConfig.model_validate(record["config"])
        fingerprint = (record.get("data") or {}).get("fingerprint", "")
        code = (record.get("method_source") or {}).get("code")
        return cell_settings(record["cell"], record.get("method_options") or {}, config, fingerprint, code)
    data, source = record.data, record.method_source
    return cell_settings(record.cell.model_dump(), record.method_options, record.config,
                         data.fingerprint if data is not None else "", source.code if source is not None else None)


def differences(made: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = "") -> list[str]:
    """What differs between a record's settings and the grid's, one 'where: old -> new' each."""
    out = []
    for k in sorted(set(made) | set(wanted), key=str):
        a, b = made.get(k, _DEFAULT), wanted.get(k, _DEFAULT)
        where = f"{prefix}{k}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += differences(a, b, where + ".")
        elif a != b:
            out.append(f"{_where(where)}: {_short(a)} -> {_short(b)}")
    return out


_DEFAULT = "(default)"


def _where(where: str) -> str:
    return {"data": "data (content hash)", "method_code": "method code (plug-in source hash)"}.get(
        where, where.removeprefix("config."))


def _short(value: Any, limit: int = 60) -> str:
    text = value if value is _DEFAULT else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def dataset_identity(ds: DatasetSpec) -> dict[str, Any]:
    """A dataset entry without where its files live (what names it in an id)."""
    return {k: v for k, v in canonical(ds).items() if k not in DATA_LOCATION_FIELDS}
