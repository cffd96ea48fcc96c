"""One cell, start to end: select its coreset from the scoring runs, train, evaluate, and write
its record (a failed record, with the traceback beside it, on any error of the cell's own)."""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import time
import traceback
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from corebench import __version__
from corebench.compute.checkpoint import Checkpoint
from corebench.compute.data import Dataset
from corebench.compute.datasets import load_dataset
from corebench.compute.evaluate import EvalResult, evaluate
from corebench.compute.kernels import PORTABLE_TAG, kernels_in_effect, portable_active
from corebench.compute.models import create_model, default_scoring_arch
from corebench.compute.optim import resolve_device, torch_threads
from corebench.compute.scoring import (
    seeded,
)
from corebench.compute.train import train_model
from corebench.core.errors import BenchError, GridStopped
from corebench.core.files import cache_root, confined, writable_folder, write_atomic
from corebench.core.spec import (
    FULL_DATA,
    ArchSpec,
    Cell,
    DatasetSpec,
    GridSpec,
    MethodSpec,
    ScoringConfig,
)
from corebench.drivers.scoring_runs import INPUTS, ScoringCache, select_indices
from corebench.drivers.work import CellState, cell_config, cell_state
from corebench.methods import CoresetMethod, create_method
from corebench.methods.registry import git_commit, method_source
from corebench.store.inputs import file_digest
from corebench.store.record import SCHEMA_VERSION, Record, pack_bits
from corebench.store.results import (
    write_indices,
    write_record,
)

log = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"  # per-epoch training checkpoints, under the cache folder


def default_cache_dir() -> Path:
    """Where scoring signals are cached: $COREBENCH_CACHE, else ~/.cache/corebench."""
    return cache_root()


def checkpoint_for(cache_dir: Path | None, cell_id: str) -> Checkpoint | None:
    """A cell's per-epoch training checkpoint: `<cache>/checkpoints/<cell id>.pt`."""
    return Checkpoint(confined(cache_dir, CHECKPOINTS), cell_id) if cache_dir is not None else None


