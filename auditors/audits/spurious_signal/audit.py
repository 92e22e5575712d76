"""Spurious-signal audit: does the model use a watermark, a ruler or a border instead of the object?

docs/audits.md, "Spurious signals" (PAIR explorable 2022; Zhou et al. 2021; Adebayo et al. 2022). For each suspected region
(from the config or `ctx.regions`): the share of the top-q salient pixels in the box against its area,
then the counterfactual tests that saliency cannot replace (stamp the artifact on other classes; remove
the box vs random boxes). Without a hint, discovery ranks fixed places that decide one class across many
images and confirms each the same way. A region is *confirmed* when the stamp test flips other classes
toward it and a second line of evidence agrees (removal beats random boxes, or saliency flags the box);
discovery candidates need the stamp and the removal test, and content that repeats across the images the
box decides (and, with object masks, a box that is not mostly the object): pasting an object's own
place flips images too. Any confirmed region fails the audit.
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch
from pydantic import Field, field_validator

from auditors.audits.base import Audit, AuditConfig
from auditors.audits.context import AuditContext, ResolvedRegion
from auditors.audits.spurious_signal.artifacts import write_artifacts
from auditors.audits.spurious_signal.counterfactual import Box, choose_removal_strategy, mask_shape_leakage
from auditors.audits.spurious_signal.discovery import (
    as_box,
    content_evidence,
    find_candidates,
    hotspot_maps,
    overlap,
)
from auditors.audits.spurious_signal.regions import (
    AuditState,
    Thresholds,
    counterfactual_evidence,
    saliency_evidence,
)
from auditors.engine import applicable_strategies, model_device, plain_logits
from auditors.methods.saliency import METHODS, saliency_maps, top_q_mask
from auditors.regions import Region
from auditors.report import Artifact, AuditResult, Finding

AUDIT = "spurious_signal"


class SpuriousConfig(AuditConfig):
    regions: list[Region] = Field(default_factory=list)
    methods: list[str] = Field(
        default_factory=lambda: ["gradient_squared", "smoothgrad", "integrated_gradients"]
    )
    q: float = Field(default=0.005, gt=0, le=1)
    n_images: int = Field(default=256, ge=2)
    n_samples: int = Field(default=16, ge=1, description="SmoothGrad noisy copies")
    noise: float = Field(default=0.15, ge=0, description="SmoothGrad sigma, share of the [0,1] range")
    steps: int = Field(default=32, ge=2, description="integrated-gradients steps")
    patch_size: int | None = Field(
        default=None, description="occlusion box / discovery stride; None: the model's"
    )
    strategy: str | None = Field(
        default=None, description="removal strategy; None: least-biased native/blur/mean"
    )
    discovery: bool = True
    discovery_window: int | None = Field(default=None, description="discovery window side; None: 2 x patch")
    max_candidates: int = Field(default=5, ge=1)
    candidate_min_effect: float = 0.2
    min_content_consistency: float = Field(
        default=0.8,
        le=1,
        description="discovery: a shortcut is a fixed pattern; 1 = identical box content on the decisive "
        "images, 0 = as varied as on other classes (objects ≲ 0.4, plain background ≲ 0.65, an opaque "
        "mark ≈ 1, a mark blended at alpha a ≈ 1 − (1 − a)²)",
    )
    consistency_coverage: float = Field(
        default=0.1, gt=0, le=1, description="share of the box a fixed pattern must fill to count"
    )
    max_object_overlap: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="with object masks: refuse a candidate whose box is on average this much object",
    )
    share_threshold: float = 0.5
    enrichment_threshold: float = 10.0
    flip_threshold: float = 0.5
    removal_margin: float = 0.1
    min_group: int = Field(default=5, ge=1)
    n_random_boxes: int = Field(default=8, ge=1)
    n_overlays: int = Field(default=8, ge=0)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in METHODS]
        if bad:
            raise ValueError(f"unknown saliency method(s) {bad}; available: {', '.join(METHODS)}")
        return v


def _sample(ctx: AuditContext, n: int, seed: int) -> torch.Tensor:
    if ctx.n_images <= n:
        return torch.arange(ctx.n_images)
    return torch.randperm(ctx.n_images, generator=torch.Generator().manual_seed(seed))[:n].sort().values


class SpuriousSignal(Audit[SpuriousConfig]):
    name = AUDIT
    Config = SpuriousConfig

    def compute(self, ctx: AuditContext, config: SpuriousConfig, seed: int) -> AuditResult:
        height, width = ctx.image_size
        regions = [*ctx.regions, *(ResolvedRegion.of(r, height, width) for r in config.regions)]
        device = model_device(ctx.model)
        ctx.model.eval()
        index = _sample(ctx, config.n_images, seed)
        images = ctx.images[index].to(device).float()
        labels = ctx.labels[index].to(device) if ctx.labels is not None else None
        patch = self.patch_size(ctx, config)
        ctx.report(0.02, "choosing the removal strategy")
        if config.strategy is None:
            strategy, bias = choose_removal_strategy(
                ctx.model, images, mean=ctx.mean, std=ctx.std, patch_size=patch, seed=seed
            )
        else:
            strategy, bias = config.strategy, {}
        pred = plain_logits(ctx.model, images, mean=ctx.mean, std=ctx.std).argmax(1)
        th = Thresholds(
            config.share_threshold,
            config.enrichment_threshold,
            config.flip_threshold,
            config.removal_margin,
            config.min_group,
        )
        st = AuditState(
            ctx.model,
            images,
            labels,
            pred,
            ctx.class_names,
            ctx.mean,
            ctx.std,
            strategy,
            seed,
            config.n_random_boxes,
            th,
        )
        maps: dict[str, torch.Tensor] = {}
        for i, method in enumerate(config.methods):
            ctx.report(0.05 + 0.4 * i / max(1, len(config.methods)), f"saliency: {method}")
            maps[method] = saliency_maps(
                ctx.model,
                images,
                method,
                mean=ctx.mean,
                std=ctx.std,
                target=pred,
                n_samples=config.n_samples,
                noise=config.noise,
                steps=config.steps,
                patch_size=patch,
                strategy=strategy,
                seed=seed,
            )
            st.tops[method], st.top_k = top_q_mask(maps[method], config.q, seed)
        findings: list[Finding] = []
        region_metrics: dict[str, Any] = {}
        for i, region in enumerate(regions):
            ctx.report(0.45 + 0.2 * i / max(1, len(regions)), f"region {region.name}")
            region_metrics[region.name] = self._region(st, region, index, findings)
        candidates: list[dict[str, Any]] = []
        masks = ctx.object_masks[index].to(device) if ctx.object_masks is not None else None
        hot = hotspot_maps(next(iter(maps.values())), pred, ctx.num_classes) if maps else None
        if config.discovery:
            ctx.report(0.65, "discovery: region removal over the dataset")
            window = config.discovery_window or min(2 * patch, height, width)
            zero = torch.zeros(ctx.num_classes, height, width, device=device)
            candidates, effects, windows = find_candidates(
                st,
                hot if hot is not None else zero,
                window=window,
                stride=patch,
                min_effect=config.candidate_min_effect,
                min_group=config.min_group,
                max_candidates=config.max_candidates,
            )
            for j, cand in enumerate(candidates):
                ctx.report(
                    0.7 + 0.2 * j / max(1, len(candidates)), f"confirming candidate {j + 1}/{len(candidates)}"
                )
                box, c = as_box(cand["box"]), cand.pop("class_index")
                drops = effects[:, windows.index(box)]
                cand.update(content_evidence(images, pred, c, box, drops, masks, config.consistency_coverage))
                cand.update(counterfactual_evidence(st, box, artifact=None, classes=[c]))
                cand["confirmed_by_content"] = bool(
                    cand.get("content_consistency", -math.inf) >= config.min_content_consistency
                    and cand.get("object_overlap", 0.0) < config.max_object_overlap
                )
                cand["confirmed"] = bool(
                    cand["confirmed_by_flip"]
                    and cand["confirmed_by_removal"]
                    and cand["confirmed_by_content"]
                )
                cand["class"] = cand.pop("suspected_class", None) or cand["class"]
                if cand["confirmed"] and not _already_found(findings, cand["class"], box):
                    findings.append(_finding(f"discovered at {list(box)}", cand["class"], box, cand))
        metrics: dict[str, Any] = {
            "n_images": int(images.shape[0]),
            "q": config.q,
            "top_k_pixels": st.top_k,
            "patch_size": patch,
            "strategy": strategy,
            "strategy_bias": bias,
            "methods": config.methods,
            "regions": region_metrics,
            "candidates": candidates,
            "n_confirmed": len(findings),
            "max_flip_rate": max(
                [r.get("flip_rate", 0.0) for r in [*region_metrics.values(), *candidates]], default=0.0
            ),
            "max_enrichment": max(
                [_max_enrichment(r) for r in region_metrics.values()]
                + [c["saliency_enrichment"] for c in candidates],
                default=0.0,
            ),
        }
        if masks is not None:
            ctx.report(0.9, "mask-shape leakage")
            ref = labels if labels is not None else pred
            strategies = [
                s
                for s in applicable_strategies(ctx.model)
                if s in ("layer_mask", "token_drop", "black", "mean", "blur")
            ]
            leak = mask_shape_leakage(
                ctx.model, images, masks, ref, mean=ctx.mean, std=ctx.std, strategies=strategies, seed=seed
            )
            metrics["mask_leakage"] = leak
            worst = max(leak, key=lambda s: leak[s].get("leak_vs_native", 0.0))
            if leak[worst].get("leak_vs_native", 0.0) >= 0.2:
                findings.append(
                    Finding(
                        kind="mask_shape_leakage",
                        summary=f"with the object removed, {worst} keeps "
                        f"{leak[worst]['leak_vs_native']:.0%} more accuracy than native masking: "
                        "the hole's shape gives the class away",
                        evidence=leak[worst],
                    )
                )
        ctx.report(0.95, "writing artifacts")
        artifacts: list[Artifact] = write_artifacts(
            ctx, AUDIT, images, pred, maps, hot, regions, candidates, config.n_overlays
        )
        path, rel = ctx.artifact_path(AUDIT, "candidates.json")
        path.write_text(json.dumps({"regions": region_metrics, "candidates": candidates}, indent=2))
        artifacts.append(
            Artifact(
                name="candidates",
                path=rel,
                media_type="application/json",
                description="regions and discovery candidates with their evidence",
            )
        )
        confirmed = [f for f in findings if f.kind == "spurious_region"]
        verdict = "fail" if confirmed else "pass"
        if confirmed:
            summary = "Spurious region(s) confirmed: " + "; ".join(
                f"{f.class_name} at {f.box}" for f in confirmed
            )
        else:
            summary = (
                f"No spurious region confirmed ({len(regions)} hinted, "
                f"{len(candidates)} discovery candidates tested)."
            )
        return AuditResult(
            name=AUDIT,
            verdict=verdict,
            summary=summary,
            metrics=metrics,
            findings=findings,
            artifacts=artifacts,
        )

    def recorded_config(self, config: SpuriousConfig, seed: int, resolved: dict[str, Any]) -> dict[str, Any]:
        """The config as given (its `seed` left unresolved), as this audit has always recorded it, so
        reports stay comparable with earlier ones; artifacts are left out (they are bytes)."""
        return config.model_dump(exclude={"regions": {"__all__": {"artifact"}}})

    def _region(
        self, st: AuditState, region: ResolvedRegion, index: torch.Tensor, findings: list[Finding]
    ) -> dict[str, Any]:
        box = region.box
        artifact = (region.artifact, region.artifact_alpha) if region.artifact is not None else None
        if region.image_index is not None:
            pos = (index == region.image_index).nonzero().flatten()
            sal_index = pos.to(st.images.device)
            donors = sal_index if pos.numel() else None
        else:
            sal_index = torch.arange(st.images.shape[0], device=st.images.device)
            donors = None
        out: dict[str, Any] = {"box": list(box), "image_index": region.image_index}
        if sal_index.numel() == 0:
            out["skipped"] = "image_index is not in the audited sample"
            return out
        sal = saliency_evidence(st, box, sal_index, artifact)
        flagged = sorted({c for m in sal["methods"].values() for c in m["flagged_classes"]})
        cf = counterfactual_evidence(st, box, artifact=artifact, donors_index=donors)
        confirmed = bool(
            cf["confirmed_by_flip"] and (cf["confirmed_by_removal"] or cf["suspected_class"] in flagged)
        )
        out.update(sal, flagged_by_saliency=flagged, **cf, confirmed=confirmed)
        if confirmed:
            findings.append(_finding(region.name, cf["suspected_class"], box, out))
        return out


def _max_enrichment(region: dict[str, Any]) -> float:
    vals = [
        g["enrichment"] for m in region.get("methods", {}).values() for g in m["per_predicted_class"].values()
    ]
    return max(vals, default=0.0)


def _already_found(findings: list[Finding], cls: str, box: Box) -> bool:
    return any(
        f.class_name == cls and f.box is not None and overlap(box, as_box(f.box)) > 0.5 for f in findings
    )


def _finding(name: str, cls: str, box: Box, ev: dict[str, Any]) -> Finding:
    keys = (
        "flip_rate",
        "control_flip_rate",
        "removal_effect",
        "random_box_effect",
        "random_box_effect_p90",
        "removal_flip_rate",
        "flagged_by_saliency",
        "score",
        "saliency_enrichment",
        "decisive_share",
        "content_consistency",
        "object_overlap",
    )
    evidence = {k: ev[k] for k in keys if k in ev}
    evidence["enrichment"] = _max_enrichment(ev) if "methods" in ev else ev.get("saliency_enrichment")
    evidence["region"] = name
    return Finding(
        kind="spurious_region",
        summary=f"{cls!r} is decided by {name} at {list(box)}: stamping it flips {ev['flip_rate']:.0%} of "
        f"other images; removing it costs {ev['removal_effect']:.2f} confidence vs "
        f"{ev['random_box_effect']:.2f} for random boxes",
        class_name=cls,
        box=[float(v) for v in box],
        evidence=evidence,
    )
