"""Spurious-signal audit: does the model use a watermark, a ruler, a tint instead of the object?

docs/audits.md, "Spurious signals" (PAIR explorable 2022; Zhou et al. 2021; Adebayo et al. 2022). For each
suspected region (from the config or `ctx.regions`): the share of the top-q salient pixels in the box
against its area, and the stamp test that saliency cannot replace, judged against its null
(`discover.region_test`). Without a hint, `discover.discover` finds each class's fixed marks by their
content, confirms them by the stamp test against random content with Holm's correction, and tests each
class's colour cast globally. A confirmed region (`spurious_region`) or cast (`global_shortcut`) fails the
audit; every finding carries n, its interval and its corrected p-value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator

from auditors.audits.base import Audit, AuditConfig
from auditors.audits.context import AuditContext, ResolvedRegion
from auditors.audits.spurious_signal.artifacts import write_artifacts
from auditors.audits.spurious_signal.counterfactual import choose_removal_strategy, mask_shape_leakage
from auditors.audits.spurious_signal.discover import OUT_OF_SCOPE, DiscoverySettings, discover, region_test
from auditors.audits.spurious_signal.findings import examples, local_finding, report_discovery
from auditors.audits.spurious_signal.merge import iou
from auditors.audits.spurious_signal.nulls import Probe
from auditors.audits.spurious_signal.regions import AuditState, Thresholds, hotspot_maps, saliency_evidence
from auditors.cost import PIXEL_FILL_COUNT, Passes, RunShape, masked_passes, native_strategy
from auditors.engine import applicable_strategies, model_device, plain_logits
from auditors.methods.saliency import METHODS, saliency_maps, top_q_mask
from auditors.regions import Region
from auditors.report import Artifact, AuditResult, Finding, Verdict

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
    global_test: bool = Field(
        default=True, description="test each class's colour cast (a non-local shortcut)"
    )
    max_candidates: int = Field(default=8, ge=1)
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="family-wise error level of the content null and the stamp tests",
    )
    min_flip: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="the smallest excess of stamp flips over the null a reported shortcut must cause",
    )
    n_permutations: int = Field(default=50, ge=19, description="label permutations behind the content null")
    max_recipients: int = Field(default=128, ge=8, description="other-class images each stamp test uses")
    share_threshold: float = 0.5
    enrichment_threshold: float = 10.0
    min_group: int = Field(default=8, ge=2)
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

    def forward_passes(self, config: SpuriousConfig, shape: RunShape) -> Passes:
        """Saliency (a backward per image per SmoothGrad sample / IG step), then per region or
        discovered candidate the stamp test against its null and the removal test, and the global
        colour test per class. The
        removal strategy is costed as the model's native one (what the bias check usually picks);
        every candidate counts (an upper bound)."""
        n = min(config.n_images, shape.n_images)
        patch = config.patch_size or shape.default_patch
        per_class = math.ceil(n / max(1, shape.num_classes))
        native = native_strategy(shape)
        strategy = config.strategy or native or "blur"
        total = Passes(forward=n, calls=1, figures=2 + (2 if config.n_overlays else 0))
        if config.strategy is None:  # the bias of native, blur and mean on up to 32 images
            total += Passes(forward=3 * min(32, n), calls=3) + masked_passes(native, min(32, n))
        batches = math.ceil(n / 64)
        for method in config.methods:
            if method in ("gradient", "gradient_squared"):
                total += Passes(gradient=n, calls=batches)
            elif method == "smoothgrad":
                total += Passes(gradient=n * config.n_samples, calls=batches * config.n_samples)
            elif method == "integrated_gradients":
                total += Passes(gradient=n * config.steps, calls=batches * math.ceil(config.steps / 4))
            else:  # occlusion
                windows = (shape.height // patch) * (shape.width // patch)
                total += Passes(forward=n, calls=1) + masked_passes(strategy, n * windows, n)
        # A stamp test: up to max_recipients other-class images, stamped and with the paired null
        # patch; a removal test: the mark's class images with its box and n_random_boxes random boxes.
        recipients = min(config.max_recipients, n)
        confirm = Passes(forward=2 * recipients, calls=2) + masked_passes(
            strategy, per_class * (1 + config.n_random_boxes), 2
        )
        for _ in range(shape.n_regions + len(config.regions)):
            total += confirm
        if config.discovery:  # candidates come from pixel statistics (no model); each is then tested
            for _ in range(config.max_candidates):
                total += confirm
        if config.global_test:  # per class: the cast moved onto others and off its own, each with a null
            total += Passes(forward=4 * n, calls=4 * shape.num_classes)
        if shape.has_object_masks:
            total += Passes(forward=2 * n * PIXEL_FILL_COUNT, calls=2 * PIXEL_FILL_COUNT)
            total += masked_passes(native, 2 * n, 2)
        return total

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
        clean_probs = plain_logits(ctx.model, images, mean=ctx.mean, std=ctx.std).float().softmax(1)
        confidence, pred = clean_probs.max(1)
        th = Thresholds(config.share_threshold, config.enrichment_threshold, config.min_group)
        st = AuditState(images, labels, pred, ctx.class_names, th)
        probe = Probe(ctx.model, ctx.mean, ctx.std, strategy, seed)
        settings = DiscoverySettings(
            alpha=config.alpha,
            min_flip=config.min_flip,
            min_group=config.min_group,
            n_perm=config.n_permutations,
            max_recipients=config.max_recipients,
            max_candidates=config.max_candidates,
            n_random_boxes=config.n_random_boxes,
            global_test=config.global_test,
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

        def write(name: str) -> tuple[Path, str]:
            return ctx.artifact_path(AUDIT, name)

        findings: list[Finding] = []
        region_metrics: dict[str, Any] = {}
        for i, region in enumerate(regions):
            ctx.report(0.45 + 0.2 * i / max(1, len(regions)), f"region {region.name}")
            out = self._region(st, probe, region, index, settings)
            if out.pop("confirmed_region", False):
                ex = examples(write, f"region_{i}", probe, images, labels, out, ctx.class_names)
                finding = local_finding(out, ex, name=region.name)
                finding.evidence["enrichment"] = _max_enrichment(out)
                finding.evidence["flagged_by_saliency"] = out["flagged_by_saliency"]
                findings.append(finding)
            region_metrics[region.name] = {k: v for k, v in out.items() if not k.startswith("_")}
        discovery: dict[str, Any] = {"candidates": [], "global": [], "out_of_scope": list(OUT_OF_SCOPE)}
        if config.discovery:
            ctx.report(0.65, "discovery: class signatures, stamp tests against their nulls")
            found = discover(probe, images, pred, labels, ctx.class_names, settings)
            new, discovery = report_discovery(found, probe, images, labels, ctx.class_names, write)
            findings += [f for f in new if not _already_found(findings, f)]
        candidates = discovery["candidates"]
        masks = ctx.object_masks[index].to(device) if ctx.object_masks is not None else None
        hot = hotspot_maps(next(iter(maps.values())), pred, ctx.num_classes) if maps else None
        flips = [r["flip"]["value"] for r in [*region_metrics.values(), *candidates] if r.get("flip")]
        metrics: dict[str, Any] = {
            "n_images": int(images.shape[0]),
            "q": config.q,
            "top_k_pixels": st.top_k,
            "patch_size": patch,
            "strategy": strategy,
            "strategy_bias": bias,
            "methods": config.methods,
            "regions": region_metrics,
            **discovery,
            "n_confirmed": sum(f.kind in ("spurious_region", "global_shortcut") for f in findings),
            "max_flip_rate": max(flips, default=0.0),
            "max_enrichment": max([_max_enrichment(r) for r in region_metrics.values()], default=0.0),
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
            ctx,
            AUDIT,
            images,
            pred,
            maps,
            hot,
            regions,
            candidates,
            config.n_overlays,
            labels=labels,
            confidence=confidence,
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
        confirmed = [f for f in findings if f.kind in ("spurious_region", "global_shortcut")]
        untested = discovery.get("untested_classes", [])
        tested_regions = [r for r in region_metrics.values() if "flip" in r]
        verdict: Verdict = "fail" if confirmed else "pass"
        if confirmed:
            summary = "Shortcut(s) confirmed: " + "; ".join(
                f"{f.class_name!r} at {[round(v) for v in f.box or []]}"
                if f.kind == "spurious_region"
                else f"{f.class_name!r} by its colour cast"
                for f in confirmed
            )
        elif config.discovery and len(untested) == ctx.num_classes and not tested_regions:
            verdict = "inconclusive"
            summary = (
                f"Too few images to test: no class has {config.min_group} of the {images.shape[0]} audited "
                "images; audit more images."
            )
        else:
            summary = (
                f"No shortcut confirmed ({len(regions)} hinted, {len(candidates)} discovery candidates "
                f"and {len(discovery['global'])} class colour casts tested"
                + (f"; too few images to test {', '.join(untested)}" if untested else "")
                + "); not tested: "
                + "; ".join(OUT_OF_SCOPE)
                + "."
            )
        tested = [*tested_regions, *candidates, *discovery["global"]]
        return AuditResult(
            name=AUDIT,
            verdict=verdict,
            summary=summary,
            metrics=metrics,
            findings=findings,
            artifacts=artifacts,
            n=int(images.shape[0]),
            estimate=_strongest_effect(tested, confirmed=[t for t in tested if t.get("confirmed")]),
            meaning=_meaning(verdict, confirmed),
        )

    def recorded_config(self, config: SpuriousConfig, seed: int, resolved: dict[str, Any]) -> dict[str, Any]:
        """The config as given (its `seed` left unresolved), as this audit has always recorded it, so
        reports stay comparable with earlier ones; artifacts are left out (they are bytes)."""
        return config.model_dump(exclude={"regions": {"__all__": {"artifact"}}})

    def _region(
        self,
        st: AuditState,
        probe: Probe,
        region: ResolvedRegion,
        index: torch.Tensor,
        settings: DiscoverySettings,
    ) -> dict[str, Any]:
        """Saliency in the box, then the stamp test against its null (`region_test`). A per-image region
        without an artifact stamps that image's own box content."""
        box = region.box
        x, y, w, h = box
        artifact = (region.artifact, region.artifact_alpha) if region.artifact is not None else None
        if region.image_index is not None:
            pos = (index == region.image_index).nonzero().flatten().to(st.images.device)
            sal_index = pos
            if artifact is None and pos.numel():
                artifact = (st.images[pos[0], :, y : y + h, x : x + w].cpu(), None)
        else:
            sal_index = torch.arange(st.images.shape[0], device=st.images.device)
        out: dict[str, Any] = {"box": list(box), "image_index": region.image_index}
        if sal_index.numel() == 0:
            out["skipped"] = "image_index is not in the audited sample"
            return out
        sal = saliency_evidence(st, box, sal_index, artifact)
        flagged = sorted({c for m in sal["methods"].values() for c in m["flagged_classes"]})
        test = region_test(probe, st.images, st.pred, st.labels, st.class_names, box, artifact, settings)
        out.update(sal, flagged_by_saliency=flagged, **test)
        if region.artifact is None and region.image_index is not None:
            out["stamp"] = f"box content of image {region.image_index}"
        # Second line of evidence besides the stamp: removal beats random boxes, or saliency flags the box.
        saliency_agrees = test.get("stamp_confirmed", False) and test.get("class") in flagged
        out["confirmed_region"] = bool(test["confirmed"] or saliency_agrees)
        out["confirmed"] = out["confirmed_region"]
        return out


