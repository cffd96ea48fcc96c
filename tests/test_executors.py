"""Slurm submission without a cluster: what is submitted, with which settings and dependencies.

tests/test_slurm.py runs the same code against a real Slurm.
"""

from __future__ import annotations

import contextlib
import sys

import pytest
import yaml

from corebench.cells.grid import parse_grid
from corebench.cli import main
from corebench.core.spec import SlurmConfig, scoring_seed
from corebench.drivers.executors import slurm_parameters, submit_grid, with_overrides

GRID = {
    "name": "sub",
    "datasets": ["digits"],
    "architectures": [{"name": "resnet18", "id": "r18w4", "kwargs": {"channels": [4, 8, 16, 32]}}],
    "fractions": [0.3],
    "methods": ["random", "easycore", {"name": "el2n", "n_runs": 2}],
    "regimes": ["standard"],
    "seeds": [0],
    "scoring": {"epochs": 1},
    "slurm": {"partition": "gpu", "time": "2:00:00", "gpus": 1, "cpus": 4, "mem": 16, "array_parallelism": 8},
}


class FakeExecutor:
    """submitit's executor interface: parameters, batch() (one array), submit()."""

    def __init__(self) -> None:
        self.params: dict = {}
        self.arrays: list[tuple[dict, list]] = []
        self._batch: list | None = None

    def update_parameters(self, **kw):
        self.params.update(kw)

    @contextlib.contextmanager
    def batch(self):
        self._batch = []
        yield
        array = str(100 + len(self.arrays))
        for i, job in enumerate(self._batch):
            job.job_id = f"{array}_{i}"
        self.arrays.append((dict(self.params), [job.task for job in self._batch]))
        self._batch = None

    def submit(self, task):
        job = type("Job", (), {"task": task, "job_id": None})()
        self._batch.append(job)
        return job


def test_scoring_runs_first_and_only_the_cells_that_read_them_wait(tmp_path):
    ex = FakeExecutor()
    sub = submit_grid(parse_grid(GRID), tmp_path / "res", cache_dir=tmp_path / "cache", executor=ex)
    (scoring_params, scoring), *cell_arrays = ex.arrays
    assert [t.key[2] for t in scoring] == [scoring_seed(0, 0), scoring_seed(0, 1)]  # el2n averages two runs
    assert scoring[0].signals >= {"input_grad_norm_eval", "el2n_eval"}
    assert sub.scoring_jobs == ["100_0", "100_1"] and sub.cached_runs == 0 and sub.done == 0
    by_method = {t.cell.method.name: (params, t) for params, tasks in cell_arrays for t in tasks}
    assert set(by_method) == {"full", "random", "easycore", "el2n"}
    deps = {m: p["slurm_additional_parameters"].get("dependency") for m, (p, _) in by_method.items()}
    assert deps == {"full": None, "random": None, "easycore": "afterok:100_0", "el2n": "afterok:100_0:100_1"}
    assert by_method["el2n"][0]["slurm_additional_parameters"]["kill-on-invalid-dep"] == "yes"
    assert len(cell_arrays) == 3  # no dependency (full, random) | scoring run 0 | runs 0 and 1
    for params in [scoring_params] + [p for p, _ in cell_arrays]:
        assert {k: params[k] for k in ("slurm_partition", "timeout_min", "gpus_per_node", "cpus_per_task",
                                       "slurm_mem", "slurm_array_parallelism")} == {
            "slurm_partition": "gpu", "timeout_min": 120, "gpus_per_node": 1, "cpus_per_task": 4,
            "slurm_mem": "16G", "slurm_array_parallelism": 8}  # fmt: skip


def test_cached_scoring_runs_and_finished_cells_are_not_submitted(tmp_path):
    import torch

    from corebench.drivers.runner import run_grid

    grid = {**GRID, "methods": ["easycore"], "training": {"epochs": 1},
            "evaluation": {"n_examples": 20, "pgd_steps": 1, "autoattack": {"enabled": False}}}  # fmt: skip
    spec = parse_grid(grid)
    spec = spec.__class__(**{**spec.__dict__, "device": "cpu"})
    run_grid(spec, tmp_path / "res", cache_dir=tmp_path / "cache", progress=False, cells=spec.cells()[:1])  # full only
    assert torch.get_num_threads() == 1
    run_grid(spec, tmp_path / "res", cache_dir=tmp_path / "cache", progress=False, scoring_only=True)
    ex = FakeExecutor()
    sub = submit_grid(spec, tmp_path / "res", cache_dir=tmp_path / "cache", executor=ex)
    assert (sub.done, sub.cached_runs, sub.scoring_jobs) == (1, 1, [])
    ((params, tasks),) = ex.arrays
    assert [t.cell.method.name for t in tasks] == ["easycore"] and params["slurm_additional_parameters"] == {}


def test_published_scoring_runs_are_not_submitted(tmp_path):
    """Slurm reads a grid's published scoring runs first: a fresh cache submits no scoring job."""
    from corebench.drivers.publish import publish_scoring
    from corebench.drivers.runner import run_grid

    spec = parse_grid({**GRID, "methods": ["easycore"], "device": "cpu"})
    run_grid(spec, tmp_path / "scratch", cache_dir=tmp_path / "cache", progress=False, scoring_only=True)
    publish_scoring(spec, tmp_path / "res", tmp_path / "cache")
    ex = FakeExecutor()
    sub = submit_grid(spec, tmp_path / "res", cache_dir=tmp_path / "fresh", executor=ex)
    assert (sub.cached_runs, sub.scoring_jobs) == (1, [])
    assert all("dependency" not in params["slurm_additional_parameters"] for params, _ in ex.arrays)


def test_slurm_settings_defaults_and_overrides():
    params = slurm_parameters(SlurmConfig())
    assert params["timeout_min"] == 240 and params["cpus_per_task"] == 1 and "gpus_per_node" not in params
    assert params["slurm_signal_delay_s"] > 0 and "slurm_partition" not in params
    cfg = with_overrides(SlurmConfig(partition="a"), {"time": "1-00:00:00", "mem": "4000M", "gpus": 2})
    assert (cfg.partition, cfg.time, cfg.mem, cfg.gpus) == ("a", 1440, "4000M", 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--slurm", "partiton=gpu"], "--slurm.partiton: 'partiton' is not allowed; allowed: keys partition, account, qos, "
                                      "constraint, time, gpus, cpus, mem, array_parallelism"),
        (["--slurm", "time=soon"], "--slurm.time: 'soon' is not allowed; allowed: minutes (240) or a Slurm time"),
        (["--slurm", "gpus"], "--slurm: 'gpus' is not allowed; allowed: key=value"),
    ],
)
def test_bad_slurm_settings_are_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setitem(sys.modules, "submitit", type(sys)("submitit"))
    monkeypatch.setattr("corebench.drivers.executors.shutil.which", lambda name: f"/usr/bin/{name}")  # no Slurm needed
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(GRID))
    assert main(["run", str(path), "--executor", "slurm", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_bad_slurm_block_in_the_grid_file_is_one_line():
    from corebench.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^slurm\.memory: 'memory' is not allowed; allowed: keys partition"):
        parse_grid({**GRID, "slurm": {"memory": "16G"}})


def test_executor_slurm_without_submitit_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(GRID))
    assert main(["run", str(path), "--executor", "slurm"]) == 2
    assert "pip install 'corebench[slurm]'" in capsys.readouterr().err
