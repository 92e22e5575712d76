"""Per-image deterministic randomness, and the image ranges a sharded audit splits a dataset into.

A sharded audit and a single run must produce the same report, which they can only do if an image's
random draws do not depend on which shard (or batch) it is in. So randomness here is drawn per image
(`per_image_uniform`), keyed by (seed, salt, image index), never from one generator over the batch;
`even_ranges` plans the shards and `check_tiling` refuses partials that do not cover the images once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def even_ranges(n_images: int, n_shards: int) -> list[range]:
    """`n_shards` contiguous ranges covering [0, n) whose sizes differ by at most one (none empty)."""
    if n_images <= 0:
        return []
    n_shards = max(1, min(n_shards, n_images))
    base, extra = divmod(n_images, n_shards)
    out, start = [], 0
    for i in range(n_shards):
        stop = start + base + (1 if i < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


def check_tiling(partials: Sequence[dict[str, Any]], n_images: int | None = None) -> list[dict[str, Any]]:
    """Partials sorted by `start`; raises unless they cover [0, n) exactly once (a lost or duplicated
    shard must never merge into a plausible-looking report)."""
    ordered = sorted(partials, key=lambda p: int(p["start"]))
    pos = 0
    for p in ordered:
        if int(p["start"]) != pos or int(p["stop"]) <= pos:
            raise ValueError(f"shards do not tile the images: expected a shard at {pos}, got {p['start']}")
        pos = int(p["stop"])
    if n_images is not None and pos != n_images:
        raise ValueError(f"shards cover {pos} of {n_images} images")
    return ordered


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