def _max_enrichment(region: dict[str, Any]) -> float:
    vals = [
        g["enrichment"] for m in region.get("methods", {}).values() for g in m["per_predicted_class"].values()
    ]
    return max(vals, default=0.0)


def _already_found(findings: list[Finding], new: Finding) -> bool:
    """A discovered mark that a hinted region of the same class already covers is not reported twice."""
    return any(
        f.kind == new.kind
        and f.class_name == new.class_name
        and f.box
        and new.box
        and iou(f.box, new.box) > 0.3
        for f in findings
    )


def _strongest_effect(tested: list[dict[str, Any]], confirmed: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the verdict rests on: the stamp flip rate (n, 95% interval, corrected p, null) of the
    confirmed shortcut with the largest excess over its null, else of the strongest effect tested."""
    pool = confirmed or [t for t in tested if isinstance(t.get("flip"), dict)]
    if not pool:
        return None
    best = max(pool, key=lambda t: float(t.get("excess_flip", 0.0)))
    flip = best["flip"]
    kind = "colour cast" if "shift" in best else "region"
    estimate = {k: flip[k] for k in ("value", "lo", "hi", "n", "p_value", "null_mean") if k in flip}
    if estimate.get("null_mean") is None and isinstance(best.get("null_flip"), dict):
        estimate["null_mean"] = best["null_flip"].get("value")
    return estimate | {
        "level": 0.95,
        "statistic": f"stamp flip rate toward {best.get('class')!r}, strongest {kind} tested "
        f"({best.get('correction', 'uncorrected')})",
    }


def _meaning(verdict: str, confirmed: list[Finding]) -> str:
    if verdict == "fail":
        classes = ", ".join(sorted({repr(f.class_name) for f in confirmed}))
        return (
            f"The model predicts {classes} from a shortcut, not from the object: remove or randomise the "
            "mark (or balance it across classes) in the training data, retrain, and audit again."
        )
    if verdict == "inconclusive":
        return "Too few images per class to test for shortcuts: audit more images."
    return (
        "No fixed mark or colour cast decides a class on these images; marks that move or change colour, "
        "and texture statistics, are not tested."
    )
