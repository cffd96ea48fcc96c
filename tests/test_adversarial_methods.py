"""Known answers for the methods built on adversarial scoring runs and per-epoch windows (issue
22): friendly (Dong et al.), AUM (Pleiss et al.), Dynamic Uncertainty (He et al. / Nieth et
al.) and TDDS (Zhang et al.), each against a hand computation or its reference's loop."""

from __future__ import annotations

import numpy as np
import pytest

from corebench.core.errors import MethodError
from corebench.methods import SelectionContext, create_method, run_selection
from corebench.methods.dyn_unc import dynamic_uncertainty
from corebench.methods.friendly import misclassified_epochs
from corebench.methods.tdds import tdds_scores


def ctx(labels, **signals) -> SelectionContext:
    return SelectionContext(labels=np.asarray(labels), num_classes=int(np.max(labels)) + 1, runs=(signals,), seed=0)


# --------------------------------------------------------------------------- friendly


def test_friendly_counts_the_epochs_pgd_misclassifies():
    adv_correct = np.array([[1, 0, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0]], dtype=bool)  # [E=3, N=4]
    np.testing.assert_array_equal(misclassified_epochs(adv_correct), [0, 2, 2, 2])


def test_friendly_keeps_the_lowest_counts_and_its_other_end():
    counts = np.array([5, 0, 3, 1, 4, 2])
    adv_correct = np.stack([np.arange(6) >= counts[i] for i in range(6)], axis=1)  # wrong in its first count[i] epochs
    c = ctx([0] * 6, adv_correct=adv_correct)
    assert run_selection(create_method("friendly"), c, 0.5).tolist() == [1, 3, 5]  # counts 0, 1, 2
    assert run_selection(create_method("friendly", direction="hardest"), c, 0.5).tolist() == [0, 2, 4]


def test_friendly_class_balanced_keeps_per_class_as_the_released_subsets():
    counts = np.array([0, 1, 2, 3, 10, 11, 12, 13])  # class 1 is all harder than class 0
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    adv_correct = np.stack([np.arange(14) >= counts[i] for i in range(8)], axis=1)
    c = ctx(labels, adv_correct=adv_correct)
    assert run_selection(create_method("friendly"), c, 0.5).tolist() == [0, 1, 2, 3]
    assert run_selection(create_method("friendly", class_balanced=True), c, 0.5).tolist() == [0, 1, 4, 5]


def test_friendly_reads_a_pgd_at_run_by_default_and_stays_out_of_all():
    assert create_method("friendly").scoring_regime() == "pgd_at"
    assert create_method("friendly", scoring_regime="grid").scoring_regime() == "grid"
    assert create_method("easycore").scoring_regime() == "grid"
    assert create_method("easycore", scoring_regime="trades").scoring_regime() == "trades"
    for name in ("friendly", "aum", "dyn_unc", "tdds"):
        assert not type(create_method(name)).in_all


# --------------------------------------------------------------------------- AUM


def test_aum_averages_the_margin_and_keeps_the_highest_by_default():
    margins = np.array([[1.0, -2.0, 0.5, 3.0], [3.0, 0.0, 0.5, -1.0]], dtype=np.float32)  # AUM: 2, -1, .5, 1
    c = ctx([0, 0, 0, 0], margin_logits=margins, adv_margin=-margins)
    np.testing.assert_allclose(create_method("aum").hardness(c), [-2.0, 1.0, -0.5, -1.0])
    assert run_selection(create_method("aum"), c, 0.5).tolist() == [0, 3]  # the paper keeps high AUM
    assert run_selection(create_method("aum", direction="hardest"), c, 0.5).tolist() == [1, 2]
    assert run_selection(create_method("aum", margin_on="adversarial"), c, 0.5).tolist() == [1, 2]


# --------------------------------------------------------------------------- Dynamic Uncertainty


def test_dynamic_uncertainty_by_hand():
    p = np.array([[0.0], [1.0], [1.0], [1.0]])  # K = 4 epochs, one sample, J = 2
    s = np.sqrt(0.5)  # std (ddof 1) of (0, 1)
    np.testing.assert_allclose(dynamic_uncertainty(p, 2), [(s + 0.0) / 2])  # windows (0,1), (1,2)
    np.testing.assert_allclose(dynamic_uncertainty(p, 2, "all"), [s / 3])  # and (2,3)
    np.testing.assert_allclose(dynamic_uncertainty(np.full((12, 3), 0.7), 10), [0.0, 0.0, 0.0], atol=1e-12)


def test_dynamic_uncertainty_is_nieth_et_al_s_loop():
    """BjoernNieth/LS-Dataset-pruning-in-AT `core/data/dynamic_uncertainty.py`, written out as there."""
    predictions = np.random.default_rng(0).random((15, 40))
    k, j = predictions.shape[0], 10
    dyn = np.zeros((k - j, predictions.shape[1]))
    for i in range(0, k - j):
        p_mean = predictions[i : i + j].sum(axis=0) / j
        dyn[i] = np.sqrt(np.square(predictions[i : i + j] - p_mean).sum(0) / (j - 1))
    np.testing.assert_allclose(dynamic_uncertainty(predictions, j), dyn.sum(0) / (k - j))


