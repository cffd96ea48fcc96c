"""A hash of a plug-in's source code, so that editing a plug-in is seen.

A plug-in method's cells and its signals' cached values are only valid for the code that made
them. Its version number need not change with an edit (an editable install, a local folder), so
the source itself is hashed: every `.py` file of the plug-in's top-level package (a helper
module it imports counts too), or the module's own file when it is not in a package. Found by
the import system without importing anything.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=64)
def code_fingerprint(module: str) -> str | None:
    """16 hex digits over the sources of `module`'s top-level package (None: no source found)."""
    top = module.split(".")[0]
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin or not found.has_location:
        return None
    origin = Path(found.origin)
    folders = list(found.submodule_search_locations or [])
    files = sorted(p for f in folders for p in Path(f).rglob("*.py")) if folders else [origin]
    digest = hashlib.blake2b(digest_size=8)
    for path in files:
        root = Path(folders[0]) if folders else origin.parent
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            return None
        digest.update(b"\0")
    return digest.hexdigest()
