"""The plan of work, written once: a grid's cells with their identity and state (done, stale,
missing), the methods they run, what is still to do and the scoring runs it reads. `run`,
Slurm (`executors`), `plan`, `status` and `verify` all start here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from corebench.cells.identity import cell_id as identity_hash
from corebench.cells.identity import cell_settings, differences, record_settings
from corebench.compute.data import Dataset
from corebench.compute.datasets import load_dataset
from corebench.core.errors import BenchError, PathError, ResultsError
from corebench.core.files import confined
from corebench.core.spec import (
    FULL_DATA,
    Cell,
    DatasetSpec,
    GridSpec,
    MethodSpec,
)
from corebench.drivers.scoring_runs import ScoringCache
from corebench.methods import CoresetMethod, create_method
from corebench.methods.registry import plugin_fingerprint
from corebench.selection.published import folder_for
from corebench.store.record import CellConfig
from corebench.store.results import (
    DONE,
    MISSING,
    STALE,
    read_record,
    record_state,
)


def prepare(spec: GridSpec, datasets: Iterable[DatasetSpec]) -> dict[DatasetSpec, Dataset]:
    """Load the datasets and check what needs them (`grid.check_against_data`): every error a
    user can fix surfaces here, as one line, before any scoring or training starts."""
    from corebench.cells.grid import check_against_data

    loaded = {ds: load_dataset(ds) for ds in dict.fromkeys(datasets)}
    check_against_data(spec, loaded)
    return loaded


def methods_of(cells: Iterable[Cell]) -> dict[MethodSpec, CoresetMethod]:
    return {m: create_method(m.name, **m.params) for m in {c.method for c in cells} if m.name != FULL_DATA}


@dataclass(frozen=True)
class CellState:
    """A cell of the grid with its identity, computed once (`cell_state`) and handed to
    everything that needs it: running, claiming, status, Slurm and `plan`."""

    cell: Cell
    path: Path  # its record, inside the results folder
    state: str  # `results.record_state`'s: done, stale, failed, missing, malformed
    cell_id: str
    settings: dict[str, Any]  # canonical settings (`identity.cell_settings`); the id is their hash
    options: dict[str, Any]  # the method's options at the cell's fraction on its dataset
    options_error: BenchError | None = None  # the method has no option value there (CCS β)


def cell_state(spec: GridSpec, cell: Cell, data: Dataset, method: CoresetMethod | None,
               results_dir: Path) -> CellState:
    """The one place a cell's id is computed (see `corebench.cells.identity`)."""
    path = confined(results_dir, cell.relpath(spec.name))
    if path.exists() and not path.is_file():
        raise PathError(f"{path}: is not a file; a cell's record goes there (move it away)")
    options, error = cell_options(cell, method)
    settings = settings_of(spec, cell, data, options)
    cid = identity_hash(settings)
    return CellState(cell, path, record_state(path, cid), cid, settings, options, error)


def settings_of(spec: GridSpec, cell: Cell, data: Dataset, options: dict[str, Any]) -> dict[str, Any]:
    """A grid cell's canonical settings (`identity.cell_settings`): the one place they are built.
    A plug-in method's source code hash enters them (`method_code`), a built-in's does not."""
    code = plugin_fingerprint(cell.method.name) if cell.method.name != FULL_DATA else None
    return cell_settings(cell.key(), options, cell_config(spec, cell, data), data.fingerprint(), code)


def cell_states(spec: GridSpec, cells: Iterable[Cell], datasets: dict[DatasetSpec, Dataset],
                methods: dict[MethodSpec, CoresetMethod], results_dir: Path) -> list[CellState]:
    """Every cell with its record's state and identity."""
    return [cell_state(spec, c, datasets[c.dataset], methods.get(c.method), results_dir) for c in cells]


def cell_options(cell: Cell, method: CoresetMethod | None) -> tuple[dict[str, Any], BenchError | None]:
    """The method's options as used at the cell's fraction on its dataset (what the record
    stores), and the error when it has none there (the grid parser reports that first; a
    hand-built GridSpec fails the cell with it)."""
    if method is None:
        return {}, None
    try:
        return method.options_for(cell.fraction, cell.dataset.name), None
    except BenchError as exc:
        return method.options(), exc


