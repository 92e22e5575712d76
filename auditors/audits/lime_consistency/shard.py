"""One shard of the LIME consistency audit: the model work for a range of positions in the audit's pick.

Every shard makes the same class-stratified pick from the whole sample, then fits LIME (every strategy
and fill, and the second seed) and runs the removal curves for its own positions only. Its partial is
plain JSON: per-image rankings, removal outcomes and Spearman correlations, plus the inputs and
coefficients the artifacts need (a compressed `.npz`, base64). Randomness is keyed by an image's
position in the pick (perturbations, noise fills, random orders), and the removal curves always run
the same k = 1..k_max for a given config and input size, so a shard computes for an image exactly what
a single run does; `merge.judge` turns the partials into the verdict.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel

from auditors.audits.base import ShardPartial, Work
from auditors.audits.context import AuditContext
from auditors.audits.lime_consistency.config import LimeConfig
from auditors.audits.lime_consistency.metrics import random_rankings, spearman
from auditors.audits.partials import pack_arrays
from auditors.audits.plots import map_inputs
from auditors.engine import NATIVE, applicable_strategies, parse_strategy, plain_logits
from auditors.methods.lime import LimeFit, feature_logits, lime_fit, patch_grid, ranking
from auditors.methods.removal import REMEDY_FILLS
from auditors.sampling import stratified_indices

SALT = 0x11E  # the audit's own stratified draw
RANDOM_ORDER_SEED = 7  # seed + 7: the random orders of the removal test


def strategies_for(native: list[str], strategies: list[str] | None, fills: list[str]) -> list[str]:
    """The strategies LIME runs under: as configured, else the removal rule (auditors.methods.removal):
    the model's native missingness (`native`), else blur, never a constant fill."""
    chosen = list(strategies or (native[:1] or list(REMEDY_FILLS[:1])))
    for s in (*chosen, *fills):
        parse_strategy(s)
    return chosen


def pick(ctx: AuditContext, n_images: int, seed: int) -> list[int]:
    """The audit's images (indices into the sample), stratified by class group: each image's label, or
    its clean prediction when the dataset has none."""
    if ctx.labels is not None:
        groups = ctx.labels.cpu().numpy()
    else:
        groups = plain_logits(ctx.model, ctx.images, mean=ctx.mean, std=ctx.std).argmax(1).cpu().numpy()
    return [int(i) for i in stratified_indices(groups, n_images, seed=seed, salt=SALT)]


