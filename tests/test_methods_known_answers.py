"""Known answers: synthetic signals, built as the scoring run would record them, where the
right selection is known in advance (from geometry or by hand), checked exactly."""

from __future__ import annotations

import numpy as np
import pytest

from corebench.core.errors import ConfigError, MethodError
from corebench.core.spec import default_snapshot_epoch as default_epoch
from corebench.methods import SelectionContext, budget_for, create_method, run_selection
from corebench.methods._common import class_budgets, forgetting_counts
from corebench.methods.ccs import BETA_CIFAR10, allocate, default_hard_cutoff, strata_of
from corebench.methods.moderate import class_distances

# --------------------------------------------------------------------------- a two-class world

E = 8  # scoring epochs


def forgetting_row(count: int, epochs: int = E) -> np.ndarray:
    """A correctness record with exactly `count` 1→0 transitions, learned at the end."""
    row = [1, 0] * count + [1] * (epochs - 2 * count)
    return np.asarray(row[:epochs], dtype=bool)


@pytest.fixture(scope="module")
def world() -> dict:
    """Two Gaussian classes split by the plane x0 = 0, five flipped labels per class.

    Hardness as a trained model would see it: gradient norms, EL2N and GraNd grow as a point
    nears the boundary and are largest for flipped points; boundary points are forgotten
    twice, middle points once, far points never; flipped points are never learned.
    """
    rng = np.random.default_rng(0)
    n_per = 100
    x = np.concatenate([rng.normal((-2.0, 0.0), 1.0, (n_per, 2)), rng.normal((2.0, 0.0), 1.0, (n_per, 2))])
    true = np.repeat([0, 1], n_per)
    labels = true.copy()
    flipped = np.concatenate([rng.choice(n_per, 5, replace=False), n_per + rng.choice(n_per, 5, replace=False)])
    labels[flipped] = 1 - labels[flipped]
    is_flipped = np.zeros(2 * n_per, dtype=bool)
    is_flipped[flipped] = True
    # distance to the boundary, on the side of the given label (negative: wrong side)
    margin = np.where(labels == 1, x[:, 0], -x[:, 0])
    # hardness decreasing with the margin; flipped points sit on the wrong side -> hardest
    h = np.exp(-margin)
    h[is_flipped] = 20.0 + np.abs(x[is_flipped, 0])
    epochs = np.arange(1, E + 1)[:, None]
    counts = np.where(np.abs(x[:, 0]) < 0.75, 2, np.where(np.abs(x[:, 0]) < 1.5, 1, 0))
    correct = np.stack([forgetting_row(int(c)) for c in counts], axis=1)
    correct[:, is_flipped] = False
    signals = {
        "input_grad_norm": (h[None, :] / epochs).astype(np.float32),
        "input_grad_norm_eval": (h[None, :] / epochs).astype(np.float32),
        "el2n_eval": np.tile(np.minimum(np.sqrt(2.0), 0.1 * h)[None, :], (2, 1)).astype(np.float32),
        "grand_all": np.stack([3.0 * h, 1.0 / h]).astype(np.float32),
        "snapshot_epochs": np.array([0, 4], dtype=np.int64),
        "correct": correct,
        "margin_logits": np.tile(-h[None, :], (E, 1)).astype(np.float32),
    }
    ctx = SelectionContext(labels=labels, num_classes=2, runs=(signals,), seed=0, dataset="cifar10")
    # expected hardness order from geometry alone: flipped first, then by margin
    geo_order = np.lexsort((np.arange(2 * n_per), margin, ~is_flipped))
    return {"ctx": ctx, "x": x, "labels": labels, "flipped": np.flatnonzero(is_flipped),
            "margin": margin, "geo_order": geo_order, "counts": counts}


def test_easycore_keeps_the_points_far_from_the_boundary(world):
    kept = run_selection(create_method("easycore"), world["ctx"], 0.25)
    far = np.sort(world["geo_order"][::-1][:50])  # the 50 largest margins
    assert np.array_equal(kept, far)
    assert not set(kept) & set(world["flipped"])
    assert world["margin"][kept].min() > np.median(world["margin"])


@pytest.mark.parametrize("name", ["el2n", "grand"])
def test_el2n_and_grand_rank_flipped_and_boundary_points_highest(world, name):
    kept = run_selection(create_method(name), world["ctx"], 0.15)  # 30 = 10 flipped + 20 boundary
    assert set(world["flipped"]) <= set(kept)
    assert np.array_equal(kept, np.sort(world["geo_order"][:30]))


