"""The method registry: `register_method`, `create_method`, `list_methods` (named like timm's).

Built-in methods register when `methods` is imported; third-party packages add theirs through
the entry-point group `corebench.methods` (each entry point names a module or a class; loading
it runs its `@register_method`).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import subprocess
from collections.abc import Callable
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from corebench.core.checked import build
from corebench.core.codehash import code_fingerprint
from corebench.core.errors import ConfigError, invalid
from corebench.core.spec import FULL_DATA
from corebench.methods.base import CoresetMethod
from corebench.signals import loaded_entry_points

ENTRY_POINT_GROUP = "corebench.methods"
_REGISTRY: dict[str, type[CoresetMethod]] = {}
_EP_DISTRIBUTIONS: dict[str, metadata.Distribution] = {}  # module advertised by an entry point -> its package
_FAILED: dict[str, str] = {}  # entry point that failed to import -> one line naming it and its error
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
        if ep.dist is not None:
            _EP_DISTRIBUTIONS[ep.module] = ep.dist  # the package behind the method, for the record
    for _ in loaded_entry_points(ENTRY_POINT_GROUP, "method", _FAILED):
        pass  # loading runs the plug-in's @register_method


def failed_plugins() -> dict[str, str]:
    """The method plug-ins that failed to import: entry point name -> package, module and error."""
    load_entry_points()
    return dict(_FAILED)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching an fnmatch pattern, sorted.

    Example:
        >>> list_methods("e*")
        ['easycore', 'el2n']
    """
    load_entry_points()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def all_methods() -> list[str]:
    """What a grid's `methods: all` brings in: the registered methods whose `in_all` is set
    (not those built on adversarial scoring runs or long per-epoch windows), sorted."""
    return [n for n in list_methods() if _REGISTRY[n].in_all]


def get_method_class(name: str) -> type[CoresetMethod]:
    load_entry_points()
    if name not in _REGISTRY:
        raise invalid("method", name, sorted(_REGISTRY))
    return _REGISTRY[name]


def create_method(name: str, **params: object) -> CoresetMethod:
    """Create a registered method; unknown or ill-typed parameters are ConfigErrors."""
    cls = get_method_class(name)
    return cls(build(cls.Params, params, f"methods.{name}"))


def plugin_fingerprint(name: str) -> str | None:
    """A hash of a plug-in method's source code (`codehash.code_fingerprint`), None for the
    methods corebench ships: a cell's id holds it (`identity.cell_settings`, key `method_code`),
    so editing a plug-in makes its own cells stale and leaves every other cell's id as it was."""
    if name == FULL_DATA:
        return None
    module = get_method_class(name).__module__
    if module.split(".")[0] == "corebench":
        return None
    return code_fingerprint(module)


def method_source(name: str) -> dict[str, Any]:
    """The package that provides method `name`, for the result record.

    Returns {module, distribution, version, editable, git_commit[, code]}: the distribution and version
    of the installed package the method's module comes from (the one that advertised it as an
    entry point, else the one owning its top-level package), and for an editable install the
    git commit of its source tree (with "-dirty" when tracked files changed); for a plug-in,
    `code`, the hash of its source (`plugin_fingerprint`) that its cells' ids hold.
    """
    module = get_method_class(name).__module__
    dist = _distribution_of(module)
    out: dict[str, Any] = {"module": module, "distribution": None, "version": None, "editable": False, "git_commit": None}
    code = plugin_fingerprint(name)
    if code is not None:
        out["code"] = code
    if dist is None:
        return out
    out["distribution"], out["version"] = dist.metadata["Name"], dist.version
    folder = _editable_folder(dist)
    if folder is not None:
        out["editable"], out["git_commit"] = True, git_commit(folder)
    return out


def _distribution_of(module: str) -> metadata.Distribution | None:
    for advertised, dist in _EP_DISTRIBUTIONS.items():
        if module == advertised or module.startswith(advertised + "."):
            return dist
    top = module.split(".")[0]
    names = _packages_distributions().get(top, [])
    if not names and top == "corebench":
        names = ["corebench"]
    for dist_name in names:
        try:
            return metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
    return None


@lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _editable_folder(dist: metadata.Distribution) -> Path | None:
    """The source folder of an editable (or local-folder) install, from PEP 610 direct_url.json."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    url = info.get("url", "")
    if not (info.get("dir_info") or {}).get("editable") or not url.startswith("file://"):
        return None
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(url).path))


@lru_cache(maxsize=16)
def git_commit(folder: str | Path) -> str | None:
    """The commit checked out at `folder` (12 hex digits, "-dirty" if tracked files changed)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip()[:12] + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
