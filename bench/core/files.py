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

from corebench.core.errors import DiskError, PathError, invalid
from corebench.core.faults import fault_point

TEMP_SUFFIX = ".tmp"


def inside(root: str | Path, path: str | Path) -> Path:
    """`path` itself (absolute, or relative to the working directory, as `root` is) if it
    resolves inside `root`; `PathError` otherwise. The one confinement rule: every file the
    suite writes, deletes, locks or claims is checked through it.

    Both are resolved, symlinks included, so `..` parts, absolute paths and links that lead
    out of the folder are all refused; a relative `root` (`../runs/results`, `.`) is resolved
    against the working directory exactly once.
    """
    root, path = Path(root), Path(path)
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and not real.is_relative_to(real_root):
        raise PathError(f"{path}: resolves to {real}, outside {root}; refused (files are only written "
                        f"or deleted inside the folder they belong to)")
    return path


def confined(root: str | Path, relpath: str | Path) -> Path:
    """`root / relpath` if it resolves inside `root` (`inside`); `PathError` otherwise.

    `relpath` is a part below the folder (an absolute one replaces `root` and is refused). The
    returned path is unresolved (the spelling the caller gave), so messages and records show
    the folder the user named.
    """
    return inside(root, Path(root) / relpath)


def confiner(root: str | Path) -> Callable[[str], Path]:
    """`confined(root, ·)` for many files (a board run writes thousands): the same rule and
    answer, with `root` and each folder resolved once; a name that is a symlink, `..` or leads
    out of `root` goes through `inside` itself (which refuses it with its message)."""
    root = Path(root)
    real_root = os.path.realpath(root)
    prefix = real_root.rstrip(os.sep) + os.sep
    real_dirs: dict[str, str] = {}

    def check(rel: str) -> Path:
        path = root / rel
        folder, name = os.path.split(os.fspath(path))
        if folder not in real_dirs:
            real_dirs[folder] = os.path.realpath(folder)
        real = os.path.join(real_dirs[folder], name)
        if name in ("", ".", "..") or not (real == real_root or real.startswith(prefix)) or os.path.islink(path):
            inside(root, path)
        return path

    return check


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

    With `root`, the path must resolve inside it (`inside`). The temp name is made here (not
    `mkstemp`) so the file gets the umask's permissions rather than 0600; it starts with '.'
    and ends in `.tmp`, so nothing reading the folder mistakes it for a real file. A writer of
    many files into one folder passes `sweep=False` and calls `sweep_folder` once instead (the
    per-file sweep lists the folder each time).
    """
    path = Path(path)
    if root is not None:
        inside(root, path)
    if mkdir:
        make_folder(path.parent)
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
    except OSError as exc:
        _unlink_quietly(tmp)
        raise cannot_write(path, exc) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def cannot_write(path: Path, exc: OSError) -> DiskError:
    """A one-line error for a file the disk refused (read-only folder, full disk, quota)."""
    why = exc.strerror or str(exc) or type(exc).__name__
    return DiskError(f"{path}: cannot be written ({why}); nothing written before it is lost: free space or "
                     "fix the folder's permissions and run again (finished cells are kept, a cell in "
                     "training resumes from its checkpoint)")


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def make_folder(folder: Path) -> None:
    """`folder` and its parents, or a one-line `DiskError` (a read-only parent, a full disk)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PathError(f"{folder}: is a file; a folder goes there (move it away)") from None
    except OSError as exc:
        raise cannot_write(folder, exc) from None


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
