"""Check the import layering of pyproject's [tool.importlinter] contracts (`make lint`).

import-linter reads a package from one folder, but `corebench` is installed from two
(`bench/` is `corebench`, `methods/` is `corebench.methods`). So this stages a copy of both as
one `corebench` package in a temporary folder and runs `lint-imports` on it. Exit code 0 when
every contract is kept; otherwise import-linter's report and 1.

    python scripts/check_layers.py [--bench DIR] [--methods DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def check(bench: Path, methods: Path) -> subprocess.CompletedProcess:
    """Run lint-imports on bench/ + methods/ staged as one package; return the finished process."""
    with tempfile.TemporaryDirectory(prefix="corebench-layers-") as tmp:
        package = Path(tmp) / "corebench"
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(bench, package, ignore=ignore)
        shutil.copytree(methods, package / "methods", ignore=ignore)
        env = {**os.environ, "PYTHONPATH": tmp + os.pathsep + os.environ.get("PYTHONPATH", "")}
        lint = Path(sys.executable).with_name("lint-imports")
        return subprocess.run([str(lint), "--no-cache", str(REPO / "pyproject.toml")], cwd=tmp, env=env,
                              capture_output=True, text=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=REPO / "bench")
    parser.add_argument("--methods", type=Path, default=REPO / "methods")
    args = parser.parse_args()
    done = check(args.bench, args.methods)
    print(done.stdout.split("\n\n\n", 1)[-1].strip() or done.stderr.strip())
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
