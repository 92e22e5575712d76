"""The statistics every verdict rests on, checked against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from auditors.stats import (
    Estimate,
    bootstrap_interval,
    decide,
    empirical_p_value,
    holm,
    mean_estimate,
    proportion,
    ratio_of_means,
    sign_flip_p_value,
    wilson_interval,
)


def test_wilson_interval_matches_the_textbook_values() -> None:
    # Wilson 95% for 8/10: (0.4902, 0.9433) (Newcombe 1998, method 3).
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4)
    assert hi == pytest.approx(0.9433, abs=1e-4)


def test_wilson_interval_stays_inside_zero_one_at_the_extremes() -> None:
    assert wilson_interval(0, 5)[0] == 0.0
    assert wilson_interval(5, 5)[1] == 1.0
    assert 0.0 < wilson_interval(0, 5)[1] < 0.5
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_proportion_carries_its_n() -> None:
    e = proportion(3, 12)
    assert e.value == 0.25 and e.n == 12 and e.lo < 0.25 < e.hi


def test_bootstrap_interval_of_the_mean_covers_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(1)
    small = rng.normal(1.0, 1.0, size=20)
    large = rng.normal(1.0, 1.0, size=2000)
    lo_s, hi_s = bootstrap_interval(small, seed=0)
    lo_l, hi_l = bootstrap_interval(large, seed=0)
    assert lo_s < small.mean() < hi_s
    assert lo_l < 1.0 < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 4


def test_bootstrap_interval_is_reproducible_for_a_seed_and_accepts_other_statistics() -> None:
    v = np.arange(30.0)
    assert bootstrap_interval(v, seed=3) == bootstrap_interval(v, seed=3)
    lo, hi = bootstrap_interval(v, statistic=lambda a: float(np.median(a)), n_boot=300, seed=0)
    assert lo <= 14.5 <= hi


def test_mean_estimate_of_nothing_is_nan_with_n_zero() -> None:
    e = mean_estimate([])
    assert e.n == 0 and np.isnan(e.value)


def test_empirical_p_value_counts_the_observation_itself() -> None:
    null = np.zeros(99)
    assert empirical_p_value(1.0, null) == pytest.approx(0.01)
    assert empirical_p_value(0.0, null) == 1.0
    assert empirical_p_value(-1.0, null, alternative="less") == pytest.approx(0.01)
    assert empirical_p_value(5.0, []) == 1.0


def test_sign_flip_test_is_exact_for_small_n() -> None:
    # 5 positive differences: only the all-positive sign pattern is as extreme, p = 1/32.
    assert sign_flip_p_value([1.0, 2.0, 1.5, 0.5, 3.0]) == pytest.approx(1 / 32)


def test_sign_flip_test_finds_a_shift_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    assert sign_flip_p_value(rng.normal(0.5, 1.0, size=60), seed=1) < 0.01
    assert sign_flip_p_value(rng.normal(0.0, 1.0, size=60), seed=1) > 0.05


def test_holm_matches_a_worked_example() -> None:
    # p = (0.01, 0.04, 0.03, 0.005): sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> monotone max.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([]) == []


def test_decide_is_inconclusive_below_the_minimum_n_and_when_the_interval_straddles() -> None:
    assert decide(Estimate(0.9, 0.8, 0.95, n=3), fail_above=0.5, min_n=10) == "inconclusive"
    assert decide(Estimate(0.9, 0.8, 0.95, n=30), fail_above=0.5, min_n=10) == "fail"
    assert decide(Estimate(0.1, 0.05, 0.2, n=30), fail_above=0.5, min_n=10) == "pass"
    assert decide(Estimate(0.5, 0.3, 0.7, n=30, p_value=0.001), fail_above=0.5, min_n=10) == "inconclusive"
    assert decide(Estimate(0.9, 0.8, 0.95, n=30, p_value=0.4), fail_above=0.5, min_n=10) == "pass"


def test_ratio_of_means_pairs_the_units_and_is_honest_about_a_zero_denominator() -> None:
    own = np.array([0, 0, 1, 0, 0, 0, 0, 1, 0, 0], dtype=float)
    rnd = np.ones(10)
    est = ratio_of_means(own, rnd, seed=0)
    assert est.value == pytest.approx(0.2) and est.n == 10 and est.lo <= 0.2 <= est.hi
    assert ratio_of_means(own, rnd, seed=0) == est
    assert ratio_of_means(np.ones(4), np.zeros(4)).value == math.inf
    assert ratio_of_means(np.zeros(4), np.zeros(4)).value == 0.0
