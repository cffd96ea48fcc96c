"""Every file the suite writes or deletes: confined to its folder, written atomically.

Three folders receive files: the results folder (records, kept indices), the cache (scoring
signals, per-epoch checkpoints) and the leaderboard folder (boards, exports, manifest). A path
is built from a folder and parts that may come from a user (grid names, dataset and
architecture ids, record fields); `confined` resolves it (symlinks too) and refuses anything
that lands outside the folder, so no id, name, manifest line or symlink can make the suite
write or delete elsewhere.

`write_atomic` writes a temp file beside the target and renames it over the target, so a
crash never leaves half a file. A process killed between the two leaves its temp file behind;
the temp name carries the host and the process id, and the next write beside it removes the
temps of processes on this host that no longer exist (`sweep_orphans`).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corebench.errors import PathError, invalid
from corebench.faults import fault_point

TEMP_SUFFIX = ".tmp"


def confined(root: str | Path, path: str | Path) -> Path:
    """`path` (absolute, or relative to `root`) if it resolves inside `root`; `PathError` otherwise.

    Both are resolved, symlinks included, so `..` parts, absolute paths and links that lead
    out of the folder are all refused. The returned path is `root / relative part` unresolved
    (the spelling the caller gave), so messages and records show the folder the user named.
    """
    root = Path(root)
    full = root / path  # an absolute `path` replaces root here and is caught below
    real_root = root.resolve()
    real = full.resolve()
    if real != real_root and not real.is_relative_to(real_root):
        raise PathError(f"{full}: resolves to {real}, outside {root}; refused (files are only written "
                        f"or deleted inside the folder they belong to)")
    return full


def cache_root() -> Path:
    """The cache folder (scoring signals, checkpoints, decoded images): $COREBENCH_CACHE, else
    $XDG_CACHE_HOME/corebench, else ~/.cache/corebench."""
    env = os.environ.get("COREBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "corebench"


def writable_folder(path: str | Path, what: str) -> Path:
    """`path` as an existing, writable folder (created when missing); a one-line error otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise invalid(what, str(path), "a folder (this path is a file)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise invalid(what, str(path), f"a folder that can be created ({exc.strerror or type(exc).__name__})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise invalid(what, str(path), "a folder this user can write to")
    return path


def write_atomic(
    path: Path, write: Callable[[Any], object], *, fsync: bool = True, mkdir: bool = True,
    root: str | Path | None = None, sweep: bool = True,
) -> None:
    """Write through `write(file)` to a temp file in the same folder, then rename over `path`.

    With `root`, the path must resolve inside it (`confined`). The temp name is made here (not
    `mkstemp`) so the file gets the umask's permissions rather than 0600; it starts with '.'
    and ends in `.tmp`, so nothing reading the folder mistakes it for a real file. A writer of
    many files into one folder passes `sweep=False` and calls `sweep_folder` once instead (the
    per-file sweep lists the folder each time).
    """
    path = Path(path)
    if root is not None:
        confined(root, path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    if sweep:
        sweep_orphans(path)
    tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    try:
        with open(tmp, "xb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        fault_point("write", path.name)  # the crash tests' hook: written, not yet renamed
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes, *, fsync: bool = True, mkdir: bool = True,
                       root: str | Path | None = None, sweep: bool = True) -> None:
    """Replace `path` with `data` atomically (generated files pass fsync=False: regenerable)."""
    write_atomic(Path(path), lambda f: f.write(data), fsync=fsync, mkdir=mkdir, root=root, sweep=sweep)


def _host() -> str:
    return "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname()) or "host"


_HOST = _host()


def sweep_orphans(path: Path) -> list[Path]:
    """Remove the temp files of `path` left by killed processes of this host; return them.

    A temp file of a live process (another shard writing the same file) is left alone, and so
    are those of other hosts (their processes cannot be checked from here).
    """
    removed = []
    try:
        candidates = list(path.parent.glob(f".{_glob_escape(path.name)}.*{TEMP_SUFFIX}"))
    except OSError:
        return removed
    for tmp in candidates:
        parts = tmp.name[len(path.name) + 2 : -len(TEMP_SUFFIX)].split(".")
        if len(parts) != 3 or parts[0] != _HOST or not parts[1].isdigit() or _alive(int(parts[1])):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed


def sweep_folder(folder: Path) -> list[Path]:
    """`sweep_orphans` for every temp file under `folder` at once; return those removed."""
    removed = []
    for tmp in orphans_in(folder):  # named .<name>.<host>.<pid>.<hex>.tmp
        removed += sweep_orphans(tmp.with_name(tmp.name[1:].rsplit(".", 4)[0]))
    return removed


def orphans_in(folder: Path) -> list[Path]:
    """Every temp file under `folder` (any process): what a crash test expects none of."""
    return sorted(p for p in Path(folder).rglob(f".*{TEMP_SUFFIX}") if p.is_file())


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
