"""The method registry: `register_method`, `create_method`, `list_methods` (named like timm's).

Built-in methods register when `methods` is imported; third-party packages add theirs through
the entry-point group `corebench.methods` (each entry point names a module or a class; loading
it runs its `@register_method`).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from importlib import metadata

from corebench.checked import build
from corebench.errors import ConfigError, invalid
from corebench.methods.base import CoresetMethod

ENTRY_POINT_GROUP = "corebench.methods"
_REGISTRY: dict[str, type[CoresetMethod]] = {}
_entry_points_loaded = False
log = logging.getLogger(__name__)


def register_method(name: str) -> Callable[[type[CoresetMethod]], type[CoresetMethod]]:
    """Class decorator: register a CoresetMethod subclass under `name` (duplicates are errors)."""

    def deco(cls: type[CoresetMethod]) -> type[CoresetMethod]:
        if not (isinstance(cls, type) and issubclass(cls, CoresetMethod)):
            raise TypeError(f"@register_method({name!r}) must decorate a CoresetMethod subclass")
        if not name or not name.replace("_", "").isalnum() or name != name.lower():
            raise ConfigError(f"method name {name!r} is not allowed; allowed: lowercase letters, digits, '_'")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ConfigError(
                f"method name {name!r} is already registered by {existing.__module__}.{existing.__qualname__}; "
                f"registered: {', '.join(sorted(_REGISTRY))}"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def load_entry_points() -> None:
    """Import third-party methods advertised under the `corebench.methods` entry-point group."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plug-in must not take the suite down
            log.warning("could not load method plug-in %s (%s): %s", ep.name, ep.value, exc)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching an fnmatch pattern, sorted.

    Example:
        >>> list_methods("e*")
        ['easycore', 'el2n']
    """
    load_entry_points()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_method_class(name: str) -> type[CoresetMethod]:
    load_entry_points()
    if name not in _REGISTRY:
        raise invalid("method", name, sorted(_REGISTRY))
    return _REGISTRY[name]


def create_method(name: str, **params: object) -> CoresetMethod:
    """Create a registered method; unknown or ill-typed parameters are ConfigErrors."""
    cls = get_method_class(name)
    return cls(build(cls.Params, params, f"methods.{name}"))
