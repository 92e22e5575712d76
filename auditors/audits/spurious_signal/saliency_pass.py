"""The saliency half of a spurious-signal shard: per block of its positions, every method's maps,
summarised per image and hinted region (the top-q share inside the box), plus integer sums for the
class hotspots (exact in any order) and the maps and pixels of the few images the overlay draws.

Saliency runs in blocks of positions fixed by the sample size alone (`block_size`), which the plan
never cuts, so every image goes through the same batch shapes in a shard as in a single run.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from pydantic import BaseModel

from auditors.audits.context import AuditContext, ResolvedRegion
from auditors.audits.partials import pack_arrays
from auditors.audits.spurious_signal.config import SpuriousConfig
from auditors.audits.spurious_signal.counterfactual import carries_artifact
from auditors.methods.saliency import box_share, saliency_maps, top_q_mask


class Sample(Protocol):
    """What the saliency pass reads of a shard's set-up (`shard.Setup`), named here so the two
    modules do not import each other."""

    index: torch.Tensor
    images: torch.Tensor
    pred: torch.Tensor
    regions: list[ResolvedRegion]
    patch: int
    strategy: str
    seed: int

    @property
    def n(self) -> int: ...


HOT_SCALE = 2.0**32  # fixed point of the hotspot sums: integer sums are the same in any order
# Class hotspots are summed at most this many pixels a side: a 224 px map per class present would make
# a shard's partial of a many-class model hundreds of MB, and a thumbnail row shows no more anyway.
HOT_SIDE = 56


def block_size(n: int) -> int:
    """Images per saliency batch, from the sample size alone: one image for small samples (so a
    shard can be any size), up to 64 on large ones (the GPU stays busy)."""
    return max(1, min(64, n // 32))


class RegionSaliency(BaseModel):
    """A region's saliency on this shard's positions: per method, the top-q share inside the box of
    each image; `has`: whether each image carries the region's artifact (None: no artifact to look for)."""

    positions: list[int]
    has: list[bool] | None
    shares: dict[str, list[float]]


class SaliencySummary(BaseModel):
    regions: list[RegionSaliency]
    arrays: str  # `partials.pack_arrays`: hotspot sums, the drawn images and their maps


def region_positions(region: ResolvedRegion, index: torch.Tensor) -> list[int]:
    """Positions in the sample whose saliency a region is judged on (a per-image region: its image)."""
    if region.image_index is None:
        return list(range(index.numel()))
    return (index == region.image_index).nonzero().flatten().tolist()


def region_artifact(s: Sample, region: ResolvedRegion) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The region's artifact; a per-image region without one stamps that image's own box content."""
    if region.artifact is not None:
        return (region.artifact, region.artifact_alpha)
    if region.image_index is not None:
        x, y, w, h = region.box
        pos = region_positions(region, s.index)[0]
        return (s.images[pos, :, y : y + h, x : x + w].cpu(), None)
    return None


def saliency_summary(ctx: AuditContext, config: SpuriousConfig, s: Sample, r: range) -> SaliencySummary:
    """Per block of positions in `r`: the maps of every method, summarised per image and region."""
    b = block_size(s.n)
    per_region: list[RegionSaliency] = []
    for region in s.regions:
        mine = [p for p in region_positions(region, s.index) if p in r]
        art = region_artifact(s, region) if mine else None
        has = None if art is None else carries_artifact(s.images[mine], region.box, *art).tolist()
        per_region.append(RegionSaliency(positions=mine, has=has, shares={m: [] for m in config.methods}))
    hot: dict[int, list[Any]] = {}
    drawn: dict[str, list[np.ndarray]] = {m: [] for m in config.methods}
    start = r.start
    while start < r.stop:
        stop = min(r.stop, (start // b + 1) * b)
        ctx.report(0.1 + 0.6 * (start - r.start) / max(1, len(r)), "saliency")
        x, target = s.images[start:stop], s.pred[start:stop]
        for k, method in enumerate(config.methods):
            maps = saliency_maps(
                ctx.model,
                x,
                method,
                mean=ctx.mean,
                std=ctx.std,
                target=target,
                n_samples=config.n_samples,
                noise=config.noise,
                steps=config.steps,
                patch_size=s.patch,
                strategy=s.strategy,
                batch_size=b,
                seed=s.seed,
                offset=start,
            )
            top, _ = top_q_mask(maps, config.q, s.seed, offset=start)
            for region, entry in zip(s.regions, per_region, strict=True):
                rows = [p - start for p in entry.positions if start <= p < stop]
                if rows:
                    entry.shares[method] += box_share(top[rows], region.box).tolist()
            n_draw = max(0, min(stop, config.n_overlays) - start)
            if n_draw:
                drawn[method].append(maps[:n_draw].detach().cpu().numpy().astype(np.float16))
            if k == 0:
                _add_hotspots(hot, maps, x, target)
        start = stop
    arrays: dict[str, np.ndarray] = {}
    if hot:
        classes = sorted(hot)
        arrays["hot_classes"] = np.array(classes, dtype=np.int64)
        arrays["hot_count"] = np.array([hot[c][0] for c in classes], dtype=np.int64)
        arrays["hot_sum"] = np.stack([hot[c][1] for c in classes])
        arrays["hot_pixels"] = np.stack([hot[c][2] for c in classes])
    for method, parts in drawn.items():
        if parts:
            arrays[f"map_{method}"] = np.concatenate(parts)
    n_draw = max(0, min(r.stop, config.n_overlays) - r.start)
    if n_draw:
        arrays["drawn_images"] = _uint8(s.images[r.start : r.start + n_draw])
    return SaliencySummary(regions=per_region, arrays=pack_arrays(arrays))


def _uint8(images: torch.Tensor) -> np.ndarray:
    return np.asarray((images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy())


def _add_hotspots(hot: dict[int, list[Any]], maps: torch.Tensor, x: torch.Tensor, pred: torch.Tensor) -> None:
    """Per predicted class: image count, fixed-point sum of the maps normalised to sum 1, and the sum
    of the uint8 pixels (the class's mean image); integers, so the shards' sums add up exactly."""
    for i in range(maps.shape[0]):
        m = _thumbnail(maps[i].detach().double().cpu()[None])[0]
        norm = m / max(float(m.sum()), 1e-12)
        c = int(pred[i])
        entry = hot.setdefault(c, [0, 0, 0])
        entry[0] += 1
        entry[1] = entry[1] + (norm * HOT_SCALE).round().to(torch.int64).numpy()
        entry[2] = entry[2] + _uint8(_thumbnail(x[i].detach().double().cpu())).astype(np.int64)


def _thumbnail(x: torch.Tensor) -> torch.Tensor:
    """[C,H,W] averaged down to at most HOT_SIDE a side (unchanged when already that small)."""
    h, w = x.shape[-2:]
    if max(h, w) <= HOT_SIDE:
        return x
    scale = HOT_SIDE / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return torch.nn.functional.adaptive_avg_pool2d(x[None], size)[0]
