"""Rewrite the `cell_id` of committed records to the canonical identity (issue 17, one-off).

A record's id is the hash of its canonical settings (`corebench.cells.identity`); records made
before the canonical rule carry a hash of every setting, defaults included, so a setting added
since (with a default that reproduces the old behaviour) made them all stale. This recomputes
each record's id from the record itself, with the same function a grid uses, and rewrites
only that field. Usage: python scripts/migrate_cell_ids.py results/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from corebench.cells.identity import cell_id, record_settings


def migrate(root: Path) -> int:
    changed = 0
    for path in sorted(root.rglob("*.json")):
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or "cell_id" not in record or "config" not in record:
            continue
        new = cell_id(record_settings(record))
        if record["cell_id"] != new:
            record["cell_id"] = new
            path.write_text(json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n")
            changed += 1
    return changed


if __name__ == "__main__":
    for folder in sys.argv[1:] or ["results"]:
        print(f"{folder}: {migrate(Path(folder))} records' ids rewritten")
