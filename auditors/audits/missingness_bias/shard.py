"""What one shard of the missingness-bias audit computes: the clean prediction of each of its images
and the prediction under every strategy at every removal fraction.

Every image is independent of the others (`shard_inputs == "range"`), and an image's random patches
depend only on (seed, fraction, image index) (`image_keep`), so a shard holding only its own images
computes exactly the rows a single run computes for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from auditors.audits.base import ShardPartial, Work
from auditors.audits.context import AuditContext
from auditors.audits.missingness_bias.config import MissingnessBiasConfig
from auditors.engine import applicable_strategies, masked_logits, parse_strategy, plain_logits
from auditors.methods.per_image_random import per_image_uniform


class MissingnessPartial(ShardPartial):
    """A shard's predictions: `preds[strategy][fraction]` per image of its range, in image order."""

    agreed: ClassVar[tuple[str, ...]] = ("strategies", "fractions", "patch_size", "n_features")

    strategies: list[str]
    fractions: list[float]
    patch_size: int
    n_features: int
    clean: list[int]
    labels: list[int] | None
    preds: dict[str, list[list[int]]]


def image_keep(
    indices: range | Sequence[int], grid: tuple[int, int], fraction: float, seed: int, salt: int
) -> torch.Tensor:
    """Keep masks [N,h,w] removing round(fraction * h*w) random patches per image. Image i's mask
    depends only on (seed, salt, i), so it is the same in a single run and in any shard."""
    h, w = grid
    f = h * w
    k = round(fraction * f)
    order = torch.from_numpy(
        per_image_uniform(indices, f, seed=seed, salt=salt).argsort(axis=1, kind="stable")
    )
    keep = torch.ones(len(indices), f, dtype=torch.bool)
    keep.scatter_(1, order[:, :k], False)
    return keep.view(len(indices), h, w)


def random_keep(n_images: int, grid: tuple[int, int], fraction: float, seed: int, salt: int) -> torch.Tensor:
    """`image_keep` for images 0..n-1."""
    return image_keep(range(n_images), grid, fraction, seed, salt)


def resolve(ctx: AuditContext, config: MissingnessBiasConfig, patch: int) -> tuple[list[str], list[float]]:
    """The strategies (every one that applies when the config names none) and the sorted fractions
    with 0 added; refuses fractions outside [0, 1) and a patch that does not tile the images."""
    names = config.strategies or applicable_strategies(ctx.model)
    fractions = sorted({round(float(f), 4) for f in config.fractions} | {0.0})
    if any(not 0 <= f < 1 for f in fractions):
        raise ValueError("fractions must be in [0, 1)")
    height, width = ctx.image_size
    if height % patch or width % patch:
        raise ValueError(f"patch_size {patch} does not tile {height}x{width} images")
    return [str(parse_strategy(s)) for s in names], fractions


def run_shard(ctx: AuditContext, config: MissingnessBiasConfig, work: Work, patch: int) -> MissingnessPartial:
    """Clean and masked predictions for the images of `work.positions` (indices of the dataset)."""
    indices, seed = work.positions, work.seed
    strategies, fractions = resolve(ctx, config, patch)
    off = ctx.image_offset  # a shard's context may hold only its own images
    height, width = ctx.image_size
    grid = (height // patch, width // patch)
    images = ctx.images[indices.start - off : indices.stop - off]
    clean = plain_logits(ctx.model, images, mean=ctx.mean, std=ctx.std).argmax(1).cpu()
    keeps = [image_keep(indices, grid, f, seed, i) for i, f in enumerate(fractions)]
    preds: dict[str, list[list[int]]] = {}
    steps = len(strategies) * len(fractions)
    for si, strat in enumerate(strategies):
        rows = []
        for fi, keep in enumerate(keeps):
            ctx.report((si * len(fractions) + fi) / steps, f"{strat}: {fractions[fi]:.0%} removed")
            logits = masked_logits(
                ctx.model,
                images,
                keep,
                strat,
                mean=ctx.mean,
                std=ctx.std,
                patch_size=patch,
                seed=seed,
                offset=indices.start,
            )
            rows.append(logits.argmax(1).cpu().tolist())
        preds[strat] = rows
    labels = ctx.labels
    return MissingnessPartial(
        strategies=strategies,
        fractions=fractions,
        patch_size=patch,
        n_features=grid[0] * grid[1],
        clean=clean.tolist(),
        labels=None if labels is None else labels[indices.start - off : indices.stop - off].tolist(),
        preds=preds,
    )
