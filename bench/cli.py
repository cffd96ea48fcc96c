"""The `corebench` command. argparse lives here only; library code never sees a Namespace.

Errors a user can cause print as one line and exit 2; a run whose cells partly failed exits 1.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import typing
from pathlib import Path
from typing import Any

from corebench.compute.allocator import keep_freed_memory
from corebench.core.errors import BenchError, invalid
from corebench.core.spec import CpuKernels
from corebench.drivers.guard import deadline_from

log = logging.getLogger("corebench")


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise invalid("--shard", text, "K/N with 0 <= K < N, e.g. 3/16") from None
    if not 0 <= k < n:
        raise invalid("--shard", text, "K/N with 0 <= K < N, e.g. 3/16")
    return k, n


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: a positive integer")
    return int(text)


def _params(pairs: list[str], option: str = "--param") -> dict[str, Any]:
    """KEY=VALUE pairs; values parsed as YAML scalars (true, 0.5, [1, 2]), without aliases."""
    from corebench.core.checked import load_yaml

    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise invalid(option, pair, "key=value")
        key, value = pair.split("=", 1)
        out[key] = load_yaml(value, f"{option} {key}")
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from corebench.cells.grid import load_grid
    from corebench.drivers.runner import run_grid

    if args.executor == "slurm":
        if args.cpu_kernels != "native":
            raise invalid("--cpu-kernels", args.cpu_kernels, "native with --executor slurm (the portable "
                          "kernels run on the local executor)")
        return _submit(args)
    cores = os.cpu_count() or 1
    if args.workers is not None and args.workers > cores:  # each worker is a torch process with its own threads
        raise invalid("--workers", args.workers, f"1 to {cores} (one process per core of this machine at most)")
    deadline = deadline_from(args.deadline, args.time_limit)  # a bad value fails before the grid loads
    spec = load_grid(args.grid)
    if args.smoke:
        return _smoke(args, spec, deadline)
    shard = _shard(args.shard)
    summary = run_grid(spec, args.results, cache_dir=args.cache, shard=shard, force=args.force,
                       scoring_only=args.scoring_only, workers=args.workers, progress=not args.no_progress,
                       deadline=deadline, estimator=_estimator(args.results), cpu_kernels=args.cpu_kernels)
    busy = f", {summary.busy} running elsewhere" if summary.busy else ""
    print(f"grid {spec.name}: {summary.total} cells, {summary.skipped} already done, "
          f"{summary.finished} finished, {summary.failed} failed{busy}; records in {args.results}")
    if summary.stale:
        print(f"  {len(summary.stale)} stale records (finished under other settings or data) were rerun")
    for path in summary.stale[:20]:
        print(f"  stale, rerun: {path}")
    for path, error in summary.failures[:20]:
        print(f"  failed: {path}: {error}")
    for path, why in summary.changed[:20]:
        print(f"  inputs changed: {path}: {why}; not rerun (corebench verify re-derives it; --force reruns)")
    for path in summary.outside[:20]:
        print(f"  outside the grid: {path}: no cell of this grid; not counted")
    _print_deferred(summary)
    if not args.scoring_only:
        _print_summary(Path(args.results) / spec.name)
    return 1 if summary.failed else 0


def _estimator(results: str):
    """Each cell's expected seconds for the deadline guard: `plan.cell_seconds`'s probe (a
    partial, not a closure: a portable run pickles it into its process)."""
    return functools.partial(_estimate, results)


def _estimate(results: str, work: Any, device: Any) -> dict[str, float]:
    from corebench.drivers.plan import cell_seconds

    return cell_seconds(work, device, Path(results))


def _print_deferred(summary: Any) -> None:
    if summary.deferred:
        print(f"  {len(summary.deferred)} cells deferred: they would not have ended by the deadline; "
              "run again to continue")
    for path in summary.deferred[:20]:
        print(f"  deferred: {path}")


def _smoke(args: argparse.Namespace, spec: Any, deadline: float | None = None) -> int:
    """Every kind of cell of the grid on stand-in data, in a scratch folder unless --results is
    given; exit 1 when any cell failed."""
    import tempfile

    from corebench.drivers.runner import run_grid
    from corebench.drivers.smoke import smoke_grid

    smoke = smoke_grid(spec)
    with tempfile.TemporaryDirectory(prefix="corebench-smoke-") as scratch:
        results = args.results if args.results_given else str(Path(scratch) / "results")
        cache = args.cache or str(Path(scratch) / "cache")
        summary = run_grid(smoke, results, cache_dir=cache, force=True, workers=args.workers or 1,
                           progress=not args.no_progress, deadline=deadline, estimator=_estimator(results))
    print(f"smoke {spec.name}: {summary.total} cells (every method entry, regime and architecture, "
          f"full data, smallest and largest fraction, one seed) on stand-in data: {summary.finished} ran, "
          f"{summary.failed} failed")
    for path, error in summary.failures[:20]:
        print(f"  failed: {path}: {error}")
    _print_deferred(summary)
    return 1 if summary.failed else 0


def _submit(args: argparse.Namespace) -> int:
    import dataclasses

    from corebench.cells.grid import load_grid
    from corebench.drivers.executors import require_submitit, submit_grid, with_overrides

    require_submitit()  # before anything else: the one thing a user must install
    spec = load_grid(args.grid)
    spec = dataclasses.replace(spec, slurm=with_overrides(spec.slurm, _params(args.slurm, "--slurm")))
    sub = submit_grid(spec, args.results, cache_dir=args.cache, log_dir=args.logs)
    waiting = sum(bool(d) for d in sub.dependencies.values())
    print(f"grid {spec.name}: submitted {_n(len(sub.scoring_jobs), 'scoring run')} and {_n(len(sub.cell_jobs), 'cell')} "
          f"as Slurm jobs {', '.join(sub.arrays) or '-'}; {_n(waiting, 'cell')} wait for their scoring runs "
          f"(afterok); {_n(sub.cached_runs, 'cached scoring run')} reused; {_n(sub.done, 'cell')} already done")
    print(f"watch: corebench status {args.results} --grid {args.grid}   logs: {args.logs}/")
    return 0


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _print_summary(results: Path) -> None:
    from corebench.boards.leaderboard import render_summary
    from corebench.store.results import load

    if results.is_dir():
        df = load(results)
        if len(df):
            print(render_summary(df))


def cmd_plan(args: argparse.Namespace) -> int:
    from corebench.cells.grid import load_grid
    from corebench.drivers.plan import make_plan, render

    spec = load_grid(args.grid)
    print(render(make_plan(spec, args.results, args.cache, probe=not args.no_probe, cpu_kernels=args.cpu_kernels)))
    return 0


def cmd_publish_scoring(args: argparse.Namespace) -> int:
    from corebench.cells.grid import load_grid
    from corebench.drivers.publish import publish_scoring

    spec = load_grid(args.grid)
    out = publish_scoring(spec, args.results, args.cache, limit_mb=args.max_mb)
    print(f"grid {spec.name}: {out.runs} scoring runs published in {out.folder} ({out.bytes / 2**20:.2f} MB; "
          f"{out.kept} of them already there, kept as they were); commit the folder with the records")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from corebench.methods import create_method, get_method_class, list_methods
    from corebench.methods.registry import method_source

    rows = []
    for name in list_methods(args.pattern):
        m = create_method(name)
        doc = (get_method_class(name).__doc__ or "").strip().splitlines()[0]
        opts = ", ".join(f"{k}={v}" for k, v in m.options().items())
        src = method_source(name)
        package = f"{src['distribution'] or src['module']} {src['version'] or ''}".strip()
        cls = get_method_class(name)
        ref = (cls.reference or "-") + ("" if cls.in_all else " (not in `all`)")
        rows.append((name, ", ".join(m.required_signals()) or "-", opts or "-", package, ref, doc))
    print(tabulate(rows, headers=["method", "signals", "options (defaults)", "package", "reference", "what it keeps"],
                   tablefmt="simple"))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from corebench.boards.leaderboard import generate_leaderboards
    from corebench.methods import facts
    from corebench.store.results import scan

    if not Path(args.results).is_dir():
        raise invalid("RESULTS_DIR", args.results, "an existing results folder")
    out, results = Path(args.out).resolve(), Path(args.results).resolve()
    if out == results or out.is_relative_to(results):  # its exports would be read back as malformed records
        raise invalid("--out", args.out, f"a folder outside RESULTS_DIR {args.results}")
    scanned = scan(Path(args.results))  # read once: the boards and the check below share them
    report = generate_leaderboards(args.results, args.out, facts, strict=args.strict, scanned=scanned)
    print(f"{len(report.pages)} boards written to {args.out} ({report.n_ok} finished cells, "
          f"{report.n_failed} failed, {len(report.skipped)} malformed files skipped)")
    for path, why in report.skipped[:20]:
        print(f"  skipped {path}: {why}")
    from corebench.drivers.verify import outside_records

    for path, grid in outside_records(args.results, scanned[0])[:20]:
        print(f"  outside its grid: {path}: no cell of grid {grid} (a seed, fraction or method it does not "
              f"have); it is on the board")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import time

    from corebench.drivers.status import progress

    if not Path(args.results).is_dir():
        raise invalid("RESULTS_DIR", args.results, "an existing results folder")
    grid = None
    if args.grid:
        from corebench.cells.grid import load_grid
        from corebench.drivers.work import grid_states, stale_reason

        spec = load_grid(args.grid)
        grid = (spec.name, [(s.path, s.state, stale_reason(s)) for s in grid_states(spec, args.results)])
    grids = progress(Path(args.results), grid, Path(args.cache) if args.cache else None)
    if not grids:
        print("no records")
    now = time.time()
    for g in grids:
        if g.total is None:  # without the grid: what the folder holds
            print(f"grid {g.name}: {g.done} done, {len(g.running)} running, {len(g.failed)} failed")
        else:
            print(f"grid {g.name}: {g.done} of {g.total} cells done, {g.pending} pending ({len(g.stale_records)} "
                  f"stale, {len(g.failed)} failed, {len(g.malformed)} malformed, {g.not_run} not run, "
                  f"{len(g.running)} running)")
        for path, c in g.running:
            job = f", job {c.job}" if c.job else ""
            print(f"  running: {_shown(path, args.results)} on {c.host} (pid {c.pid}{job}) since "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(c.started))}, "
                  f"heartbeat {now - c.heartbeat:.0f} s ago")
        for path, error in g.failed:
            print(f"  failed: {_shown(path, args.results)}: {error}")
        for path, _claim, why in g.stale_claims:
            print(f"  stale claim: {_shown(path, args.results)}: {why}; the next worker takes it over")
        for path, why in g.stale_records:
            print(f"  stale: {_shown(path, args.results)}: made under other settings or data than the grid's "
                  f"({why}); `run` reruns it")
        for path, why in g.malformed:
            print(f"  malformed: {path}: {why}")
        for path in g.outside:
            print(f"  outside the grid: {_shown(path, args.results)}: no cell of grid {g.name} (a seed, fraction or "
                  "method it does not have); not counted")
    return 0


def _shown(path: Path, results: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(results).resolve()))
    except ValueError:
        return str(path)


def cmd_verify(args: argparse.Namespace) -> int:
    from corebench.drivers.verify import verify

    if not Path(args.results).is_dir():
        raise invalid("RESULTS_DIR", args.results, "an existing results folder")
    if args.tolerance is not None and not 0 <= args.tolerance <= 100:
        raise invalid("--tolerance", args.tolerance, "accuracy points in [0, 100]")
    verdicts = verify(args.results, sample=args.sample, seed=args.seed, named=args.cell, grid=args.grid,
                      tolerance=args.tolerance, progress=not args.no_progress)
    for v in verdicts:
        how = "exactly" if v.exact else f"within tolerance: {v.not_exact_because}"
        print(f"{'match' if v.matched else 'MISMATCH'}  {_shown(v.path, args.results)} ({how}, {v.seconds:.1f} s)")
        for line in v.mismatches:
            print(f"  {line}")
    bad = sum(not v.matched for v in verdicts)
    ran = [v.seconds for v in verdicts if v.seconds]
    per_cell = f"; {sum(ran) / len(ran):.1f} s per cell re-derived (its scoring runs included)" if ran else ""
    print(f"verified {len(verdicts)} records: {len(verdicts) - bad} matched, {bad} mismatched{per_cell}")
    return 1 if bad or not verdicts else 0


def cmd_check_method(args: argparse.Namespace) -> int:
    from corebench.methods.testing import check_method

    results = check_method(args.name, **_params(args.param))
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name}: {r.detail}")
    failed = [r for r in results if not r.passed]
    print(f"{args.name}: {len(results) - len(failed)} of {len(results)} checks passed")
    return 1 if failed else 0


def cmd_select(args: argparse.Namespace) -> int:
    import numpy as np

    from corebench.compute.datasets import list_datasets
    from corebench.core.checked import build
    from corebench.core.files import writable_folder
    from corebench.core.spec import ArchSpec, DatasetSpec, MethodSpec, ScoringConfig
    from corebench.drivers.cell import select_coreset
    from corebench.methods import create_method

    if not 0.0 < args.fraction <= 1.0:
        raise invalid("--fraction", args.fraction, "a number in (0, 1]")
    if args.seed is not None and args.seed < 0:
        raise invalid("--seed", args.seed, "an integer >= 0")
    out = Path(args.out)
    if out.is_dir():
        raise invalid("--out", args.out, "a file name (this is a folder)")
    writable_folder(out.parent, "--out")  # before the scoring run: a folder under a file fails now
    params = _params(args.param)
    threads = 1
    if args.grid:
        dataset, arch, method, scoring, seed, threads = _from_grid(args, params)
    else:
        if args.dataset is None:
            raise invalid("--dataset", None, "a dataset name (or --grid GRID.yaml): " + ", ".join(list_datasets()))
        if args.dataset not in list_datasets():
            raise invalid("--dataset", args.dataset, list_datasets())
        dataset = build(DatasetSpec, {"name": args.dataset, "root": args.root, "path": args.path}, "--dataset")
        kwargs = _arch_kwargs(args.arch_kwargs)
        if kwargs and not args.arch:
            raise invalid("--arch-kwargs", args.arch_kwargs, "kwargs of the --arch given with it (none is)")
        arch = build(ArchSpec, {"name": args.arch, "kwargs": kwargs}, "--arch") if args.arch else None
        method = MethodSpec(args.method, params)
        if args.scoring_epochs is not None and args.scoring_epochs < 1:
            raise invalid("--scoring-epochs", args.scoring_epochs, "a positive integer")
        scoring = build(ScoringConfig, {} if args.scoring_epochs is None else {"epochs": args.scoring_epochs}, "scoring")
        seed = args.seed if args.seed is not None else 0
    create_method(method.name, **method.params)  # validate before any training
    indices, used = select_coreset(dataset, arch, method, args.fraction, seed=seed, scoring=scoring,
                                   cache_dir=Path(args.cache) if args.cache else None,
                                   device=args.device, progress=not args.no_progress, threads=threads)
    np.save(out, indices, allow_pickle=False)
    print(f"kept {indices.size} samples (sorted indices to KEEP) -> {out}; method {method.label}, "
          f"dataset {dataset.label}, scoring model {used.label} ({scoring.epochs} epochs, seed {seed})")
    return 0


def _arch_kwargs(text: str | None) -> dict[str, Any]:
    try:
        kwargs = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise invalid("--arch-kwargs", text, f"a JSON object such as '{{\"drop_rate\": 0.1}}' ({exc.msg})") from None
    if not isinstance(kwargs, dict):
        raise invalid("--arch-kwargs", text, "a JSON object such as '{\"drop_rate\": 0.1}'")
    return kwargs


def _from_grid(args: argparse.Namespace, params: dict[str, Any]):
    """Dataset, scoring architecture, method, scoring settings, seed and threads taken from a
    grid file, so `select` reuses the grid's cached scoring run (`--dataset`, `--arch`, `--seed`
    choose among the grid's entries; `--method` may name one of its method rows)."""
    from corebench.cells.grid import load_grid
    from corebench.core.spec import MethodSpec

    grid = load_grid(args.grid)
    for flag, value in (("--root", args.root), ("--path", args.path), ("--arch-kwargs", args.arch_kwargs),
                        ("--scoring-epochs", args.scoring_epochs)):
        if value is not None:
            raise invalid(flag, value, "nothing with --grid (the grid file gives it)")
    datasets = {d.label: d for d in grid.datasets}
    dataset = _pick("--dataset", args.dataset, datasets)
    scorers = {}
    for target in grid.architectures:
        for scorer in grid.scoring_architectures:
            chosen = scorer or target
            scorers.setdefault(chosen.label, chosen)
    arch = _pick("--arch", args.arch, scorers)
    rows = {m.label: m for m in grid.methods}
    if args.method in rows and not params:
        method = rows[args.method]
    else:
        method = MethodSpec(args.method, params)
    seed = args.seed if args.seed is not None else grid.seeds[0]
    return dataset, arch, method, grid.scoring, seed, grid.threads


