"""Errors a user can cause. The CLI prints them as one line and exits 2."""

from __future__ import annotations

from collections.abc import Iterable


class BenchError(Exception):
    """A mistake the user can fix (bad config, missing data, bad method output).

    Its text is always one line: a line break inside a value the user gave (a key, a file
    name) is shown escaped, so the CLI's one-line error stays one line, and it is at most
    `MAX_MESSAGE_CHARS` long whatever the value (`shown` cuts each echoed value first)."""

    def __str__(self) -> str:
        return cut(super().__str__().replace("\r", "\\r").replace("\n", "\\n"), MAX_MESSAGE_CHARS)


class ConfigError(BenchError):
    """A grid file or command-line value is not valid."""


class DataError(BenchError):
    """A dataset cannot be loaded as configured."""


class MethodError(BenchError):
    """A coreset method returned a selection that breaks the contract."""


class PathError(BenchError):
    """A file would be written or deleted outside the folder it belongs to."""


class DiskError(BenchError):
    """A file cannot be written: a read-only folder, a full disk (what was computed before is kept)."""
class GridStopped(BenchError):
    """A failure that is no one cell's own (a scoring run, the cache, the data): it would fail
    every cell after it, so the grid stops at once with one line; finished records are kept."""


class ResultsError(BenchError):
    """A result record is malformed or results cannot be combined."""


SHOWN_CHARS = 200  # the most of a user's value any message echoes
MAX_MESSAGE_CHARS = 2000  # a backstop: no one-line error is longer than this


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """`repr(value)` cut to `limit` characters (marked '…'): a message echoes what the user gave,
    never megabytes of it (a 2 KB YAML alias bomb expands to gigabytes)."""
    try:
        text = repr(value) if isinstance(value, (str, bytes, int, float)) else _capped_repr(value, limit)
    except ValueError:  # an int too long to print (Python's 4300-digit limit)
        text = f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else "<unprintable>"
    return cut(text, limit)


def cut(text: str, limit: int) -> str:
    """`text`, or its first `limit` - 1 characters and '…'."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _capped_repr(value: object, limit: int) -> str:
    """repr of a container built without walking all of it (reprlib caps length and depth)."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = r.maxlong = limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 20
    r.maxlevel = 4
    return r.repr(value)


def invalid(field: str, value: object, allowed: str | Iterable[object]) -> ConfigError:
    """One-line error naming the field, the bad value (`shown`: at most 200 characters) and what is allowed."""
    if not isinstance(allowed, str):
        allowed = ", ".join(str(a) for a in allowed)
    return ConfigError(f"{field}: {shown(value)} is not allowed; allowed: {cut(allowed, 4 * SHOWN_CHARS)}")