def test_dyn_unc_reads_the_probability_of_the_label_from_the_loss():
    p = np.array([[0.9, 0.5], [0.9, 0.1], [0.9, 0.9]])  # sample 1 fluctuates
    c = ctx([0, 1], loss=-np.log(p), adv_loss=-np.log(p[:, ::-1]))
    assert run_selection(create_method("dyn_unc", window=2), c, 0.5).tolist() == [1]
    assert run_selection(create_method("dyn_unc", window=2, predictions="adversarial"), c, 0.5).tolist() == [0]
    with pytest.raises(MethodError, match="window"):
        run_selection(create_method("dyn_unc"), c, 0.5)  # 3 epochs, J = 10


# --------------------------------------------------------------------------- TDDS


def reference_tdds(logits: np.ndarray, window: int, decay: float) -> np.ndarray:
    """zhangxin-xd/Dataset-Pruning-TDDS `importance_evaluation.py` `generate`, written out as
    there (in numpy, without the reordering by batch indices: rows here are in sample order)."""
    t = logits.shape[0]
    z = logits - logits.max(axis=2, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)
    moving = []
    for k in range(t - window + 1):
        win = probs[k : k + window]
        kd = []
        for j in range(window - 1):
            log = np.log(win[j + 1] + 1e-8) - np.log(win[j] + 1e-8)
            kd.append(np.abs(win[j + 1] * log).sum(axis=1))
        kd = np.array(kd)
        avg = kd.sum(0) / (window - 1)
        norm = np.linalg.norm(np.array([kd[i] - avg for i in range(window - 1)]), axis=0)
        moving.append(norm * decay * (1 - decay) ** (t - window - k))
    return np.squeeze(sum(np.array(moving), 0))


@pytest.mark.parametrize(("t", "window"), [(10, 10), (12, 4), (5, 2)])
def test_tdds_is_the_reference_s_loop(t, window):
    logits = np.random.default_rng(t).normal(0, 2, (t, 30, 5))
    np.testing.assert_allclose(tdds_scores(logits, window, 0.9), reference_tdds(logits, window, 0.9), rtol=1e-10)


def test_tdds_keeps_the_samples_whose_predictions_move_unevenly():
    steady = np.zeros((6, 1, 3))
    jumpy = np.zeros((6, 1, 3))
    jumpy[3, 0, 0] = 5.0  # one jump in the middle of training
    logits = np.concatenate([steady, jumpy, steady], axis=1).astype(np.float16)
    c = ctx([0, 1, 2], logits_train=logits)
    np.testing.assert_allclose(tdds_scores(logits.astype(np.float64), 3, 0.9)[[0, 2]], 0.0)
    assert run_selection(create_method("tdds", window=3), c, 1 / 3).tolist() == [1]
    with pytest.raises(MethodError, match="window"):
        run_selection(create_method("tdds"), c, 0.5)  # 6 epochs, W = 10


def test_tdds_reads_its_trajectory_only():
    assert create_method("tdds").scoring_epochs(30, (0, 3)) == 30
    assert create_method("tdds", trajectory=10).scoring_epochs(30, (0, 3)) == 10


# --------------------------------------------------------------------------- agreement of two rankings


def test_spearman_and_kept_overlap_by_hand():
    from corebench.boards.stats import kept_overlap, spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([0, 0, 1, 2], [1, 2, 3, 4]) == pytest.approx(np.corrcoef([1.5, 1.5, 3, 4], [1, 2, 3, 4])[0, 1])
    assert kept_overlap(np.array([1, 2, 3, 4]), np.array([3, 4, 5, 6])) == 0.5
    with pytest.raises(ValueError, match="one size"):
        kept_overlap(np.array([1, 2]), np.array([1]))


def test_the_agreement_script_compares_two_methods_on_their_own_runs(tmp_path):
    import importlib.util
    from pathlib import Path

    from helpers import write_fast_grid

    grid = write_fast_grid(tmp_path, methods=["easycore", {"name": "easycore", "scoring_regime": "pgd_at", "id": "adv"},
                                              {"name": "friendly", "id": "friendly"}],
                           scoring={"epochs": 2, "snapshot_epochs": [0], "attack": {"steps": 1}})
    script = Path(__file__).resolve().parents[1] / "scripts" / "regime_agreement.py"
    spec = importlib.util.spec_from_file_location("regime_agreement", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.agreement(str(grid), tmp_path / "cache", [("easycore", "friendly"), ("easycore", "easycore")], 0.1)
    assert [r["seed"] for r in rows] == [0, 0]
    assert -1 <= rows[0]["spearman"] <= 1 and 0 <= rows[0]["kept_overlap"] <= 1
    assert rows[1]["spearman"] == 1.0 and rows[1]["kept_overlap"] == 1.0  # a ranking agrees with itself
    assert "easycore vs friendly | mean" in module.markdown(rows)
