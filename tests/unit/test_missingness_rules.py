"""Missingness-bias rules scale with the number of classes and carry their uncertainty."""

from __future__ import annotations

import numpy as np
import pytest

from auditors.audits.missingness_bias.rules import attractor_test, entropy_drop_share, share_limits
from auditors.methods.class_entropy import class_shares, entropy

LIMITS = {"floor": 0.05, "ratio": 10.0, "cap": 0.5}


def _balanced(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % k)


def _collapsed(clean: np.ndarray, share: float, to: int, seed: int = 1) -> np.ndarray:
    """`share` of the images moved to class `to`, the rest keep their clean prediction."""
    out = clean.copy()
    moved = np.random.default_rng(seed).permutation(clean.size)[: round(share * clean.size)]
    out[moved] = to
    return out


def test_four_classes_with_89_percent_sent_to_one_class_fail_both_rules():
    """The case a fixed 1-nat rule passed: the drop is 0.99 nats, but most of ln 4."""
    clean = _balanced(300, 4)
    masked = _collapsed(clean, 0.86, to=3)
    drop = entropy_drop_share(clean, masked, 4, seed=0)
    assert drop.lo > 0.5 and drop.n == 300
    limits = share_limits(class_shares(clean, 4), **LIMITS)
    test = attractor_test(masked, limits, min_n=30)
    assert test.decision == "fail" and test.cls == 3 and test.share.value > 0.85


@pytest.mark.parametrize("k", [2, 4, 10, 100, 1000])
def test_the_attractor_rule_can_fire_for_any_number_of_classes(k):
    clean_share = np.full(k, 1.0 / k)
    limits = share_limits(clean_share, **LIMITS)
    assert (limits < 1.0).all() and (limits > clean_share).all()
    n = max(400, 4 * k)
    clean = _balanced(n, k)
    assert attractor_test(_collapsed(clean, 0.9, to=0), limits, min_n=30).decision == "fail"
    assert attractor_test(clean, limits, min_n=30).decision == "pass"


def test_a_kept_distribution_passes_and_few_images_are_inconclusive():
    clean = _balanced(300, 4)
    masked = _collapsed(clean, 0.05, to=1)
    drop = entropy_drop_share(clean, masked, 4, seed=0)
    assert drop.hi < 0.1
    limits = share_limits(class_shares(clean, 4), **LIMITS)
    assert attractor_test(masked, limits, min_n=30).decision == "pass"
    few = attractor_test(masked[:12], limits, min_n=30)
    assert few.decision == "inconclusive" and few.share.n == 12


def test_entropy_of_one_class_is_zero_not_minus_zero():
    value = entropy(class_shares(np.zeros(10, dtype=int), 3))
    assert value == 0.0 and str(value) == "0.0"