def test_forgetting_ranks_flipped_then_boundary_points_highest(world):
    n_boundary = int(np.sum((world["counts"] == 2) & ~np.isin(np.arange(200), world["flipped"])))
    k = 10 + n_boundary
    kept = run_selection(create_method("forgetting"), world["ctx"], k / 200)
    expected = np.union1d(world["flipped"], np.flatnonzero(world["counts"] == 2))
    assert np.array_equal(kept, expected)


@pytest.mark.parametrize("name", ["easycore", "el2n", "grand", "forgetting"])
def test_direction_flips_the_kept_end(world, name):
    default = create_method(name)
    other = "easiest" if default.params.direction == "hardest" else "hardest"
    a = run_selection(default, world["ctx"], 0.5)
    b = run_selection(create_method(name, direction=other), world["ctx"], 0.5)
    if name == "forgetting":  # most counts tie at 0: the easiest half is all unforgettable
        assert set(world["flipped"]) <= set(a)
        assert not set(world["flipped"]) & set(b) and np.all(world["counts"][b] == 0)
    else:  # distinct scores: the two halves partition the data
        assert not set(a) & set(b) and len(a) + len(b) == 200


@pytest.mark.parametrize("name", ["easycore", "el2n", "grand", "forgetting", "ccs", "moderate", "random"])
def test_class_balanced_gives_exact_class_budgets(name):
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], [70, 20, 10])  # uneven classes
    n = labels.size
    d = rng.uniform(size=n)
    run = {
        "input_grad_norm": np.tile(d, (E, 1)).astype(np.float32),
        "input_grad_norm_eval": np.tile(d, (E, 1)).astype(np.float32),
        "el2n_eval": np.tile(d, (2, 1)).astype(np.float32),
        "grand_all": np.tile(d, (2, 1)).astype(np.float32),
        "snapshot_epochs": np.array([0, 1]),
        "correct": rng.uniform(size=(E, n)) < 0.7,
        "margin_probs": np.tile(-d, (E, 1)).astype(np.float32),
        "features": rng.normal(size=(n, 4)).astype(np.float32),
    }
    ctx = SelectionContext(labels=labels, num_classes=3, runs=(run,), seed=0, dataset="cifar10")
    for fraction in (0.07, 0.33, 0.5):
        kept = run_selection(create_method(name, class_balanced=True), ctx, fraction)
        got = {c: int(np.sum(labels[kept] == c)) for c in (0, 1, 2)}
        assert got == class_budgets(labels, budget_for(fraction, n))
    # global keeps of the hardest ignore classes: at 0.2 the 20 top scores are not 14/4/2
    top = run_selection(create_method("el2n"), ctx, 0.2)
    assert np.array_equal(top, np.sort(np.argsort(-d)[:20]))


# --------------------------------------------------------------------------- forgetting


def test_forgetting_counts_are_the_one_to_zero_transitions():
    correct = np.array(
        [
            [0, 1, 1, 0, 1],
            [1, 0, 1, 0, 0],
            [0, 1, 1, 0, 1],
            [1, 0, 0, 0, 1],
        ],
        dtype=bool,
    )
    counts, learned = forgetting_counts(correct)
    assert counts.tolist() == [1, 2, 1, 0, 1]
    assert learned.tolist() == [True, True, True, False, True]


def _forgetting_ctx() -> SelectionContext:
    # 0-9 never learned; 10-19 forgotten 3 times; 20-29 once; 30-49 learned and kept
    rows = [np.zeros(E, bool)] * 10 + [forgetting_row(3)] * 10 + [forgetting_row(1)] * 10 + [forgetting_row(0)] * 20
    correct = np.stack(rows, axis=1)
    return SelectionContext(labels=np.zeros(50, np.int64), num_classes=1, runs=({"correct": correct},), seed=0)


def test_never_learned_most_forgotten_ranks_them_first():
    kept = run_selection(create_method("forgetting"), _forgetting_ctx(), 0.2)
    assert kept.tolist() == list(range(10))


def test_never_learned_zero_ranks_them_with_the_unforgettable():
    ctx = _forgetting_ctx()
    assert run_selection(create_method("forgetting", never_learned="zero"), ctx, 0.2).tolist() == list(range(10, 20))
    assert run_selection(create_method("forgetting", never_learned="zero"), ctx, 0.4).tolist() == list(range(10, 30))
    easiest = run_selection(create_method("forgetting", never_learned="zero", direction="easiest"), ctx, 0.2)
    # count 0 for 0-9 (never learned) and 30-49 (unforgettable): 10 of these 30 tied samples, drawn by the seed
    assert len(easiest) == 10 and set(easiest.tolist()) <= set(range(10)) | set(range(30, 50))


