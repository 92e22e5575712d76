"""What one shard of the spurious-signal audit computes: its share of the model work, as JSON.

The audit's cost is model passes: per-image saliency (SmoothGrad and integrated gradients are many
passes per image) and the counterfactual tests (stamp, removal, colour cast, mask leakage), each a
batch over recipients drawn from the whole sample. A shard's range is a run of positions in the
audit's own sample (`shard_inputs == "all"`: every shard holds the whole sample), so the plan splits
the per-image saliency evenly, and the tests are dealt out by position: test t of T belongs to the
shard whose range holds position (2t + 1)·n / (2T), so the tests spread over the shards too.

Every shard first recomputes, identically, what is cheap and global: the sample, the clean
predictions, the removal strategy, the hinted regions and discovery's candidates (pixel statistics,
no model). Then it does only its own work and returns small summaries: per image and region the
top-q shares in the box (not the maps), integer sums for the class hotspots (exact in any order),
the maps and pixels of the few images the overlay draws, and each of its tests' statistics. A
candidate's removal test and examples are computed only when it can still be confirmed (Holm never
lowers a p-value), so the merge never needs the model.

Randomness is keyed per image (SmoothGrad noise, occlusion fills and top-q tie-breaking by position)
or per test (recipients, donors, null content, random boxes by candidate, region or class), and
saliency runs in blocks of positions fixed by n alone that the plan never cuts, so every image goes
through the same batch shapes in a shard as in a single run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel

from auditors.audits.base import ShardPartial, Work
from auditors.audits.context import AuditContext, ResolvedRegion
from auditors.audits.spurious_signal.box_saliency import area_baseline
from auditors.audits.spurious_signal.config import SpuriousConfig
from auditors.audits.spurious_signal.counterfactual import (
    choose_removal_strategy,
    mask_shape_leakage,
)
from auditors.audits.spurious_signal.discover import (
    Candidates,
    DiscoverySettings,
    candidate_matched,
    candidate_removal,
    candidate_stamp,
    colour_classes,
    could_confirm,
    find_candidates,
    global_classes,
    global_test,
    region_test,
    signature_summary,
)
from auditors.audits.spurious_signal.findings import example_data
from auditors.audits.spurious_signal.located import located_tests
from auditors.audits.spurious_signal.lowlevel import lowlevel_tests
from auditors.audits.spurious_signal.moving import motif_summary, motif_test
from auditors.audits.spurious_signal.nulls import Probe
from auditors.audits.spurious_signal.pattern import pattern_tests
from auditors.audits.spurious_signal.saliency_pass import (
    SaliencySummary,
    region_artifact,
    region_positions,
    saliency_summary,
)
from auditors.engine import applicable_strategies, model_device, plain_logits


def sample_index(n_images: int, n: int, seed: int) -> list[int]:
    """The audit's own sample: `n` of the context's images drawn at random (not by class: discovery
    compares classes by their own frequency in the data), sorted, the same in every shard."""
    if n_images <= n:
        return list(range(n_images))
    drawn = torch.randperm(n_images, generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return [int(i) for i in drawn]


class RegionSummary(BaseModel):
    """A hinted region as every shard resolves it (the merge has no context to resolve it again)."""

    name: str
    box: list[int]
    image_index: int | None
    has_artifact: bool
    baseline: float


class DiscoverySummary(BaseModel):
    """Discovery's candidates and colour-cast classes: pixel statistics every shard computes alike."""

    candidates: list[dict[str, Any]]
    motifs: list[dict[str, Any]] = []  # marks that move (`motif`, `moving`)
    content_null: dict[str, Any]
    untested_classes: list[str]
    global_classes: list[int]
    colour_z: dict[int, float] = {}  # the colour-cast screen of every class screened
    colour_resolution: dict[int, float] = {}  # the smallest whole-class cast the screen shows


class SpuriousPartial(ShardPartial):
    """What one shard sends to the merge: the settings every shard resolves alike (`agreed`), the
    clean predictions of its positions, their saliency summaries, and the tests dealt to it
    (`kind:index` -> the test's statistics)."""

    agreed: ClassVar[tuple[str, ...]] = (
        "height",
        "width",
        "patch_size",
        "strategy",
        "strategy_bias",
        "top_k",
        "regions",
        "discovery",
    )

    height: int
    width: int
    patch_size: int
    strategy: str
    strategy_bias: dict[str, dict[str, float | int]]
    top_k: int
    regions: list[RegionSummary]
    pred: list[int]
    confidence: list[float]
    labels: list[int] | None
    saliency: SaliencySummary
    tests: dict[str, Any]
    discovery: DiscoverySummary | None = None


