"""Errors a user can cause. The CLI prints them as one line and exits 2."""

from __future__ import annotations

from collections.abc import Iterable


class BenchError(Exception):
    """A mistake the user can fix (bad config, missing data, bad method output).

    Its text is always one line: a line break inside a value the user gave (a key, a file
    name) is shown escaped, so the CLI's one-line error stays one line."""

    def __str__(self) -> str:
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


class ConfigError(BenchError):
    """A grid file or command-line value is not valid."""


class DataError(BenchError):
    """A dataset cannot be loaded as configured."""


class MethodError(BenchError):
    """A coreset method returned a selection that breaks the contract."""


class PathError(BenchError):
    """A file would be written or deleted outside the folder it belongs to."""


class GridStopped(BenchError):
    """A failure that is no one cell's own (a scoring run, the cache, the data): it would fail
    every cell after it, so the grid stops at once with one line; finished records are kept."""


class ResultsError(BenchError):
    """A result record is malformed or results cannot be combined."""


def invalid(field: str, value: object, allowed: str | Iterable[object]) -> ConfigError:
    """One-line error naming the field, the bad value and what is allowed."""
    if not isinstance(allowed, str):
        allowed = ", ".join(str(a) for a in allowed)
    return ConfigError(f"{field}: {value!r} is not allowed; allowed: {allowed}")
