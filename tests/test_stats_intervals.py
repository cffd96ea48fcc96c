"""Intervals over seeds and images, corrected p-values and power, on simulated boards with a known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from corebench.boards.stats import (
    adjust,
    components,
    detectable_difference,
    paired_components,
    paired_diff,
)

SEEDS, IMAGES = 3, 100
SIMS = 400


def simulate(rng: np.random.Generator, shift: float, image: float, noise: float, seed: float):
    """Two models' outcomes on the same images and seeds: correct when
    z_i + v_i + w + θ + m > 0, with z_i the image's ease (shared by both models), v_i the
    model's own ease of the image (sd `image`, the same for every seed), w per-evaluation noise
    (sd `noise`), θ the seed's luck (sd `seed`) and m the model's shift. Returns the outcomes and
    the truth over the population of images and seeds, 100·(Φ(m/σ) − Φ(0)), σ² = 1 + the sds²."""
    z = rng.normal(size=IMAGES)
    out = []
    for m in (shift, 0.0):
        latent = z + image * rng.normal(size=(1, IMAGES)) + noise * rng.normal(size=(SEEDS, IMAGES))
        out.append(latent + seed * rng.normal(size=(SEEDS, 1)) + m > 0)
    scale = math.sqrt(1 + image**2 + noise**2 + seed**2)
    return out[0], out[1], 100 * (norm.cdf(shift / scale) - norm.cdf(0.0))


@pytest.mark.parametrize(("image", "noise", "seed"), [(0.0, 1.0, 0.3), (1.0, 0.5, 0.2)], ids=["seeds", "images"])
def test_the_interval_over_seeds_and_images_covers_the_truth_about_95_percent(image, noise, seed):
    rng = np.random.default_rng(18)
    covered_both = covered_seeds = 0
    for _ in range(SIMS):
        a, b, truth = simulate(rng, 0.2, image, noise, seed)
        both = paired_components(a, b)
        covered_both += both.low <= truth <= both.high
        seeds = paired_diff(100 * a.mean(axis=1), 100 * b.mean(axis=1))
        covered_seeds += seeds.low <= truth <= seeds.high
    coverage = covered_both / SIMS
    print(f"\ncoverage over {SIMS} simulated boards ({SEEDS} seeds × {IMAGES} images, image sd {image}, seed sd "
          f"{seed}): seeds+images {coverage:.4f}, seeds only {covered_seeds / SIMS:.4f}")
    assert 0.92 <= coverage <= 0.98
    if image:  # models that differ image by image: the seed-only interval misses the images' sampling
        assert covered_seeds / SIMS < coverage


def test_components_recover_a_known_variance_decomposition():
    # d[s, i] = seed effect + image effect, no residual: the mean squares say so exactly
    d = np.add.outer([0.0, 2.0, 4.0], np.tile([-1.0, 1.0], 50))
    c = components(d)
    assert c.ms_res == pytest.approx(0.0, abs=1e-12)
    assert c.ms_seed == pytest.approx(100 * 4.0)  # N · variance of the seed means (2²)
    assert c.ms_image == pytest.approx(3 * 100 / 99)  # S · Σ(±1)² / (N − 1)
    assert c.variance() == pytest.approx(4.0 / 3 + (100 / 99) / 100)


def test_identical_models_give_no_difference_and_p_one():
    a = np.random.default_rng(0).random((3, 100)) < 0.5
    d = paired_components(a, a)
    assert (d.mean, d.p, d.significant) == (0.0, 1.0, False)
    assert d.basis == "seeds+images"


def test_adjust_uses_holm_by_default_and_bh_as_an_option():
    p = [0.01, 0.02, 0.03, 0.5]
    assert adjust(p) == pytest.approx([0.04, 0.06, 0.06, 0.5])  # Holm: 4·0.01, 3·0.02, max(2·0.03, 0.06), 0.5
    assert adjust(p, "bh") == pytest.approx([0.04, 0.04, 0.04, 0.5])  # BH: p·m/rank, monotone from the top
    assert adjust([]) == []


def test_detectable_difference_shrinks_with_more_seeds_and_images():
    c = components(np.random.default_rng(1).normal(scale=30, size=(3, 100)) + np.array([[0], [5], [-5]]))
    few = detectable_difference(c.variance(), c.df())
    many = detectable_difference(c.variance(10, 1000), c.df(10, 1000))
    assert 0 < many < few
    assert detectable_difference(1.0, 0.5) == math.inf  # fewer than two seeds: nothing can be decided

