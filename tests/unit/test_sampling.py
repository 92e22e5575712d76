"""Audits sample every class: the stratified, seeded subset behind every audit."""

from __future__ import annotations

import numpy as np

from auditors.sampling import counts_per_class, stratified_among, stratified_indices


def test_a_prefix_of_a_class_sorted_dataset_covers_every_class() -> None:
    groups = np.repeat(np.arange(10), 20)  # ImageFolder order: class by class
    idx = stratified_indices(groups, 20, seed=0)
    assert counts_per_class(groups, idx, 10) == [2] * 10
    assert counts_per_class(groups, idx[:10], 10) == [1] * 10


def test_stratified_indices_are_distinct_seeded_and_reproducible() -> None:
    groups = np.repeat(np.arange(4), [50, 5, 30, 1])
    a = stratified_indices(groups, seed=7)
    assert sorted(a.tolist()) == list(range(groups.size))
    assert np.array_equal(a, stratified_indices(groups, seed=7))
    assert not np.array_equal(a, stratified_indices(groups, seed=8))


def test_small_classes_are_exhausted_before_large_ones_repeat_unevenly() -> None:
    groups = np.repeat(np.arange(3), [2, 10, 10])
    counts = counts_per_class(groups, stratified_indices(groups, 12, seed=0), 3)
    assert counts == [2, 5, 5]


def test_asking_for_more_than_there_is_returns_everything_and_zero_returns_nothing() -> None:
    groups = [0, 1, 1]
    assert len(stratified_indices(groups, 10, seed=0)) == 3
    assert len(stratified_indices(groups, 0, seed=0)) == 0


def test_a_stratified_subset_of_the_eligible_images_covers_every_class_among_them() -> None:
    groups = np.repeat(np.arange(3), 10)
    eligible = np.ones(30, dtype=bool)
    eligible[:8] = False  # class 0 has only two eligible images
    idx = stratified_among(groups, eligible, 6, seed=0)
    assert eligible[idx].all() and counts_per_class(groups, idx, 3) == [2, 2, 2]
    assert stratified_among(groups, np.zeros(30, dtype=bool), 6, seed=0).size == 0
