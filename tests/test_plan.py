"""`corebench plan`: counts per axis, cached scoring runs, a throughput probe, estimates, memory."""

from __future__ import annotations

import pytest
import yaml

from corebench.cells.grid import parse_grid
from corebench.cli import main
from corebench.core.spec import scoring_seed
from corebench.drivers.plan import make_plan

GRID = {
    "name": "planned",
    "datasets": ["digits"],
    "architectures": [{"name": "resnet18", "id": "r18w4", "kwargs": {"channels": [4, 8, 16, 32]}}],
    "scoring_architectures": ["same", {"name": "resnet18", "id": "r18w2", "kwargs": {"channels": [2, 4, 8, 16]}}],
    "fractions": [0.2, 0.4],
    "methods": ["random", "easycore"],
    "regimes": ["standard", "pgd_at"],
    "seeds": [0],
    "scoring": {"epochs": 1},
    "training": {"epochs": 2, "batch_size": 64},
    "attack": {"steps": 3},
    "evaluation": {"n_examples": 40, "pgd_steps": 2, "autoattack": {"version": "custom", "attacks": ["apgd-ce"]}},
    "device": "cpu",
}


def test_plan_counts_cells_and_reuses_cached_scoring_runs(tmp_path, capsys):
    from corebench.drivers.runner import run_grid

    spec = parse_grid(GRID)
    easy_same = [c for c in spec.cells() if c.method.name == "easycore" and c.scoring_arch.label == "r18w4"]
    run_grid(spec, tmp_path / "res", cache_dir=tmp_path / "cache", scoring_only=True, cells=easy_same, progress=False)

    path = tmp_path / "planned.yaml"
    path.write_text(yaml.safe_dump(GRID))
    assert main(["plan", str(path), "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "cache"), "--no-probe"]) == 0
    out = capsys.readouterr().out
    # 2 regimes x (1 full + 2 scorers x 2 methods x 2 fractions) = 18 cells
    assert out.splitlines()[0] == "18 cells to run, 0 done; scoring runs: 0 published, 1 cached, 1 to make"
    assert "grid planned: 18 cells" in out
    assert "  regimes: standard (9), pgd_at (9)" in out
    assert "  methods: full (2), random (4), easycore (4), random@r18w2 (4), easycore@r18w2 (4)" in out
    assert "  scoring_architectures: r18w4 (8), r18w2 (8)" in out
    seed = scoring_seed(0, 0)  # run 0 of cell seed 0
    assert f"digits × r18w4 × seed {seed}: cached (input_grad_norm_eval)" in out
    assert f"digits × r18w2 × seed {seed}: to make (input_grad_norm_eval)" in out
    assert "throughput" not in out


def test_plan_probes_this_machine_and_estimates_time_and_memory(capsys):
    spec = parse_grid(GRID)
    plan = make_plan(spec, None, None)
    (estimate,) = plan.estimates  # no GPU here: the CPU's
    assert {(p.arch, p.device) for p in plan.probes} == {("r18w4", "cpu (1 thread)"), ("r18w2", "cpu (1 thread)")}
    for p in plan.probes:
        assert 0 < p.forward and 0 < p.attack_step and 0 < p.train_step and p.batch == (64, 40)
        assert p.autoattack_step is not None and p.autoattack_step > 0  # measured through pyautoattack
        assert p.autoattack_iteration >= 0 and p.pass_overhead > 0  # a checkpoint saved per pass
        assert p.memory["data"] > 1347 * 64 * 4 and p.memory["runtime"] > 50e6 and p.memory["activations"] > 0
    r18w4 = next(p for p in plan.probes if p.arch == "r18w4")
    assert r18w4.regime_step("pgd_at", spec.attack) > 3 * r18w4.attack_step
    assert 0 < estimate.scoring_s and 0 < estimate.training_s and 0 < estimate.evaluation_s <= estimate.evaluation_bound_s

    path_out = make_plan(spec, None, None, probe=False)
    assert not path_out.probes and not path_out.estimates
    from corebench.drivers.plan import render

    text = render(plan)
    assert "throughput probe (this machine; ms per sample):" in text
    assert "digits × r18w4 on cpu (1 thread): training step" in text and "(batches 64 and 40," in text
    assert "estimated compute for the cells to run" in text and "cpu (1 thread): scoring" in text
    assert "memory per cell" in text and "activations" in text


def test_the_probe_times_training_and_the_attacks_each_in_its_own_layout(monkeypatch):
    """A grid that trains channels_last but attacks in the default layout (or the reverse) is
    timed as its cells run: the training step in training's layout, the attack step in the
    evaluation's."""
    import torch

    from corebench.drivers import plan as plan_module

    layouts, models = [], []
    timed, create = plan_module._timed, plan_module.create_model
    monkeypatch.setattr(plan_module, "create_model", lambda *a, **k: models.append(create(*a, **k)) or models[-1])

    def recording(fn, device):
        conv = next(p for p in models[-1].parameters() if p.ndim == 4 and p.shape[1] > 1)
        layouts.append((fn.__name__, conv.is_contiguous(memory_format=torch.channels_last)))
        return timed(fn, device)

    monkeypatch.setattr(plan_module, "_timed", recording)
    for training_cl, evaluation_cl in ((True, False), (False, True)):
        layouts.clear()
        grid = {**GRID, "architectures": GRID["architectures"][:1], "scoring_architectures": ["same"],
                "training": {**GRID["training"], "channels_last": training_cl},
                "evaluation": {**GRID["evaluation"], "channels_last": evaluation_cl}}
        make_plan(parse_grid(grid), None, None)
        assert ("train_step", training_cl) in layouts and ("attack_step", evaluation_cl) in layouts
        assert ("forward", evaluation_cl) in layouts


def test_plan_says_what_each_declared_comparison_can_detect(tmp_path):
    import numpy as np

    from corebench.boards.significance import power_of, prior_detectable
    from corebench.drivers.plan import power_lines
    from corebench.store.results import write_record

    from records import example_record, relpath, with_outcomes

    grid = {"name": "example", "datasets": ["digits"], "architectures": ["resnet18"], "fractions": [0.3],
            "methods": ["random", "easycore"], "regimes": ["standard"], "seeds": [0, 1, 2],
            "evaluation": {"n_examples": 100, "eps": "32/255"},
            "primary": [{"method": "easycore", "fraction": 0.3, "regime": "standard", "eps": "32/255"}]}  # fmt: skip
    spec = parse_grid(grid)
    (line,) = power_lines(spec, None)
    assert line == (f"  digits × resnet18: easycore − random at 30 %, standard at ε = 32/255: detects "
                    f"{prior_detectable(3, 100):.1f} pp or more at 80% power with 3 seeds × 100 images (prior: seed "
                    "sd of the difference 4 pp, the models disagreeing on 30% of the images, half of it shared by every seed)")
    assert prior_detectable(3, 100) > prior_detectable(10, 100) > prior_detectable(10, 1000)

    rng = np.random.default_rng(5)
    ease = rng.normal(size=100)
    sides = {"random": [], "easycore": []}
    for seed in range(3):
        for method, shift in (("random", 0.0), ("easycore", 0.3)):
            robust = ease + rng.normal(size=100) + shift > 0
            sides[method].append((100.0 * robust.mean(), robust))
            rec = with_outcomes(example_record(method=method, seed=seed, eps=32 / 255), np.ones(100, bool), robust)
            write_record(tmp_path / relpath(rec), rec)
    (line,) = power_lines(spec, tmp_path)
    want = power_of(sides["easycore"], sides["random"], seeds=3, images=100)
    assert line.endswith(f"detects {want:.1f} pp or more at 80% power with 3 seeds × 100 images "
                         "(the variance of the records' 3 seeds, seeds × images)")  # fmt: skip

    (line,) = power_lines(parse_grid({**grid, "seeds": [0]}), None)
    assert line.endswith("UNDECIDABLE: 1 seed(s) give no interval; declare at least 2 seeds")


def test_plan_reads_the_robust_share_per_eps_from_the_grids_records(tmp_path):
    """AutoAttack's later attacks run on the points its first leaves standing, and how many
    depends on ε (the quickstart's standard models: 77 % at 8/255, 4 % at 32/255): the share
    comes per regime and ε from the grid's records, and from the prior before any exist."""
    from corebench.drivers.plan import PRIOR_CLEAN_SHARE, observed_shares
    from corebench.store.results import write_record

    from records import example_record, relpath

    grid = {"name": "example", "datasets": ["digits"], "architectures": ["resnet18"], "fractions": [0.3],
            "methods": ["random"], "regimes": ["standard"], "seeds": [0, 1], "evaluation": {"eps": ["8/255", "32/255"]}}
    spec = parse_grid(grid)
    assert observed_shares(spec, tmp_path)["standard"] == (PRIOR_CLEAN_SHARE["standard"], {})
    for seed, (clean, aa) in enumerate([(90.0, 40.0), (80.0, 20.0)]):
        rec = example_record(seed=seed, clean_acc=clean, autoattack_acc=aa, eps=[8 / 255, 32 / 255])
        write_record(tmp_path / relpath(rec), rec)
    clean, robust = observed_shares(spec, tmp_path)["standard"]
    # at 8/255 the record keeps no per-attack split: its AutoAttack accuracy (aa + 10); at 32/255
    # APGD-CE's (aa + 1.5, the example's PGD)
    assert clean == pytest.approx(0.85)
    assert robust == pytest.approx({0: (50 / 90 + 30 / 80) / 2, 1: (41.5 / 90 + 21.5 / 80) / 2})


def test_the_evaluation_estimate_counts_each_attack_at_the_cost_the_probe_measured():
    """A known answer: clean once, then per ε PGD-k on every point, APGD-CE's iterations on the
    points classified right and APGD-T's on the share of those still robust at that ε, each
    AutoAttack iteration at the probe's measured cost (not the bare attack step)."""
    from corebench.drivers.plan import Probe, _evaluation_s

    spec = parse_grid({**GRID, "evaluation": {"n_examples": 10, "pgd_steps": 2, "eps": ["8/255", "32/255"],
                                              "autoattack": {"version": "custom", "attacks": ["apgd-ce", "apgd-t"],
                                                             "apgd_iterations": 5, "apgd_restarts": 1}}})
    probe = Probe("digits", "r18w4", "cpu", train_step=0.0, attack_step=1.0, forward=0.5, batch=(64, 10), params=1,
                  memory={}, autoattack_step=3.0)
    shares = {0: 0.5, 1: 0.1}
    targets = 9  # apgd-t: the 9 other classes of 10, 5 iterations each
    per_eps = [2 * 1.0 + 0.8 * (5 + shares[e] * 5 * targets) * 3.0 + 1 * 0.5 for e in (0, 1)]
    want = 10 * 0.5 + 10 * sum(per_eps)
    got = _evaluation_s(spec, probe, 10, 450, 0.8, shares.__getitem__, 8 / 255)
    assert abs(got - want) < 1e-9, (got, want)