def _pick(flag: str, value: str | None, choices: dict[str, Any]) -> Any:
    if value is None:
        if len(choices) == 1:
            return next(iter(choices.values()))
        raise invalid(flag, value, "one of the grid's: " + ", ".join(choices))
    if value not in choices:
        raise invalid(flag, value, "one of the grid's: " + ", ".join(choices))
    return choices[value]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="corebench", description="Coreset selection methods, measured by the robustness they keep.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a grid file (skips finished cells)")
    r.add_argument("grid", help="grid file (YAML)")
    r.add_argument("--results", default=None, help="results folder (default: results)")
    r.add_argument("--cache", default=None, help="signal cache folder (default: $COREBENCH_CACHE or ~/.cache/corebench)")
    r.add_argument("--shard", default="0/1", help="run only shard K of N (K/N), for array jobs")
    r.add_argument("--smoke", action="store_true",
                   help="run every kind of cell (method entry, regime, architecture, full data) for one epoch "
                        "on a tiny stand-in of each dataset, in seconds; records in a scratch folder unless "
                        "--results is given")
    r.add_argument("--deadline", default=None, metavar="HH:MM",
                   help="start no cell that would not end by this local time (estimated from a throughput "
                        "probe and the cells finished so far); running cells finish, the rest are deferred")
    r.add_argument("--time-limit", default=None, metavar="SECONDS",
                   help="as --deadline, this many seconds from now")
    r.add_argument("--force", action="store_true",
                   help="re-run finished cells and remake their scoring runs (published runs are not read)")
    r.add_argument("--scoring-only", action="store_true", help="only make the scoring signals (a cluster's first stage)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--cpu-kernels", choices=typing.get_args(CpuKernels), default="native",
                   help="portable: compute on CPU kernels that give the same numbers on every x86-64 CPU "
                        "(about 2x slower), so `corebench verify` re-derives the records exactly anywhere; "
                        "each record's device says which kernels made it (default: native)")
    r.add_argument("--workers", type=_positive_int, default=None,
                   help="train and attack cells in N local processes (scoring runs first); default: one "
                        "per GPU on a machine with several, else 1")
    r.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="slurm: submit the grid as job arrays (scoring runs first) and return")
    r.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="slurm: a setting of the grid's slurm: block (partition, time, gpus, cpus, mem, ...)")
    r.add_argument("--logs", default="slurm_logs", help="slurm: folder for the jobs' logs (default: slurm_logs)")
    r.set_defaults(fn=cmd_run)

    pl = sub.add_parser("plan", help="a dry run: cells per axis, scoring runs (published and cached ones reused), "
                                     "compute time and memory from a short throughput probe")
    pl.add_argument("grid", help="grid file (YAML)")
    pl.add_argument("--results", default="results", help="count the cells already done here (default: results)")
    pl.add_argument("--cache", default=None, help="signal cache folder (default: $COREBENCH_CACHE or ~/.cache/corebench)")
    pl.add_argument("--no-probe", action="store_true", help="only count: no timing, no estimates")
    pl.add_argument("--cpu-kernels", choices=typing.get_args(CpuKernels), default="native",
                    help="plan a run on these CPU kernels (as `run --cpu-kernels`): their cached scoring runs "
                         "and their CPU speed")
    pl.set_defaults(fn=cmd_plan)

    pb = sub.add_parser("publish-scoring", help="export the grid's scoring runs from the cache beside its records "
                                                "(<results>/<grid>/scoring/), so a method added later reuses them")
    pb.add_argument("grid", help="grid file (YAML)")
    pb.add_argument("--results", default="results", help="results folder (default: results)")
    pb.add_argument("--cache", default=None, help="signal cache folder (default: $COREBENCH_CACHE or ~/.cache/corebench)")
    pb.add_argument("--max-mb", type=float, default=10.0, help="refuse to publish more than this (default: 10 MB)")
    pb.set_defaults(fn=cmd_publish_scoring)

    m = sub.add_parser("methods", help="list registered coreset methods")
    m.add_argument("pattern", nargs="?", default="*")
    m.set_defaults(fn=cmd_methods)

    lb = sub.add_parser("leaderboard", help="write Markdown leaderboards from result records")
    lb.add_argument("results", metavar="RESULTS_DIR")
    lb.add_argument("--out", default="leaderboards")
    lb.add_argument("--strict", action="store_true", help="fail on a malformed record instead of skipping it")
    lb.set_defaults(fn=cmd_leaderboard)

    st = sub.add_parser("status", help="done, running (where, since when), failed and pending cells")
    st.add_argument("results", metavar="RESULTS_DIR")
    st.add_argument("--grid", default=None, help="only this grid's cells, counting the pending ones")
    st.add_argument("--cache", default=None,
                    help="also check each record's scoring signals against this cache (its indices are always checked)")
    st.set_defaults(fn=cmd_status)

    ve = sub.add_parser("verify", help="re-derive sampled records from their grid and compare (exactly on the same CPU kernels)")
    ve.add_argument("results", metavar="RESULTS_DIR")
    ve.add_argument("--sample", type=_positive_int, default=3, help="how many records to re-derive (default 3)")
    ve.add_argument("--seed", type=int, default=0, help="which records the sample draws (default 0)")
    ve.add_argument("--cell", action="append", default=[], metavar="RECORD",
                    help="re-derive this record (a path under RESULTS_DIR; repeatable) instead of a sample")
    ve.add_argument("--grid", default=None, help="the grid file (default: the one each record names)")
    ve.add_argument("--tolerance", type=float, default=None,
                    help="accuracy points allowed (default: 0 for a record re-derived on the CPU kernels it was made with, else 2)")
    ve.add_argument("--no-progress", action="store_true")
    ve.set_defaults(fn=cmd_verify)

    cm = sub.add_parser("check-method", help="run the conformance kit on a registered method")
    cm.add_argument("name")
    cm.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    cm.set_defaults(fn=cmd_check_method)

    se = sub.add_parser("select", help="export a coreset: the sorted indices to KEEP, as .npy")
    se.add_argument("--method", required=True, help="a method name (with --grid: also one of its method rows)")
    se.add_argument("--dataset", default=None, help="dataset name (with --grid: one of its datasets)")
    se.add_argument("--fraction", type=float, required=True)
    se.add_argument("--out", required=True)
    se.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="method parameter")
    se.add_argument("--arch", default=None,
                    help="scoring architecture (timm name; default: one sized for the dataset; "
                         "with --grid: one of its architectures or scoring architectures)")
    se.add_argument("--arch-kwargs", default=None, help="timm kwargs as JSON")
    se.add_argument("--root", default=None, help="dataset root (torchvision datasets)")
    se.add_argument("--path", default=None, help="dataset file (npz)")
    se.add_argument("--seed", type=int, default=None, help="default 0 (with --grid: its first seed)")
    se.add_argument("--grid", default=None,
                    help="use this grid's dataset, architecture and scoring settings (and its cached scoring run)")
    se.add_argument("--scoring-epochs", type=int, default=None, help="default 10 (with --grid: the grid's)")
    se.add_argument("--cache", default=None)
    se.add_argument("--device", default="auto")
    se.add_argument("--no-progress", action="store_true")
    se.set_defaults(fn=cmd_select)
    return p


