"""Drop a folder from a wheel, in place, and from its RECORD (scripts/gpu_pack.sh).

pyautoattack 0.2.0's wheel is 42 MB because it ships a demo checkpoint under
`pyautoattack/examples/`; nothing imports it, and the GPU run's 64 MiB cannot carry it.

    python scripts/slim_wheel.py WHEEL PREFIX
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path


def slim(wheel: Path, prefix: str) -> int:
    """Rewrite `wheel` without the members under `prefix`; the number of members dropped."""
    tmp = wheel.with_name(wheel.name + ".tmp")
    dropped = 0
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if item.filename.startswith(prefix):
                dropped += 1
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                data = b"".join(line for line in data.splitlines(keepends=True) if not line.startswith(prefix.encode()))
            dst.writestr(item, data)
    tmp.replace(wheel)
    return dropped


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not Path(argv[0]).is_file():
        print("slim_wheel.py: arguments are not allowed as given; allowed: WHEEL (an existing file) PREFIX", file=sys.stderr)
        return 2
    wheel = Path(argv[0])
    dropped = slim(wheel, argv[1])
    print(f"{wheel.name}: {dropped} members under {argv[1]} left out ({wheel.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