def _tied_ctx(seed: int, labels: np.ndarray | None = None) -> SelectionContext:
    """40 samples forgotten once, 20 never forgotten: a boundary group of 40 tied counts."""
    correct = np.stack([forgetting_row(1)] * 40 + [forgetting_row(0)] * 20, axis=1)
    labels = np.zeros(60, np.int64) if labels is None else labels
    return SelectionContext(labels=labels, num_classes=int(labels.max()) + 1, runs=({"correct": correct},), seed=seed)


def test_ties_at_the_boundary_are_broken_by_the_seed_not_by_index():
    method = create_method("forgetting")
    picks = {seed: run_selection(method, _tied_ctx(seed), 0.25) for seed in range(6)}  # 15 of the 40 tied
    for seed, kept in picks.items():
        assert len(kept) == 15 and kept.max() < 40  # only the most forgotten, whatever the seed
        assert np.array_equal(kept, run_selection(method, _tied_ctx(seed), 0.25))  # deterministic per seed
    assert len({tuple(k) for k in picks.values()}) == 6  # each seed splits the tie its own way
    assert not all(np.array_equal(k, np.arange(15)) for k in picks.values())  # not the index order
    labels = np.tile([0, 1], 30)
    balanced = [run_selection(create_method("forgetting", class_balanced=True), _tied_ctx(s, labels), 0.25)
                for s in (0, 1)]
    assert not np.array_equal(*balanced) and all(k.max() < 40 for k in balanced)


# --------------------------------------------------------------------------- n_runs


def test_n_runs_averages_exactly_the_first_n_runs():
    n = 40
    rng = np.random.default_rng(2)
    s0, s1 = rng.uniform(size=n), rng.uniform(size=n)
    poisoned = np.full((2, n), np.nan, np.float32)  # run 2 must never be read with n_runs=2
    snaps = np.array([0, 1])
    runs = tuple({"el2n_eval": np.tile(s, (2, 1)).astype(np.float32), "snapshot_epochs": snaps} for s in (s0, s1))
    runs += ({"el2n_eval": poisoned, "snapshot_epochs": snaps},)
    ctx = SelectionContext(labels=np.zeros(n, np.int64), num_classes=1, runs=runs, seed=0)
    kept = run_selection(create_method("el2n", n_runs=2), ctx, 0.25)
    mean = (s0.astype(np.float32).astype(np.float64) + s1.astype(np.float32)) / 2
    assert np.array_equal(kept, np.sort(np.argsort(-mean)[:10]))
    assert not np.array_equal(kept, run_selection(create_method("el2n"), ctx, 0.25))
    with pytest.raises(MethodError, match="el2n"):
        run_selection(create_method("el2n", n_runs=3), ctx, 0.25)
    one_run = SelectionContext(labels=ctx.labels, num_classes=1, runs=runs[:1], seed=0)
    with pytest.raises(MethodError, match="needs 2 scoring runs"):
        run_selection(create_method("el2n", n_runs=2), one_run, 0.25)


def test_forgetting_n_runs_average_counts_never_learned_as_epochs_per_run():
    a = np.stack([np.zeros(E, bool), forgetting_row(3), forgetting_row(1)], axis=1)
    b = np.stack([forgetting_row(2), forgetting_row(0), forgetting_row(1)], axis=1)
    ctx = SelectionContext(labels=np.zeros(3, np.int64), num_classes=1, runs=({"correct": a}, {"correct": b}), seed=0)
    method = create_method("forgetting", n_runs=2)
    assert method.hardness(ctx).tolist() == [(E + 2) / 2, 1.5, 1.0]


# --------------------------------------------------------------------------- EL2N and GraNd epochs


def test_el2n_default_epoch_is_ten_percent_of_training():
    assert [default_epoch(e) for e in (1, 6, 10, 11, 20, 200)] == [1, 1, 1, 2, 2, 20]


def test_el2n_reads_the_chosen_epoch_and_pass():
    n, epochs = 20, 20
    snapshots = np.tile(np.arange(n, dtype=np.float32), (3, 1))  # rows at epochs 0, 2, 5
    snapshots[1] = np.arange(n)[::-1]  # epoch 2, the first after 0 (the default): highest = first samples
    train = np.tile(np.arange(n, dtype=np.float32) % 7, (epochs, 1))
    train[1] = np.arange(n)  # epoch 2 = ⌈0.1·20⌉, the default of the training pass
    run = {"el2n_eval": snapshots, "snapshot_epochs": np.array([0, 2, 5]), "el2n": train}
    ctx = SelectionContext(labels=np.zeros(n, np.int64), num_classes=1, runs=(run,), seed=0)
    assert run_selection(create_method("el2n"), ctx, 0.2).tolist() == [0, 1, 2, 3]
    assert run_selection(create_method("el2n", epoch=5), ctx, 0.2).tolist() == [16, 17, 18, 19]
    kept = run_selection(create_method("el2n", score_pass="train", epoch=5), ctx, 0.2)
    assert {6, 13} <= set(kept.tolist()) and set(kept.tolist()) <= {5, 6, 12, 13, 19}  # the two 6s, two of the 5s
    assert run_selection(create_method("el2n", score_pass="train"), ctx, 0.2).tolist() == [16, 17, 18, 19]
    with pytest.raises(MethodError, match="epoch 3 is not in scoring.snapshot_epochs; recorded: 0, 2, 5"):
        run_selection(create_method("el2n", epoch=3), ctx, 0.2)
    with pytest.raises(MethodError, match="epoch 21 is not recorded"):
        run_selection(create_method("el2n", score_pass="train", epoch=21), ctx, 0.2)