# The library names a bad value by its parameter (`results_dir: ...`); the command line says the
# flag the user typed. One table, used only when printing the error.
# (Names no grid key spells: a grid's own `device:` or `slurm.time:` error stays as it is.)
FLAGS = {"results_dir": "--results", "cache_dir": "--cache", "out_dir": "--out", "deadline": "--deadline",
         "time_limit": "--time-limit", "cell": "--cell", "executor": "--executor", "slurm_overrides": "--slurm",
         "select_device": "--device", "limit_mb": "--max-mb"}
HINTS = {"scoring-only run of the grid": "(`corebench run GRID --scoring-only --results <an empty folder> --cache DIR`)"}


def as_typed(message: str) -> str:
    """A library error as the user typed it: its leading parameter name (`slurm.time: ...`)
    becomes the flag (`--slurm.time: ...`), a parameter named in brackets too, and a step the
    library describes gets the command that does it."""
    field, sep, rest = message.partition(": ")
    head, dot, tail = field.partition(".")
    if sep and head in FLAGS:
        message = f"{FLAGS[head]}{dot}{tail}{sep}{rest}"
    for name, flag in FLAGS.items():
        message = message.replace(f"({name})", f"({flag})")
    for step, command in HINTS.items():
        if step in message:
            message += f" {command}"
    return message


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "fn", None) is cmd_run:  # --results: given (smoke writes there) or the default
        args.results_given = args.results is not None
        args.results = args.results or "results"
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    keep_freed_memory()  # large blocks reused, not page-faulted in again (compute/allocator.py)
    try:
        return args.fn(args)
    except BenchError as exc:
        print(f"corebench: error: {as_typed(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("corebench: interrupted; finished cells are kept, re-run to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