def removal_ks(features: str, max_k: int, image_size: tuple[int, int], patch: int) -> list[int]:
    """The k the removal curves run: 1..min(max_k, F-1) on a grid (F is fixed by the input size), and
    1..max_k for superpixels (the merge cuts them at the smallest image's F-1)."""
    if features == "grid":
        n_feat = (image_size[0] // patch) * (image_size[1] // patch)
        return list(range(1, max(1, min(max_k, n_feat - 1)) + 1))
    return list(range(1, max_k + 1))


def removal_outcomes(
    ctx: AuditContext,
    images: torch.Tensor,
    order: torch.Tensor,
    fit: LimeFit,
    ks: list[int],
    strategy: str,
    clean: torch.Tensor,
    seed: int,
    offset: int,
    patch: int,
) -> list[list[int]]:
    """Per image: 1 where the prediction is unchanged after removing the first k features of `order`,
    for each k in ks (the mean over images is the removal curve)."""
    b, f = order.shape
    z = torch.ones(b, len(ks), f, dtype=torch.bool)
    for j, k in enumerate(ks):
        z[torch.arange(b).unsqueeze(1), j, order[:, :k].cpu()] = False
    logits = feature_logits(
        ctx.model,
        images,
        z,
        fit.segments,
        mean=ctx.mean,
        std=ctx.std,
        strategy=strategy,
        grid=patch_grid(fit.segments, patch),
        seed=seed,
        offset=offset,
    )
    same = logits.argmax(-1) == clean.to(logits.device).view(-1, 1)
    return same.int().cpu().tolist()


def _present(order: torch.Tensor, n_features: torch.Tensor) -> list[list[int]]:
    """Each image's ranking of its own features (the padding the batch added is dropped)."""
    return [row[: int(n)].tolist() for row, n in zip(order.cpu(), n_features.tolist(), strict=True)]


def reference_fit(
    ctx: AuditContext, images: torch.Tensor, strategy: str, common: dict[str, Any], seed: int
) -> tuple[torch.Tensor, str]:
    """The reference model's LIME ranking, under `strategy` when it applies to that model, else the
    reference's own native missingness (e.g. token_drop for a ResNet reference), else black."""
    ref = ctx.reference_model
    assert ref is not None
    names = applicable_strategies(ref)
    native = [s for s in names if s in NATIVE]
    if strategy in names or parse_strategy(strategy).is_pixel_fill:
        strat = strategy
    else:
        strat = native[0] if native else "black"
    fit = lime_fit(ref, images, strategy=strat, seed=seed, **common)
    return ranking(fit.coef, fit.n_features), strat


class Removal(BaseModel):
    """Per image of the shard, whether its prediction is unchanged after removing its top k features
    (k = 1..), in its own LIME order and in a random order."""

    own: list[list[int]]
    random: list[list[int]]


class Reference(BaseModel):
    strategy: str
    outcomes: list[list[int]]


class LimePartial(ShardPartial):
    """What one shard sends to the merge: the settings every shard resolves alike (`agreed`), then per
    image of its range the class group, feature count, rankings, removal outcomes and Spearman
    correlation, and the inputs and coefficients the figures need (`arrays`, packed `.npz`)."""

    agreed: ClassVar[tuple[str, ...]] = ("patch_size", "strategies", "native", "runs", "ks")

    patch_size: int
    strategies: list[str]
    native: list[str]
    runs: list[str]
    ks: list[int]
    groups: list[int]
    n_features: list[int]
    orders: dict[str, list[list[int]]]
    order_second_seed: list[list[int]]
    spearman: list[float]
    removal: dict[str, Removal]
    reference: Reference | None
    arrays: str


def run_shard(ctx: AuditContext, cfg: LimeConfig, work: Work, patch: int) -> LimePartial:
    """The partial of positions `work.positions` in the pick (see the module docstring)."""
    native = [s for s in applicable_strategies(ctx.model) if s in NATIVE]
    strategies = strategies_for(native, cfg.strategies, cfg.fills)
    primary = strategies[0]
    positions, seed = work.positions, work.seed
    index = np.asarray(work.picked, dtype=np.int64)
    chosen = torch.from_numpy(index[positions.start : positions.stop])
    images = ctx.images[chosen]
    clean = plain_logits(ctx.model, images, mean=ctx.mean, std=ctx.std).argmax(1)
    common: dict[str, Any] = dict(
        mean=ctx.mean,
        std=ctx.std,
        features=cfg.features,
        patch_size=patch,
        n_samples=cfg.n_samples,
        offset=positions.start,
    )
    runs = [*strategies, *(f for f in cfg.fills if f not in strategies)]
    steps = len(runs) + 2 + (1 if ctx.reference_model is not None else 0)
    fits: dict[str, LimeFit] = {}
    for i, s in enumerate(runs):
        ctx.report(i / steps, f"LIME under {s}")
        fits[s] = lime_fit(ctx.model, images, strategy=s, target=clean, seed=seed, **common)
    n_feat = fits[primary].n_features
    orders = {s: ranking(fits[s].coef, n_feat) for s in runs}
    ks = removal_ks(cfg.features, cfg.max_k, ctx.image_size, patch)
    rand_orders = random_rankings(n_feat, seed + RANDOM_ORDER_SEED, positions)
    ctx.report(len(runs) / steps, "top-k removal test")
    removal: dict[str, Removal] = {}
    rest = (clean, seed, positions.start, patch)
    for s in strategies:
        removal[s] = Removal(
            own=removal_outcomes(ctx, images, orders[s], fits[s], ks, s, *rest),
            random=removal_outcomes(ctx, images, rand_orders, fits[s], ks, s, *rest),
        )
    reference: Reference | None = None
    if ctx.reference_model is not None:
        ctx.report((len(runs) + 1) / steps, "reference model")
        ref_order, ref_strategy = reference_fit(ctx, images, primary, common, seed)
        outcome = removal_outcomes(ctx, images, ref_order, fits[primary], ks, primary, *rest)
        reference = Reference(strategy=ref_strategy, outcomes=outcome)
    ctx.report((steps - 1) / steps, "seed stability")
    fit2 = lime_fit(ctx.model, images, strategy=primary, target=clean, seed=seed + 1, **common)
    first = fits[primary]
    labels = None if ctx.labels is None else ctx.labels[chosen]
    arrays = {f"coef_{i}": fits[s].coef.cpu().numpy().astype(np.float32) for i, s in enumerate(runs)}
    arrays["segments"] = first.segments.cpu().numpy().astype(np.int32)
    # Row 0 of every perturbation set keeps every feature: its y is the clean confidence.
    arrays |= map_inputs(images, first.target, labels=labels, confidence=first.y[:, 0])
    # The class group of each image: its label, else its clean prediction (as the pick grouped it).
    groups = ctx.labels[chosen].cpu().numpy() if ctx.labels is not None else clean.cpu().numpy()
    return LimePartial(
        patch_size=patch,
        strategies=strategies,
        native=native,
        runs=runs,
        ks=ks,
        groups=[int(g) for g in groups],
        n_features=[int(n) for n in n_feat.tolist()],
        orders={s: _present(orders[s], n_feat) for s in runs},
        order_second_seed=_present(ranking(fit2.coef, n_feat), n_feat),
        spearman=spearman(first.coef, fit2.coef, n_feat),
        removal=removal,
        reference=reference,
        arrays=pack_arrays(arrays),
    )
