"""`corebench publish-scoring GRID`: export a grid's scoring runs from the cache into the
committed folder beside its records (`corebench.selection.published`), so a contributor who adds one
method to the committed board trains only that method's cells and scores it from exactly the
runs the other rows were selected from.

Every scoring run any cell of the grid reads is exported, with the signals all the grid's
methods read from it, cut to the epochs they read. Nothing is computed here: a run missing from
the cache is a one-line error saying how to make it (`corebench run GRID --scoring-only`).

A run comes from the copy the grid's records were selected from, by the digests they bind
(`store.inputs`): the one already published, kept byte for byte (a grid extended by seeds on
another machine, whose cache is gone, keeps its earlier runs), or this machine's cache. A
scoring run remade on other CPU kernels differs from the one its records read; when no copy
serves what a record names, nothing is written and the line says which record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corebench import __version__
from corebench.cells.identity import dataset_identity
from corebench.compute.scoring import execution, needed_epochs, read_entry
from corebench.core.errors import ConfigError
from corebench.core.files import writable_folder
from corebench.core.spec import GridSpec
from corebench.drivers.cell import default_cache_dir, versions
from corebench.drivers.scoring_runs import run_label
from corebench.drivers.work import plan_work
from corebench.selection.published import LIMIT_MB, Published, folder_for, write_published
from corebench.signals import companions, until
from corebench.store.inputs import unserved
from corebench.store.record import BoundRun
from corebench.store.results import scan


@dataclass
class PublishSummary:
    folder: Path
    runs: int
    bytes: int
    kept: int = 0  # of `runs`, those already published and kept as they were


def publish_scoring(spec: GridSpec, results_dir: str | Path, cache_dir: str | Path | None = None, *,
                    limit_mb: float = LIMIT_MB) -> PublishSummary:
    """Write the grid's scoring runs into `<results>/<grid>/scoring/` (replacing what was there)."""
    results = writable_folder(results_dir, "results_dir")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    work = plan_work(spec, None, cache=cache, published=None)  # every cell's runs, from the cache only
    scorer = work.scorer
    folder = folder_for(results, spec.name)
    before = Published(folder)
    bound = recorded_runs(spec, results)
    runs, kept = [], 0
    for key in work.runs():
        data = work.datasets[key[0]]
        name = scorer.key_name(key, data)
        wanted = scorer.needs[key]
        cfg = scorer.cfg_for(key)  # the grid's scoring settings under the run's regime
        epochs = needed_epochs(cfg, wanted, scorer.epochs.get(key))
        copies = []  # (where, arrays, row, the published file's bytes or None)
        if before.holds(name, wanted, epochs) == wanted:
            arrays, run = before.read(name, wanted, epochs, data.x_train.shape[0])
            row = {"key": name, "trained_epochs": run.trained_epochs, "seconds": run.seconds, "made_by": run.made_by}
            copies.append(("published", arrays, row, (folder / run.file).read_bytes()))
        path = scorer.cache_file(key, data)
        entry = read_entry(path, name, data) if path is not None else None
        if entry is not None and wanted <= set(entry[0]) and entry[1].get("trained_epochs", cfg.epochs) >= epochs:
            arrays, meta = entry
            made_by = {"grid": spec.name, "dataset": dataset_identity(key[0]), "data": meta.get("data"), "arch": key[1],
                       "scoring": cfg, "seed": key[2], "threads": spec.threads,
                       "execution": execution(cfg, scorer.device).record(), "device": meta.get("device"),
                       "corebench": __version__, "git_commit": versions()["git_commit"]}
            copies.append(("cache", until({k: v for k, v in arrays.items() if k in wanted | companions(wanted)}, epochs),
                           {"key": name, "trained_epochs": epochs, "seconds": float(meta.get("seconds", 0.0)),
                            "made_by": made_by}, None))
        if not copies:
            raise ConfigError(f"publish-scoring: scoring run {run_label(key)} is neither published nor in the cache "
                              f"{cache} with {', '.join(sorted(wanted))} for {epochs} epochs; make it first with a "
                              f"scoring-only run of the grid into that cache")
        readers = bound.get(name, [])
        chosen = next((c for c in copies if not any(unserved(c[1], run) for _, run in readers)), None)
        if chosen is None:
            raise ConfigError(f"publish-scoring: scoring run {run_label(key)}: its {' and '.join(c[0] for c in copies)} "
                              f"cop{'ies differ' if len(copies) > 1 else 'y differs'} from the one record "
                              f"{next(p for p, run in readers if all(unserved(c[1], run) for c in copies))} was "
                              f"selected from (a run remade on other CPU kernels differs); publish from the machine "
                              f"that ran those cells, or run them again with their scoring runs remade; nothing was written")
        kept += chosen[0] == "published"
        runs.append((chosen[1], chosen[2], chosen[3]))
    total = write_published(folder, results, runs, limit_mb)
    return PublishSummary(folder, len(runs), total, kept)


def recorded_runs(spec: GridSpec, results: Path) -> dict[str, list[tuple[Path, BoundRun]]]:
    """For each scoring run key, the grid's finished records that read it and what they bound."""
    records, _ = scan(results)
    out: dict[str, list[tuple[Path, BoundRun]]] = {}
    for stored in records:
        record = stored.record
        if record.grid.name == spec.name and record.status == "ok" and record.inputs is not None:
            for run in record.inputs.scoring_runs:
                out.setdefault(run.key, []).append((stored.path, run))
    return out

