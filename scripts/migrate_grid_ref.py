"""Write the grid's declared primary comparisons and correction into committed records (issue 18, one-off).

A record's `grid` names how its boards test it (`record.GridRef`: `primary`, `correction`);
records made before those fields have none. This reads each record's grid file (its
`grid.source`, relative to the working directory) and rewrites only the record's `grid` field;
the numbers and the cell id are untouched. Usage: python scripts/migrate_grid_ref.py results/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from corebench.cells.grid import load_grid
from corebench.drivers.cell import grid_ref


def migrate(root: Path) -> int:
    grids: dict[str, dict] = {}

    def wanted(record: dict) -> dict | None:
        source = (record.get("grid") or {}).get("source") if isinstance(record, dict) else None
        if not source or not Path(source).is_file():
            return None
        return grids.setdefault(source, grid_ref(load_grid(source)))

    stale = [(path, record, new) for path in sorted(root.rglob("*.json"))
             if (new := wanted(record := json.loads(path.read_text()))) is not None and record["grid"] != new]  # fmt: skip
    for path, record, new in stale:
        text = json.dumps({**record, "grid": new}, indent=1, sort_keys=True, allow_nan=False)
        path.write_text(text + "\n")
    return len(stale)


if __name__ == "__main__":
    for folder in sys.argv[1:] or ["results"]:
        print(f"{folder}: {migrate(Path(folder))} records' grid rewritten")
