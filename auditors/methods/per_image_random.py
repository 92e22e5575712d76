"""Per-image deterministic randomness, so a sharded audit and a single run draw the same numbers.

A sharded audit and a single run must produce the same report, which they can only do if an image's
random draws do not depend on which shard (or batch) it is in. So randomness here is drawn per image
(`per_image_uniform`), keyed by (seed, salt, image index), never from one generator over the batch.
The ranges themselves are planned and checked in `auditors.audits.ranges`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective avalanche on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = (x * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        x = x ^ (x >> np.uint64(27))
        x = (x * np.uint64(0x94D049BB133111EB)) & _M64
        return x ^ (x >> np.uint64(31))


def per_image_uniform(indices: Sequence[int] | range, n: int, *, seed: int, salt: int) -> np.ndarray:
    """Uniform floats [len(indices), n] in [0, 1); row i depends only on (seed, salt, indices[i]), so
    an image draws the same numbers whatever batch or shard it is in. Counter-based and vectorised."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        key = _mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) + golden)
        key = _mix64(key ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF))
        rows = _mix64(key ^ (np.asarray(indices, dtype=np.uint64) * golden))
        cols = np.arange(1, n + 1, dtype=np.uint64) * golden
        bits = _mix64(rows[:, None] + cols[None, :])
    return np.asarray((bits >> np.uint64(11)).astype(np.float64) * 2.0**-53)