def test_grand_picks_the_row_by_epoch_value(world):
    ctx = world["ctx"]
    hardest = run_selection(create_method("grand", epoch=0), ctx, 0.1)
    at_four = run_selection(create_method("grand", epoch=4), ctx, 0.1)  # row 1 = 1/h: the easiest
    assert np.array_equal(hardest, np.sort(world["geo_order"][:20]))
    assert np.array_equal(at_four, np.sort(world["geo_order"][::-1][:20]))
    with pytest.raises(MethodError, match=r"epoch 3 is not in scoring.snapshot_epochs; recorded: 0, 4"):
        run_selection(create_method("grand", epoch=3), ctx, 0.1)


def test_grand_last_layer_reads_grand_last():
    n = 10
    run = {"grand_all": np.arange(n, dtype=np.float32)[None], "grand_last": np.arange(n, dtype=np.float32)[::-1][None].copy(),
           "snapshot_epochs": np.array([0])}
    ctx = SelectionContext(labels=np.zeros(n, np.int64), num_classes=1, runs=(run,), seed=0)
    assert run_selection(create_method("grand"), ctx, 0.2).tolist() == [8, 9]
    assert run_selection(create_method("grand", params="last_layer"), ctx, 0.2).tolist() == [0, 1]
    assert create_method("grand", params="last_layer").required_signals() == ("grand_last",)


# --------------------------------------------------------------------------- Moderate


def _moderate_ctx() -> SelectionContext:
    # 1-D features; class 0 median 3 (mean 3.8), class 1 median 104 (mean 105)
    feats = np.array([0, 2, 3, 5, 9, 100, 100.5, 104, 105.5, 115], dtype=np.float32)[:, None]
    labels = np.repeat([0, 1], 5)
    return SelectionContext(labels=labels, num_classes=2, runs=({"features": feats},), seed=0)


def test_moderate_distances_to_the_median_centre():
    ctx = _moderate_ctx()
    dist = class_distances(ctx.signals["features"], ctx.labels, "median")
    assert np.allclose(dist, [3, 1, 0, 2, 6, 4, 3.5, 0, 1.5, 11])


def test_moderate_keeps_the_median_distance_band():
    # distances ranked: 0,0,1,1.5,[2,3,3.5,... ] -> with 4 kept, ranks 3..6 = distances 1.5, 2, 3, 3.5
    kept = run_selection(create_method("moderate"), _moderate_ctx(), 0.4)
    assert kept.tolist() == [0, 3, 6, 8]


def test_moderate_mean_centre_changes_the_band():
    kept = run_selection(create_method("moderate", center="mean"), _moderate_ctx(), 0.4)
    assert kept.tolist() == [0, 1, 3, 6]  # distances to 3.8 / 105: ranks 3..6 = 1.2, 1.8, 3.8, 4.5


def test_moderate_class_balanced_keeps_each_class_median_band():
    kept = run_selection(create_method("moderate", class_balanced=True), _moderate_ctx(), 0.4)
    assert kept.tolist() == [1, 3, 6, 8]


def test_moderate_nan_feature_is_a_method_error():
    ctx = _moderate_ctx()
    feats = ctx.signals["features"].copy()
    feats[4, 0] = np.nan
    bad = SelectionContext(labels=ctx.labels, num_classes=2, runs=({"features": feats},), seed=0)
    with pytest.raises(MethodError, match="'moderate'"):
        run_selection(create_method("moderate"), bad, 0.4)


# --------------------------------------------------------------------------- CCS


def _ccs_ctx(hardness: np.ndarray, labels: np.ndarray | None = None, seed: int = 0) -> SelectionContext:
    n = hardness.size
    labels = np.zeros(n, np.int64) if labels is None else labels
    margins = np.tile(-hardness, (4, 1)).astype(np.float64)  # AUM = −hardness
    return SelectionContext(labels=labels, num_classes=int(labels.max()) + 1,
                            runs=({"margin_logits": margins, "margin_probs": margins},), seed=seed, dataset="cifar10")


