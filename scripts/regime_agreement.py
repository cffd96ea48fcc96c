"""Does "easy" mean the same under standard and adversarial training? (issue 22, item 6)

For each seed of a grid, the rank agreement of two methods' scores on the same images, each
from the scoring run it reads (AIGN from a standard run against Dong et al.'s count of
PGD-misclassified epochs from a PGD-AT run, by default): Spearman's ρ of the scores and the
overlap of the coresets each keeps at the fraction (the methods' own selections). Reads the
scoring cache the grid's run made (a run not in the cache is made, which takes its time).

    python scripts/regime_agreement.py configs/cifar10_adversarial.yaml --cache /tmp/cache \
        --pair easycore friendly_pgd_at --pair easycore easycore_trades --fraction 0.1

Prints a markdown table (the figures README.md and docs/PROTOCOL.md quote) and, with --json, writes them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from corebench.boards.stats import kept_overlap, spearman
from corebench.cells.grid import load_grid
from corebench.compute.datasets import load_dataset
from corebench.compute.optim import torch_threads
from corebench.core.spec import Cell, DatasetSpec, GridSpec, MethodSpec
from corebench.drivers.scoring_runs import ScoringCache
from corebench.methods import create_method, run_selection
from corebench.methods.base import check_scores


def agreement(grid_path: str, cache: Path, pairs: list[tuple[str, str]], fraction: float,
              seeds: list[int] | None = None) -> list[dict]:
    spec = load_grid(grid_path)
    by_label = {m.label: m for m in spec.methods}
    scorer = ScoringCache(spec.scoring, cache / "scoring", torch.device("cpu"), progress=False, threads=spec.threads)
    rows = []
    with torch_threads(spec.threads):  # the cache key holds the grid's threads: run with them
        for ds in spec.datasets:
            rows += _dataset_rows(spec, ds, by_label, scorer, pairs, fraction, seeds)
    return rows


def _dataset_rows(spec: GridSpec, ds: DatasetSpec, by_label: dict[str, MethodSpec], scorer: ScoringCache,
                  pairs: list[tuple[str, str]], fraction: float, seeds: list[int] | None) -> list[dict]:
    """The rows of one dataset: per pair of method entries and seed, ρ of their scores and the
    overlap of their coresets, each from the scoring run it reads."""
    rows = []
    data = load_dataset(ds)
    scorer_arch = spec.scoring_architectures[0] or spec.architectures[0]
    for a_label, b_label in pairs:
        for seed in seeds if seeds is not None else spec.seeds:
            scores, kept = [], []
            for label in (a_label, b_label):
                entry = by_label[label]
                method = create_method(entry.name, **entry.params)
                cell = Cell(ds, spec.architectures[0], scorer_arch, spec.regimes[0], entry, fraction, seed)
                ctx, _ = scorer.contexts(cell, data, method)
                view = ctx.only(method.name, tuple(method.required_signals()))
                scores.append(check_scores(method.name, method.hardness(view), ctx.n))
                kept.append(run_selection(method, ctx, fraction))
            rows.append({"dataset": ds.label, "a": a_label, "b": b_label, "seed": seed, "fraction": fraction,
                         "spearman": round(spearman(*scores), 4), "kept_overlap": round(kept_overlap(*kept), 4)})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| scores compared | seed | Spearman ρ | overlap of the kept 10 % |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['a']} vs {r['b']} | {r['seed']} | {r['spearman']:.3f} | {r['kept_overlap']:.3f} |")
    for a, b in dict.fromkeys((r["a"], r["b"]) for r in rows):
        mine = [r for r in rows if (r["a"], r["b"]) == (a, b)]
        lines.append(f"| {a} vs {b} | mean | {np.mean([r['spearman'] for r in mine]):.3f} | "
                     f"{np.mean([r['kept_overlap'] for r in mine]):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--pair", nargs=2, action="append", metavar=("A", "B"))
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", help="the grid's seeds to compare (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = agreement(args.grid, args.cache, [tuple(p) for p in args.pair or [("easycore", "friendly_pgd_at")]],
                     args.fraction, args.seeds)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
