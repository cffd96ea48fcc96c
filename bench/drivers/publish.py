"""`corebench publish-scoring GRID`: export a grid's scoring runs from the cache into the
committed folder beside its records (`corebench.selection.published`), so a contributor who adds one
method to the committed board trains only that method's cells and scores it from exactly the
runs the other rows were selected from.

Every scoring run any cell of the grid reads is exported, with the signals all the grid's
methods read from it, cut to the epochs they read. Nothing is computed here: a run missing from
the cache is a one-line error saying how to make it (`corebench run GRID --scoring-only`).
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
from corebench.selection.published import LIMIT_MB, folder_for, write_published
from corebench.signals import companions, until


@dataclass
class PublishSummary:
    folder: Path
    runs: int
    bytes: int


def publish_scoring(spec: GridSpec, results_dir: str | Path, cache_dir: str | Path | None = None, *,
                    limit_mb: float = LIMIT_MB) -> PublishSummary:
    """Write the grid's scoring runs into `<results>/<grid>/scoring/` (replacing what was there)."""
    results = writable_folder(results_dir, "results_dir")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    work = plan_work(spec, None, cache=cache, published=None)  # every cell's runs, from the cache only
    scorer = work.scorer
    runs = []
    for key in work.runs():
        data = work.datasets[key[0]]
        name = scorer.key_name(key, data)
        wanted = scorer.needs[key]
        cfg = scorer.cfg_for(key)  # the grid's scoring settings under the run's regime
        epochs = needed_epochs(cfg, wanted, scorer.epochs.get(key))
        path = scorer.cache_file(key, data)
        entry = read_entry(path, name, data) if path is not None else None
        if entry is None or not wanted <= set(entry[0]) or entry[1].get("trained_epochs", cfg.epochs) < epochs:
            raise ConfigError(f"publish-scoring: scoring run {run_label(key)} is not in the cache {cache} with "
                              f"{', '.join(sorted(wanted))} for {epochs} epochs; make it first with a scoring-only run "
                              f"of the grid into that cache")
        arrays, meta = entry
        kept = until({k: v for k, v in arrays.items() if k in wanted | companions(wanted)}, epochs)
        made_by = {"grid": spec.name, "dataset": dataset_identity(key[0]), "data": meta.get("data"), "arch": key[1],
                   "scoring": cfg, "seed": key[2], "threads": spec.threads,
                   "execution": execution(cfg, scorer.device).record(), "device": meta.get("device"),
                   "corebench": __version__, "git_commit": versions()["git_commit"]}
        runs.append((kept, {"key": name, "trained_epochs": epochs, "seconds": float(meta.get("seconds", 0.0)),
                            "made_by": made_by}))
    folder = folder_for(results, spec.name)
    total = write_published(folder, results, runs, limit_mb)
    return PublishSummary(folder, len(runs), total)