def _three_strata() -> np.ndarray:
    # after the cut: hardness in [0, 3] -> with 3 strata exactly [0,1) 5, [1,2) 25, [2,3] 60
    return np.concatenate([
        np.linspace(0.0, 0.9, 5), np.linspace(1.1, 1.9, 25), np.linspace(2.1, 3.0, 60),
        np.linspace(5.0, 6.0, 10),  # the 10 hardest, cut by β = 0.1
    ])


def test_ccs_drops_the_hardest_beta_and_fills_the_smallest_strata_first():
    h = _three_strata()
    method = create_method("ccs", aum_on="logits", hard_cutoff=0.1, strata=3)
    for seed in (0, 1, 2):
        kept = run_selection(method, _ccs_ctx(h, seed=seed), 0.3)  # budget 30
        assert not set(kept) & set(range(90, 100))  # β cut: the 10 hardest never kept
        per_stratum = [int(np.sum(kept < 5)), int(np.sum((kept >= 5) & (kept < 30))), int(np.sum((kept >= 30) & (kept < 90)))]
        # sizes 5, 25, 60: 5 -> min(5, 30//3); 25 -> min(25, 25//2) = 12; 60 -> 13
        assert per_stratum == [5, 12, 13]


def test_ccs_covers_every_non_empty_stratum_and_skips_empty_ones():
    h = np.concatenate([np.linspace(0.0, 0.3, 4), np.linspace(2.1, 3.0, 20)])  # nothing in [1, 2)
    kept = run_selection(create_method("ccs", aum_on="logits", hard_cutoff=0.0, strata=3), _ccs_ctx(h), 0.5)
    assert int(np.sum(kept < 4)) == 4 and int(np.sum(kept >= 4)) == 8  # sizes [4, 0, 20], budget 12


def test_ccs_strata_and_allocation_match_the_reference_algorithm():
    assert strata_of(np.array([0.0, 0.99, 1.0, 2.5, 3.0]), 3).tolist() == [0, 0, 1, 2, 2]
    assert strata_of(np.full(4, 7.0), 50).tolist() == [0, 0, 0, 0]
    assert allocate(np.array([60, 5, 25]), 30).tolist() == [13, 5, 12]
    assert allocate(np.array([0, 3, 4, 4]), 11).tolist() == [0, 3, 4, 4]
    assert allocate(np.array([10, 10, 10]), 10).tolist() == [3, 3, 4]
    with pytest.raises(MethodError):
        allocate(np.array([1, 2]), 5)


def test_ccs_is_seeded_and_different_seeds_sample_differently():
    h = np.random.default_rng(3).uniform(size=400)
    method = create_method("ccs", aum_on="logits")
    a = run_selection(method, _ccs_ctx(h, seed=5), 0.2)
    assert np.array_equal(a, run_selection(method, _ccs_ctx(h, seed=5), 0.2))
    assert not np.array_equal(a, run_selection(method, _ccs_ctx(h, seed=6), 0.2))


def test_ccs_default_beta_follows_the_cifar10_table():
    def beta(fraction: float) -> float:
        return default_hard_cutoff(fraction, "cifar10").beta

    assert BETA_CIFAR10[0.9] == 0.3  # the reference README's 90 % pruning command
    assert beta(0.1) == 0.3
    assert beta(0.05) == 0.3  # 95 % -> nearest listed 90 %
    assert beta(0.5) == 0.0
    assert beta(0.7) == 0.0
    assert beta(0.9) == 0.0  # 10 % pruning -> nearest listed 30 %
    assert beta(0.3) == BETA_CIFAR10[0.7]
    assert beta(0.15) == BETA_CIFAR10[0.8]  # 85 %: tie between 80 and 90 -> lower rate


def test_ccs_records_the_beta_and_its_source():
    method = create_method("ccs")
    at = {f: method.options_for(f, "cifar10") for f in (0.1, 0.5, 0.05)}
    assert (at[0.1]["hard_cutoff"], at[0.1]["hard_cutoff_source"], at[0.1]["hard_cutoff_rate"]) == (
        0.3, "reference README (verified)", 0.9)
    assert (at[0.5]["hard_cutoff"], at[0.5]["hard_cutoff_source"]) == (0.0, "paper appendix reading (unverified)")
    assert (at[0.05]["hard_cutoff"], at[0.05]["hard_cutoff_source"], at[0.05]["hard_cutoff_rate"]) == (
        0.3, "nearest table rate (unverified at this rate)", 0.9)
    imagenet = method.options_for(0.2, "imagenet")
    assert (imagenet["hard_cutoff"], imagenet["hard_cutoff_source"]) == (0.2, "reference README (verified)")
    fixed = create_method("ccs", hard_cutoff=0.15).options_for(0.5, "cifar100")
    assert (fixed["hard_cutoff"], fixed["hard_cutoff_source"], fixed["hard_cutoff_rate"]) == (0.15, "set in the grid", None)
    per_fraction = create_method("ccs", hard_cutoff={0.1: 0.3, 0.5: 0.05})
    assert per_fraction.options_for(0.5, "svhn")["hard_cutoff"] == 0.05
    with pytest.raises(ConfigError, match=r"hard_cutoff: .* allowed: a β for every fraction \(no entry for 0.3\)"):
        per_fraction.options_for(0.3, "svhn")