@dataclass
class Work:
    """What is still to do for a grid (or some of its cells), written once: the data loaded and
    checked, the methods built, every cell's state, the cells to run, and the scoring runs they
    need with those the cache does not hold yet. `run`, Slurm's `submit_grid`, `plan` and
    `status` all start here."""

    spec: GridSpec
    datasets: dict[DatasetSpec, Dataset]
    methods: dict[MethodSpec, CoresetMethod]
    states: list[CellState]
    todo: list[CellState]
    scorer: ScoringCache

    @property
    def done(self) -> list[CellState]:
        return [s for s in self.states if s.state == DONE]

    @property
    def stale(self) -> list[CellState]:
        return [s for s in self.states if s.state == STALE]

    def runs(self) -> list[tuple]:
        """Every scoring run the cells to do read (key: dataset, scoring arch, run seed)."""
        return [key for key, signals in self.scorer.needs.items() if signals]

    def missing_runs(self) -> list[tuple]:
        """The scoring runs the cells to do read that the cache does not hold yet."""
        return [key for key in self.runs() if not self.scorer.cached(key, self.datasets[key[0]])]


def plan_work(spec: GridSpec, results_dir: Path | None, *, cells: list[Cell] | None = None,
              cache: Path | None = None, force: bool = False, device: torch.device | None = None,
              progress: bool = False, published: Path | None = None,
              datasets: dict[DatasetSpec, Dataset] | None = None) -> Work:
    """Load and check the data, build the methods, compute every cell's state, keep the cells
    to run (not done, or all with `force`) and request their scoring runs. Scoring runs are
    read from `published` first (default: the grid's published runs in the results folder,
    `published.folder_for`; none with `force`, which makes every run again). `datasets` given
    (already loaded, or shaped only for sizing: benchmarks/gpu_sizing.py) are used as they are."""
    cells = spec.cells() if cells is None else cells
    datasets = prepare(spec, [c.dataset for c in cells]) if datasets is None else datasets
    methods = methods_of(cells)
    if results_dir is not None:
        states = cell_states(spec, cells, datasets, methods, results_dir)
    else:  # nothing run yet: every cell is to do
        states = [CellState(c, Path(), MISSING, "", {}, {}) for c in cells]
    todo = [s for s in states if force or s.state != DONE]
    if published is None and results_dir is not None and not force:
        published = folder_for(results_dir, spec.name)
    scorer = ScoringCache(spec.scoring, confined(cache, "scoring") if cache is not None else None,
                          device or torch.device("cpu"), progress, threads=spec.threads,
                          published=None if force else published)
    for s in todo:  # every run's signal needs are known up front, so one run records them all
        if s.cell.method.name != FULL_DATA:
            scorer.request(s.cell, methods[s.cell.method])
    return Work(spec, datasets, methods, states, todo, scorer)


def stale_reason(state: CellState, limit: int = 3) -> str:
    """What differs between a stale record's settings and the grid's ('' unless stale)."""
    if state.state != STALE:
        return ""
    try:
        made = record_settings(read_record(state.path))
    except (ResultsError, OSError, ValueError, KeyError) as exc:
        return f"its settings cannot be read ({type(exc).__name__})"
    changed = differences(made, state.settings)
    if not changed:  # same settings, another id: made by an older identity rule
        return "same settings, an id from an older identity rule"
    more = f"; and {len(changed) - limit} more" if len(changed) > limit else ""
    return "; ".join(changed[:limit]) + more


def grid_states(spec: GridSpec, results_dir: str | Path) -> list[CellState]:
    """Every cell of the grid with its record's state (`corebench status --grid`); loads the data."""
    return plan_work(spec, Path(results_dir)).states


def cell_id(spec: GridSpec, cell: Cell, data: Dataset, options: dict[str, Any]) -> str:
    """The id of a cell (`cell_state` computes it with everything else a run needs): the hash
    of its canonical settings (`identity.cell_settings`). The cell's checkpoint is named by it."""
    return identity_hash(settings_of(spec, cell, data, options))


def cell_config(spec: GridSpec, cell: Cell, data: Dataset) -> CellConfig:
    """Every setting that changes the cell's numbers, resolved (ε filled in from the dataset)."""
    return CellConfig(
        dataset=cell.dataset, arch=cell.arch, scoring_arch=cell.scoring_arch, scoring=spec.scoring,
        training=spec.training, attack=spec.attack.resolved(data.info.eps),
        evaluation=spec.evaluation.resolved(data.info.eps), threads=spec.threads,
    )  # fmt: skip