def run_cell(
    spec: GridSpec,
    cell: Cell,
    data: Dataset,
    method: CoresetMethod | None,
    scorer: ScoringCache,
    device: torch.device,
    path: Path,
    progress: bool = True,
    *,
    results_dir: Path | None = None,
    cache_dir: Path | None = None,
    state: CellState | None = None,
) -> Record:
    """Select, train, evaluate one cell and write its record (a failed one on any error); the
    record written, as the `Record` model.

    The record and the kept indices are written inside `results_dir` (when given; `path` must
    resolve inside it); training resumes from and checkpoints to the cell's checkpoint under
    `cache_dir` (when given), which is removed once the record is written.
    """
    start = time.perf_counter()
    config = cell_config(spec, cell, data)
    if state is None:  # a caller outside a grid run: compute the identity as a run does
        state = cell_state(spec, cell, data, method, results_dir or path.parent)
    options, options_error, cid = state.options, state.options_error, state.cell_id
    checkpoint = checkpoint_for(cache_dir, cid)
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "cell_id": cid,
        "status": "failed",
        "error": None,
        "grid": grid_ref(spec),
        "cell": cell.key(),
        "method_options": options,
        "config": config,
        "metrics": None,
        "coreset": None,
        "timings": {},
        "versions": versions(),
        "device": device_name(device),
        "method_source": method_source(cell.method.name) if method is not None else None,
        "data": {"name": data.info.name, "source": data.info.source, "fingerprint": data.fingerprint(),
                 "n_train": int(data.x_train.shape[0]), "n_test": int(data.x_test.shape[0]),
                 "num_classes": data.info.num_classes, "notes": list(data.info.notes)},
    }
    with kernels_in_effect():  # oneDNN off on the portable CPU kernels
        try:
            if options_error is not None:
                raise options_error
            indices, scoring_runs, selection_s, measured = select_indices(cell, data, method, scorer, stability=True)
            bound = [r.pop(INPUTS) for r in scoring_runs]  # what the selection read, by digest
            scoring_s = sum(r["seconds"] for r in scoring_runs)
            index_file = path.with_name(path.stem + ".indices.npy")
            write_indices(index_file, indices, root=results_dir)
            record["inputs"] = {"indices": file_digest(index_file), "scoring_runs": bound}
            if measured is not None:
                block, single = measured
                single_file = index_file
                if single is not indices:
                    single_file = path.with_name(path.stem + ".single_run.indices.npy")
                    write_indices(single_file, single, root=results_dir)
                record["stability"] = {**block, "single_run_indices_file": single_file.name}
            hist = np.bincount(data.y_train.numpy()[indices], minlength=data.info.num_classes)
            record["coreset"] = {
                "n_train": int(data.x_train.shape[0]),
                "size": int(indices.size),
                "indices_file": index_file.name,
                "class_histogram": hist.tolist(),
            }
            t0 = time.perf_counter()
            with seeded(cell.seed, device):
                model = create_model(cell.arch, data.info).to(device)
            trained = train_model(
                model, data, indices, regime=cell.regime, training=config.training,
                attack=config.attack, seed=cell.seed, device=device, progress=progress, checkpoint=checkpoint,
            )
            record["execution"] = trained["execution"]
            t1 = time.perf_counter()
            result = evaluate(model, data, config.evaluation, device, progress=progress)
            t2 = time.perf_counter()
            robust = [
                {"eps": r.eps, "pgd_acc": r.pgd_acc, "autoattack_acc": r.autoattack_acc,
                 "autoattack_per_attack": dict(r.autoattack_per_attack)}
                for r in result.robust
            ]  # fmt: skip
            record["metrics"] = {
                "clean_acc": result.clean_acc,
                "pgd_acc": result.pgd_acc,
                "autoattack_acc": result.autoattack_acc,
                "n_eval": result.n_eval,
                "autoattack_per_attack": dict(result.autoattack_per_attack),
                "robust": robust,
                "predicted_histogram": list(result.predicted_histogram) or None,
            }
            record["per_image_outcomes"] = per_image_outcomes(result)
            record["training"] = {"budget": trained["budget"], "epochs": trained["epochs"], "steps": trained["steps"],
                                  "seconds": round(trained["seconds"], 3)}
            record["cost"] = {"scoring_runs": scoring_runs, "train_steps": trained["steps"], "train_s": round(t1 - t0, 3)}
            record["timings"] = {
                "scoring_s": round(scoring_s, 3),
                "selection_s": round(selection_s, 4),
                "train_s": round(t1 - t0, 3),
                "eval_s": round(t2 - t1, 3),
            }
            record["status"] = "ok"
        except (KeyboardInterrupt, SystemExit, GridStopped):  # GridStopped: not this cell's failure
            raise
        except Exception as exc:  # the cell fails, the grid goes on
            record["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
            if not isinstance(exc, BenchError):
                log.exception("cell %s failed", path)
            else:
                log.error("cell %s failed: %s", path, exc)
                log.debug("cell %s: traceback", path, exc_info=True)  # -v: a plug-in's traceback too
            write_atomic(failure_log(path), lambda f: f.write(traceback.format_exc().encode()), root=results_dir)
    record["timings"]["total_s"] = round(time.perf_counter() - start, 3)
    built = Record.model_validate(record)  # the model the store reads back; written as its JSON form
    write_record(path, built, root=results_dir)
    if built.status == "ok":
        failure_log(path).unlink(missing_ok=True)  # an earlier failure's log
    if checkpoint is not None:
        checkpoint.delete()
    return built


def failure_log(record: Path) -> Path:
    """A failed cell's traceback, beside its record (`seed0.json` -> `seed0.log`)."""
    return record.with_suffix(".log")
def grid_ref(spec: GridSpec) -> dict[str, Any]:
    """The record's `grid`: its name and file, the declared primary comparisons and the correction."""
    primary = [{"method": c.method, "against": c.against, "fraction": c.fraction, "regime": c.regime, "eps": c.eps}
               for c in spec.primary]  # fmt: skip
    return {"name": spec.name, "source": spec.source, "primary": primary, "correction": spec.correction}


def per_image_outcomes(result: EvalResult) -> dict[str, Any]:
    """The evaluation's per-image outcomes as the record keeps them (`record.PerImageOutcomes`)."""
    robust = [{"eps": r.eps, "pgd": pack_bits(r.pgd_correct),
               "autoattack": None if r.autoattack_correct is None else pack_bits(r.autoattack_correct)}
              for r in result.robust]  # fmt: skip
    return {"n": result.n_eval, "clean": pack_bits(result.clean_correct), "robust": robust}


def select_coreset(
    dataset: DatasetSpec,
    arch: ArchSpec | None,
    method: MethodSpec,
    fraction: float,
    *,
    seed: int = 0,
    scoring: ScoringConfig | None = None,
    cache_dir: Path | None = None,
    device: str = "auto",
    progress: bool = True,
    threads: int = 1,
) -> tuple[np.ndarray, ArchSpec]:
    """The sorted indices to KEEP and the scoring architecture used (`corebench select`).

    `arch` None picks a scoring model sized for the dataset (`models.default_scoring_arch`).
    The scoring run goes through the same cache as a grid's (`ScoringCache`, keyed by dataset,
    scoring architecture, scoring settings, seed and threads), so with a grid's settings it
    reuses the grid's scoring run. Checked before the scoring run: the cache folder, the
    device, the method's parameters and that the architecture builds for the dataset."""
    from corebench.cells.grid import check_builds

    cache = writable_folder(cache_dir or default_cache_dir(), "cache_dir")
    dev = resolve_device(device, "select_device")
    impl = None if method.name == FULL_DATA else create_method(method.name, **method.params)
    with torch_threads(threads):
        data = load_dataset(dataset)
        arch = arch or default_scoring_arch(data.info)
        check_builds(arch, data)
        cell = Cell(dataset, arch, arch, "standard", method, fraction, seed)
        scorer = ScoringCache(scoring or ScoringConfig(), confined(cache, "scoring"), dev, progress, threads=threads)
        indices, _, _, _ = select_indices(cell, data, impl, scorer)
    return indices, arch


@lru_cache(maxsize=1)
def versions() -> dict[str, str | None]:
    """Package versions and the git commit, recorded in every result."""
    out: dict[str, str | None] = {"corebench": __version__, "python": platform.python_version()}
    for pkg in ("torch", "torchvision", "timm", "pyautoattack", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    out["git_commit"] = git_commit(Path(__file__).resolve().parents[1])
    return out


def device_name(device: torch.device) -> str:
    """The card's name; on a CPU its architecture, cores and `cpu_kernels()` (after the ';')."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores; {cpu_kernels()})"


def recorded_kernels(device: str) -> str:
    """The `cpu_kernels()` part of a CPU record's `device` ('' for a record older than it)."""
    return device.rstrip(")").partition("; ")[2]


@lru_cache(maxsize=1)
def cpu_kernels() -> str:
    """Which CPU kernels a run used: `PORTABLE_TAG` on the portable kernels (the same numbers on
    every x86-64 CPU), else torch's vector ISA and a digest of the CPU's model and flags.

    ATen, oneDNN and MKL pick their native kernels from the CPU's features, and different
    kernels round differently: a native CPU run is bit-identical only on a CPU with the same
    features (`corebench.compute.kernels`; README, 'Checking a board')."""
    if portable_active():
        return PORTABLE_TAG
    first: dict[str, str] = {}  # the first processor's 'model name' and 'flags' (Features on ARM)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            first.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = first.get("model name") or platform.processor() or platform.machine()
    flags = " ".join(sorted((first.get("flags") or first.get("Features") or "").split()))
    digest = hashlib.blake2b(f"{model}|{flags}".encode(), digest_size=4).hexdigest()
    return f"kernels {torch.backends.cpu.get_cpu_capability()}, cpu {digest}"