def test_ccs_without_a_beta_table_needs_beta_from_the_grid():
    with pytest.raises(ConfigError, match=r"^hard_cutoff: None is not allowed for dataset 'cifar100'; allowed: a number"):
        create_method("ccs").options_for(0.1, "cifar100")
    h = np.random.default_rng(4).permutation(100).astype(np.float64)
    ctx = SelectionContext(labels=np.zeros(100, np.int64), num_classes=1,
                           runs=({"margin_probs": np.tile(-h, (4, 1))},), seed=0, dataset="digits")
    with pytest.raises(MethodError, match="method 'ccs' raised ConfigError: hard_cutoff: .*dataset 'digits'"):
        run_selection(create_method("ccs"), ctx, 0.1)


def test_ccs_default_beta_cuts_the_hardest_at_ten_percent():
    h = np.random.default_rng(4).permutation(1000).astype(np.float64)
    kept = run_selection(create_method("ccs", aum_on="logits"), _ccs_ctx(h), 0.1)
    assert h[kept].max() < 700  # β = 0.3: the 300 hardest (h >= 700) are gone
    assert len(kept) == 100


def test_ccs_beta_is_capped_to_leave_the_budget():
    h = np.arange(100, dtype=np.float64)
    kept = run_selection(create_method("ccs", aum_on="logits", hard_cutoff=0.5), _ccs_ctx(h), 0.8)
    assert kept.tolist() == list(range(80))  # only 20 can be cut, then all 80 remaining are kept


def test_ccs_aum_on_chooses_the_margin_signal():
    assert create_method("ccs").required_signals() == ("margin_probs",)
    assert create_method("ccs", aum_on="logits").required_signals() == ("margin_logits",)
    assert create_method("ccs", score="forgetting").required_signals() == ("correct", "margin_probs")
    assert create_method("ccs", score="el2n", cutoff_by="score").required_signals() == ("el2n",)


def test_ccs_cutoff_by_aum_or_by_the_score():
    n = 20
    # forgetting counts: samples 0-3 most forgotten; AUM says 16-19 are hardest
    correct = np.stack([forgetting_row(3 if i < 4 else 0) for i in range(n)], axis=1)
    margins = np.tile(np.where(np.arange(n) >= 16, -1.0, 1.0), (E, 1))
    ctx = SelectionContext(labels=np.zeros(n, np.int64), num_classes=1,
                           runs=({"correct": correct, "margin_probs": margins},), seed=0)
    by_aum = run_selection(create_method("ccs", score="forgetting", hard_cutoff=0.2), ctx, 0.8)
    by_score = run_selection(create_method("ccs", score="forgetting", hard_cutoff=0.2, cutoff_by="score"), ctx, 0.8)
    assert by_aum.tolist() == list(range(16))
    assert by_score.tolist() == list(range(4, 20))


def test_ccs_el2n_averages_the_first_el2n_epochs_of_the_training_pass():
    n = 10
    el2n = np.zeros((20, n))
    el2n[:10] = np.arange(n)  # first 10 epochs: sample 9 hardest
    el2n[10:] = np.arange(n)[::-1] * 100  # later epochs would reverse it
    ctx = SelectionContext(labels=np.zeros(n, np.int64), num_classes=1, runs=({"el2n": el2n},), seed=0)
    method = create_method("ccs", score="el2n", cutoff_by="score", hard_cutoff=0.2)
    assert method.hardness(ctx).tolist() == list(range(n))
    kept = run_selection(method, ctx, 0.5)
    assert not {8, 9} & set(kept.tolist())


def test_ccs_invalid_hard_cutoff_is_a_config_error():
    with pytest.raises(ConfigError, match=r"ccs.hard_cutoff: 1.5 is not allowed"):
        create_method("ccs", hard_cutoff=1.5)


# --------------------------------------------------------------------------- uncertainty (DeepCore, Coleman et al.)


