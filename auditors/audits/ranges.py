"""The ranges a sharded audit splits its work into, and the check that partials cover it once.

Pure Python (no torch, no numpy): the worker plans shards and the base class checks them without
importing the computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def even_ranges(n: int, n_shards: int) -> list[range]:
    """`n_shards` contiguous ranges covering [0, n) whose sizes differ by at most one (none empty)."""
    if n <= 0:
        return []
    n_shards = max(1, min(n_shards, n))
    base, extra = divmod(n, n_shards)
    out, start = [], 0
    for i in range(n_shards):
        stop = start + base + (1 if i < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


def block_ranges(n: int, n_shards: int, block: int) -> list[range]:
    """Like `even_ranges`, but cut only between whole blocks of `block` positions (a batch an audit
    must not split, so every position goes through the same batch shapes in any plan)."""
    blocks = even_ranges(-(-n // block), n_shards)
    return [range(r.start * block, min(n, r.stop * block)) for r in blocks]


def check_tiling(partials: Sequence[dict[str, Any]], n: int | None = None) -> list[dict[str, Any]]:
    """Partials sorted by `start`; raises unless they cover [0, n) exactly once (a lost or duplicated
    shard must never merge into a plausible-looking report)."""
    ordered = sorted(partials, key=lambda p: int(p["start"]))
    pos = 0
    for p in ordered:
        if int(p["start"]) != pos or int(p["stop"]) <= pos:
            raise ValueError(f"shards do not tile the images: expected a shard at {pos}, got {p['start']}")
        pos = int(p["stop"])
    if n is not None and pos != n:
        raise ValueError(f"shards cover {pos} of {n} images")
    return ordered