@dataclass
class Setup:
    """What every shard recomputes the same way from the whole context."""

    seed: int
    index: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor | None
    pred: torch.Tensor
    confidence: torch.Tensor
    patch: int
    strategy: str
    bias: dict[str, dict[str, float | int]]
    regions: list[ResolvedRegion]
    settings: DiscoverySettings
    probe: Probe
    found: Candidates | None
    tests: list[tuple[str, int]]
    max_lowlevel: int = 6  # class statistics the low-level test takes to the model
    max_pattern: int = 2  # class patterns the pattern test takes to the model
    max_located: int = 2  # class boxes the located test takes to the model

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    def owner(self, t: int) -> int:
        """The position whose shard runs test `t`."""
        return (2 * t + 1) * self.n // (2 * len(self.tests))


def settings_of(config: SpuriousConfig) -> DiscoverySettings:
    return DiscoverySettings(
        alpha=config.alpha,
        min_flip=config.min_flip,
        min_group=config.min_group,
        n_perm=config.n_permutations,
        max_recipients=config.max_recipients,
        max_candidates=config.max_candidates,
        n_random_boxes=config.n_random_boxes,
        global_test=config.global_test,
        moving_test=config.moving_test,
    )


def setup(ctx: AuditContext, config: SpuriousConfig, patch: int, seed: int, picked: list[int]) -> Setup:
    height, width = ctx.image_size
    regions = [*ctx.regions, *(ResolvedRegion.of(r, height, width) for r in config.regions)]
    device = model_device(ctx.model)
    ctx.model.eval()
    index = torch.tensor(picked, dtype=torch.long)
    images = ctx.images[index].to(device).float()
    labels = ctx.labels[index].to(device) if ctx.labels is not None else None
    ctx.report(0.02, "choosing the removal strategy")
    if config.strategy is None:
        strategy, bias = choose_removal_strategy(
            ctx.model, images, mean=ctx.mean, std=ctx.std, patch_size=patch, seed=seed
        )
    else:
        strategy, bias = config.strategy, {}
    clean_probs = plain_logits(ctx.model, images, mean=ctx.mean, std=ctx.std).float().softmax(1)
    confidence, pred = clean_probs.max(1)
    settings = settings_of(config)
    probe = Probe(ctx.model, ctx.mean, ctx.std, strategy, seed)
    found = None
    tests = [("region", i) for i, r in enumerate(regions) if region_positions(r, index)]
    if config.discovery:
        ctx.report(0.05, "discovery: class signatures")
        found = find_candidates(images, pred, labels, ctx.class_names, settings, seed)
        tests += [("candidate", j) for j in range(len(found.signatures))]
        tests += [("motif", j) for j in range(len(found.motifs))]
        if settings.global_test:
            tests += [("global", c) for c in colour_classes(found, settings)]
        if config.lowlevel_test:  # one test: the screen needs every class at once
            tests.append(("lowlevel", 0))
        if config.pattern_test:  # likewise: a class's pattern is measured against the others'
            tests.append(("pattern", 0))
        if config.located_test:  # likewise: a class's gradient map is measured against the others'
            tests.append(("located", 0))
    if ctx.object_masks is not None:
        tests.append(("leakage", 0))
    return Setup(
        seed=seed,
        index=index,
        images=images,
        labels=labels,
        pred=pred,
        confidence=confidence,
        patch=patch,
        strategy=strategy,
        bias=bias,
        regions=regions,
        settings=settings,
        probe=probe,
        found=found,
        tests=tests,
        max_lowlevel=config.max_lowlevel_tests,
        max_pattern=config.max_pattern_tests,
        max_located=config.max_located_tests,
    )