def _logits_ctx(logits: np.ndarray, labels: np.ndarray | None = None) -> SelectionContext:
    logits = np.asarray(logits, dtype=np.float16)
    labels = np.zeros(logits.shape[0], np.int64) if labels is None else labels
    return SelectionContext(labels=labels, num_classes=logits.shape[1], runs=({"logits_final": logits},), seed=0)


def _deepcore_scores(logits: np.ndarray, method: str) -> np.ndarray:
    """DeepCore 74ec709 `uncertainty.py` `rank_uncertainty` (l.72-84), written out in numpy:
    high = confident."""
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    if method == "LeastConfidence":
        return z.max(axis=1)
    if method == "Entropy":
        return (np.log(p + 1e-6) * p).sum(axis=1)
    top = np.sort(p, axis=1)
    return top[:, -1] - top[:, -2]


def test_uncertainty_scores_by_hand():
    from corebench.methods.uncertainty import uncertainty_scores

    logits = np.array([[3.0, 3.0, 3.0], [1.0, -5.0, -5.0], [2.0, 1.0, 0.0]])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(uncertainty_scores(logits, "entropy"), -(p * np.log(p + 1e-6)).sum(1))
    np.testing.assert_allclose(uncertainty_scores(logits, "least_confidence"), -p.max(1))
    np.testing.assert_allclose(uncertainty_scores(logits, "max_logit"), [-3.0, -1.0, -2.0])
    np.testing.assert_allclose(uncertainty_scores(logits, "margin"), [0.0, -(p[1, 0] - p[1, 1]), -(p[2, 0] - p[2, 1])])
    # the two "least confidence" readings disagree: uniform at logit 3 vs confident at logit 1
    assert uncertainty_scores(logits, "least_confidence")[0] > uncertainty_scores(logits, "least_confidence")[1]
    assert uncertainty_scores(logits, "max_logit")[0] < uncertainty_scores(logits, "max_logit")[1]


@pytest.mark.parametrize(("score", "deepcore"), [("entropy", "Entropy"), ("max_logit", "LeastConfidence"), ("margin", "Margin")])
def test_uncertainty_reproduces_both_deepcore_branches(score, deepcore):
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], [40, 60])
    logits = (rng.normal(0, 2, size=(100, 4))).astype(np.float16)
    ctx = _logits_ctx(logits, labels)
    scores = _deepcore_scores(logits, deepcore)
    # balance=False (the class default): np.argsort(scores)[::-1][:k], the MOST confident
    unbalanced = np.sort(np.argsort(scores)[::-1][:30])
    assert np.array_equal(run_selection(create_method("uncertainty", score=score, direction="easiest"), ctx, 0.3), unbalanced)
    # balance=True (main.py's default): per class np.argsort(scores)[:round(n_c * f)], the MOST uncertain
    balanced = np.sort(np.concatenate([np.flatnonzero(labels == c)[np.argsort(scores[labels == c])[: round((labels == c).sum() * 0.5)]]
                                       for c in (0, 1)]))
    got = run_selection(create_method("uncertainty", score=score, class_balanced=True), ctx, 0.5)
    assert np.array_equal(got, balanced)


def test_uncertainty_default_keeps_the_most_uncertain_by_entropy():
    logits = np.array([[9.0, 0.0, 0.0], [0.0, 0.0, 0.0], [3.0, 2.0, 0.0], [0.1, 0.0, 0.0]])
    kept = run_selection(create_method("uncertainty"), _logits_ctx(logits), 0.5)
    assert kept.tolist() == [1, 3]  # the two nearly uniform predictions
    method = create_method("uncertainty")
    assert method.options() == {"score": "entropy", "direction": "hardest", "class_balanced": False, "epoch": None,
                                "n_runs": 1}
    assert method.required_signals() == ("logits_final",)


def test_uncertainty_at_a_snapshot_epoch_reads_that_row():
    final = np.array([[9.0, 0.0], [0.0, 0.0], [5.0, 0.0], [0.0, 0.1]])
    snaps = np.stack([final[::-1], final]).astype(np.float16)  # epoch 0: reversed order
    ctx = SelectionContext(labels=np.zeros(4, np.int64), num_classes=2,
                           runs=({"logits_eval": snaps, "snapshot_epochs": np.array([0, 3])},), seed=0)
    method = create_method("uncertainty", epoch=0)
    assert method.required_signals() == ("logits_eval",)
    assert run_selection(method, ctx, 0.5).tolist() == [0, 2]  # the uncertain ones of the reversed rows
    assert run_selection(create_method("uncertainty", epoch=3), ctx, 0.5).tolist() == [1, 3]
    with pytest.raises(MethodError, match="epoch 2 is not in scoring.snapshot_epochs; recorded: 0, 3"):
        run_selection(create_method("uncertainty", epoch=2), ctx, 0.5)


