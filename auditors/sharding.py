"""Shardable audits: split one audit over image ranges, run the ranges anywhere, merge the partials.

An auditor opts in by implementing `plan_shards`, `run_shard` and `merge` (the `Shardable` protocol).
A partial is plain JSON (lists of ints and floats), so a worker can store it in a database row and a
different process can merge it. The auditor's own `run` should be `run_shard` over every image plus
`merge`, so the sharded and the single-process report come from one code path and can only differ if
per-image results depend on which shard an image is in. That is why randomness here is drawn per image
(`per_image_uniform`), keyed by (seed, salt, image index), never from one generator over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from auditors.report import AuditResult

if TYPE_CHECKING:
    from auditors.context import AuditContext

Partial = dict[str, Any]

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class ShardMeta:
    """What `merge` needs besides the partials: no model and no images, so a merge is cheap anywhere."""

    class_names: list[str]
    out_dir: Path
    seed: int
    n_images: int

    @classmethod
    def from_context(cls, ctx: AuditContext) -> ShardMeta:
        return cls(list(ctx.class_names), ctx.out_dir, ctx.seed, ctx.n_images)


@runtime_checkable
class Shardable(Protocol):
    def plan_shards(self, n_images: int, config: Any, n_shards: int) -> list[range]: ...

    def run_shard(self, ctx: AuditContext, config: Any, indices: range) -> Partial: ...

    def merge(self, meta: ShardMeta, config: Any, partials: Sequence[Partial]) -> AuditResult: ...


def is_shardable(auditor: object) -> bool:
    return isinstance(auditor, Shardable)


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


def check_tiling(partials: Sequence[Partial], n_images: int | None = None) -> list[Partial]:
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


def run_sharded(auditor: Shardable, ctx: AuditContext, config: Any, n_shards: int) -> AuditResult:
    """Run an audit shard by shard in this process and merge: what the workers do, minus Celery."""
    ranges = auditor.plan_shards(ctx.n_images, config, n_shards)
    partials = [auditor.run_shard(ctx, config, r) for r in ranges]
    return auditor.merge(ShardMeta.from_context(ctx), config, partials)


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