def _test(ctx: AuditContext, s: Setup, kind: str, i: int) -> dict[str, Any]:
    """One test of the deal (a hinted region, a discovery candidate, a class's colour cast, leakage)."""
    probe, cfg = s.probe, s.settings
    if kind == "region":
        region = s.regions[i]
        out = region_test(
            probe, s.images, s.pred, s.labels, ctx.class_names, region.box, region_artifact(s, region), cfg
        )
        ex = None
        if out.get("stamp_confirmed"):
            ex = example_data(probe, s.images, s.labels, out["_signature"], out["_stamp"], ctx.class_names)
        return {"result": {k: v for k, v in out.items() if not k.startswith("_")}, "examples": ex}
    if kind == "candidate":
        assert s.found is not None
        sig = s.found.signatures[i]
        t = candidate_stamp(probe, s.images, s.pred, s.labels, sig, i, cfg)
        out = {k: t[k] for k in ("flip", "null_flip", "gain", "n", "p_value")}
        if could_confirm(t, cfg):
            out["matched"] = candidate_matched(probe, s.images, sig, t, i)
            out["removal"] = candidate_removal(probe, s.images, s.found.groups, sig, cfg)
            out["examples"] = example_data(probe, s.images, s.labels, sig, t, ctx.class_names)
        return out
    if kind == "motif":
        assert s.found is not None
        return motif_test(probe, s.images, s.pred, s.labels, s.found.motifs[i], i, cfg, ctx.class_names)
    if kind == "global":
        assert s.found is not None
        return global_test(probe, s.images, s.found.groups, s.pred, s.labels, i, cfg)
    if kind in ("lowlevel", "pattern", "located"):
        assert s.found is not None
        data = (probe, s.images, s.found.groups, s.pred, s.labels, global_classes(s.found.counts, cfg))
        if kind == "lowlevel":
            return lowlevel_tests(*data, max_tests=s.max_lowlevel, max_images=cfg.max_recipients)
        if kind == "located":
            return located_tests(
                *data,
                max_tests=s.max_located,
                max_images=cfg.max_recipients,
                class_names=ctx.class_names,
                min_flip=cfg.min_flip,
                alpha=cfg.alpha,
            )
        return pattern_tests(
            *data,
            max_tests=s.max_pattern,
            max_images=cfg.max_recipients,
            class_names=ctx.class_names,
            min_flip=cfg.min_flip,
        )
    assert ctx.object_masks is not None
    masks = ctx.object_masks[s.index].to(s.images.device)
    ref = s.labels if s.labels is not None else s.pred
    strategies = [
        x
        for x in applicable_strategies(ctx.model)
        if x in ("layer_mask", "token_drop", "black", "mean", "blur")
    ]
    return mask_shape_leakage(
        ctx.model, s.images, masks, ref, mean=ctx.mean, std=ctx.std, strategies=strategies, seed=s.seed
    )


def run_shard(ctx: AuditContext, config: SpuriousConfig, work: Work, patch: int) -> SpuriousPartial:
    """Shard `work.positions` of the plan: its saliency summaries and its tests."""
    s = setup(ctx, config, patch, work.seed, list(work.picked))
    r = work.positions
    height, width = ctx.image_size
    saliency = saliency_summary(ctx, config, s, r)
    tests: dict[str, Any] = {}
    for t, (kind, i) in enumerate(s.tests):
        if s.owner(t) in r:
            ctx.report(0.7 + 0.25 * t / len(s.tests), f"{kind} test {i}")
            tests[f"{kind}:{i}"] = _test(ctx, s, kind, i)
    return SpuriousPartial(
        height=height,
        width=width,
        patch_size=s.patch,
        strategy=s.strategy,
        strategy_bias=s.bias,
        top_k=max(1, round(config.q * height * width)),
        regions=[
            RegionSummary(
                name=g.name,
                box=list(g.box),
                image_index=g.image_index,
                has_artifact=g.artifact is not None,
                baseline=area_baseline(g.box, height, width),
            )
            for g in s.regions
        ],
        pred=s.pred[r.start : r.stop].tolist(),
        confidence=s.confidence[r.start : r.stop].tolist(),
        labels=None if s.labels is None else s.labels[r.start : r.stop].tolist(),
        saliency=saliency,
        tests=tests,
        discovery=None
        if s.found is None
        else DiscoverySummary(
            candidates=[signature_summary(g, s.found.counts) for g in s.found.signatures],
            motifs=[motif_summary(m, s.found.counts, height, width) for m in s.found.motifs],
            content_null=s.found.content_null,
            untested_classes=s.found.untested_classes,
            global_classes=[i for kind, i in s.tests if kind == "global"],
            colour_z=s.found.colour_z,
            colour_resolution=s.found.colour_resolution,
        ),
    )