# --------------------------------------------------------------------------- k-center greedy (DeepCore)


def _deepcore_kcenter(x: np.ndarray, budget: int, first: int) -> list[int]:
    """DeepCore 74ec709 `kcentergreedy.py` `k_center_greedy` (l.8-65) written out in numpy, from a
    given first point: Euclidean distances, argmax (first on ties), the first point in the budget."""
    dist = lambda i: np.sqrt(np.maximum(((x - x[i]) ** 2).sum(1), 1e-12))  # noqa: E731
    picked = [first]
    mins = dist(first)
    mins[first] = -1
    for _ in range(budget - 1):
        p = int(np.argmax(mins))
        picked.append(p)
        mins[p] = -1
        mins = np.where(mins < 0, -1, np.minimum(mins, dist(p)))
    return picked


def _features_ctx(x: np.ndarray, labels: np.ndarray | None = None, seed: int = 0) -> SelectionContext:
    labels = np.zeros(x.shape[0], np.int64) if labels is None else labels
    return SelectionContext(labels=labels, num_classes=int(labels.max()) + 1,
                            runs=({"features": x.astype(np.float32)},), seed=seed)


def test_kcenter_is_deepcores_farthest_point_traversal():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8))
    first = int(np.random.default_rng(4).integers(300))  # the cell's seed draws the first centre
    for fraction in (0.01, 0.1, 0.5):
        k = round(300 * fraction)
        want = np.sort(_deepcore_kcenter(x, k, first))
        assert np.array_equal(run_selection(create_method("kcenter"), _features_ctx(x, seed=4), fraction), want)


def test_kcenter_on_a_line_picks_the_far_ends_first():
    x = np.array([[0.0], [1.0], [2.0], [3.0], [50.0], [100.0]])
    assert np.random.default_rng(0).integers(6) == 5  # seed 0 starts at 100
    # then the farthest from 100 (0), then the farthest from both (50)
    assert run_selection(create_method("kcenter"), _features_ctx(x), 0.5).tolist() == [0, 4, 5]


def test_kcenter_keeps_one_traversal_and_extends_it():
    x = np.random.default_rng(2).normal(size=(200, 4))
    ctx = _features_ctx(x)
    method = create_method("kcenter")
    small = run_selection(method, ctx, 0.1)
    large = run_selection(method, ctx, 0.4)
    assert set(small.tolist()) <= set(large.tolist())  # a prefix of the same traversal
    assert len(method._traversals) == 1
    assert np.array_equal(large, run_selection(create_method("kcenter"), ctx, 0.4))  # fresh object, same answer


def test_kcenter_initial_centres_count_toward_the_budget():
    x = np.random.default_rng(3).normal(size=(100, 3))
    start = np.random.default_rng(0).permutation(100)[:10]
    kept = run_selection(create_method("kcenter", initial=10), _features_ctx(x), 0.05)
    assert np.array_equal(kept, np.sort(start[:5]))  # a budget below `initial`: the first random centres
    kept = run_selection(create_method("kcenter", initial=10), _features_ctx(x), 0.3)
    assert kept.size == 30 and set(start.tolist()) <= set(kept.tolist())


def test_kcenter_class_balanced_runs_one_traversal_per_class():
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1, 2], [30, 50, 20])
    x = rng.normal(size=(100, 5)) + labels[:, None] * 10.0
    kept = run_selection(create_method("kcenter", class_balanced=True), _features_ctx(x, labels), 0.2)
    assert np.bincount(labels[kept]).tolist() == [6, 10, 4]
    for c in range(3):
        members = np.flatnonzero(labels == c)
        first = int(np.random.default_rng(0).integers(members.size))  # the same seed for every class, as DeepCore
        want = members[_deepcore_kcenter(x[members], int((labels[kept] == c).sum()), first)]
        assert set(kept[labels[kept] == c].tolist()) == set(want.tolist())


def test_uncertainty_n_runs_averages_the_runs_scores():
    """Entropy of each run's softmax, averaged: run 0 alone ranks sample 0 most uncertain, the mean sample 1."""
    run0 = np.array([[0.0, 0.0], [3.0, 0.0], [6.0, 0.0]], np.float16)  # entropies: high, mid, low
    run1 = np.array([[9.0, 0.0], [0.0, 0.0], [6.0, 0.0]], np.float16)  # entropies: ~0, high, low
    ctx = SelectionContext(labels=np.zeros(3, np.int64), num_classes=2,
                           runs=({"logits_final": run0}, {"logits_final": run1}), seed=0)
    assert run_selection(create_method("uncertainty"), ctx, 1 / 3).tolist() == [0]
    assert run_selection(create_method("uncertainty", n_runs=2), ctx, 1 / 3).tolist() == [1]
