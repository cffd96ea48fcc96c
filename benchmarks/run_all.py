"""Run every benchmark (`make benchmarks`) and print each target as a ratio to its baseline."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCHMARKS = ("bench_training", "bench_scoring", "bench_adversarial_scoring", "bench_sharing", "bench_autoattack",
              "bench_memory", "bench_selection", "bench_leaderboard", "bench_plan")


def within_target(result: dict) -> bool:
    """A benchmark meets its target when it says so (`ok`) or its time/target ratio is <= 1."""
    if "ok" in result:
        return bool(result["ok"])
    return result["ratio_to_target"] <= 1.0


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n== {name} ==")
        result = importlib.import_module(name).main()
        if not within_target(result):
            failed.append(name)
    print(f"\n{len(BENCHMARKS) - len(failed)} of {len(BENCHMARKS)} benchmarks within target" +
          (f"; missed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
