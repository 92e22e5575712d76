"""Which images an audit looks at: seeded, class-stratified and shuffled, never a prefix.

Datasets often list images class by class (ImageFolder does), so `images[:16]` can be one class, and an
audit that looks at one class cannot find a shortcut planted in another. Every audit that works on a
subset of the sample takes it from `stratified_indices`, whose every prefix is as balanced over the
classes as the data allow, so "the first k" of its answer is still a fair subset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_indices(
    groups: Sequence[int] | np.ndarray, n: int | None = None, *, seed: int, salt: int = 0
) -> np.ndarray:
    """Up to `n` indices into `groups` (all of them when `n` is None), drawn round-robin over the
    groups in a seeded random order, each group's members shuffled too.

    `groups` is the class of each image: its label when the dataset has labels, else the model's clean
    prediction. Every prefix of the result holds each group at most once more than any other group that
    still has members left, so a caller may truncate it freely.
    """
    g = np.asarray(groups, dtype=np.int64).reshape(-1)
    total = g.size if n is None else max(0, min(int(n), g.size))
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, salt & 0xFFFFFFFF, 0x5A4D])
    classes = np.unique(g)
    rng.shuffle(classes)
    members = [rng.permutation(np.flatnonzero(g == c)) for c in classes]
    out: list[int] = []
    depth = 0
    while len(out) < total:
        for m in members:
            if depth < m.size:
                out.append(int(m[depth]))
                if len(out) == total:
                    break
        depth += 1
    return np.asarray(out, dtype=np.int64)


def counts_per_class(
    groups: Sequence[int] | np.ndarray, indices: Sequence[int] | np.ndarray, k: int
) -> list[int]:
    """How many of `indices` fall in each of `k` classes: the n per class a report shows."""
    g = np.asarray(groups, dtype=np.int64).reshape(-1)
    sel = g[np.asarray(indices, dtype=np.int64)]
    return [int(c) for c in np.bincount(sel, minlength=k)[:k]]


def stratified_among(
    groups: Sequence[int] | np.ndarray,
    eligible: Sequence[bool] | np.ndarray,
    n: int | None = None,
    *,
    seed: int,
    salt: int = 0,
) -> np.ndarray:
    """`stratified_indices` restricted to the `eligible` images (e.g. the confident ones), as indices
    into the whole of `groups`."""
    pool = np.flatnonzero(np.asarray(eligible, dtype=bool).reshape(-1))
    g = np.asarray(groups, dtype=np.int64).reshape(-1)
    return pool[stratified_indices(g[pool], n, seed=seed, salt=salt)]
