"""LIME consistency audit (Jain et al., ICLR 2022 §4-5; layer masking paper §LIME): docs/audits.md, "LIME consistency".

LIME ranks features by what happens when they are *removed*, so its explanations inherit the model's
missingness bias. Three checks say whether they can be trusted: the top-k removal test (own ranking vs
random order vs another model's ranking), consistency across fill colours, and stability across
perturbation seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from auditors.audits.base import Audit, AuditConfig
from auditors.audits.context import AuditContext
from auditors.audits.lime_consistency.metrics import (
    curve_at,
    random_rankings,
    spearman,
    topk_jaccard_curve,
    write_lime_artifacts,
)
from auditors.cost import Passes, RunShape, masked_passes, native_strategy
from auditors.engine import DEFAULT_COLORS, NATIVE, applicable_strategies, parse_strategy, plain_logits
from auditors.methods.lime import FeatureKind, LimeFit, feature_logits, lime_fit, patch_grid, ranking
from auditors.methods.removal import REMEDY_FILLS
from auditors.report import AuditResult, Finding
from auditors.sampling import counts_per_class, stratified_indices
from auditors.stats import Estimate, decide, mean_estimate, ratio_of_means

NAME = "lime_consistency"
_SALT = 0x11E  # this audit's own stratified draw


class LimeConfig(AuditConfig):
    """Defaults keep the audit affordable on a CPU: 16 images x 1000 perturbations x (2 + fills) runs."""

    strategies: list[str] | None = None  # None: the model's native strategy if any, else black
    fills: list[str] = Field(default_factory=lambda: list(DEFAULT_COLORS), min_length=2)
    features: FeatureKind = "grid"
    patch_size: int | None = None  # None: the context's default (the ViT's patch; side/8 on small images)
    n_samples: int = Field(default=1000, ge=16)
    n_images: int = Field(default=16, ge=1)  # a class-stratified sample of the audited images
    min_images: int = Field(default=8, ge=1)  # fewer: inconclusive
    max_k: int = Field(default=49, ge=1)  # removal/consistency curves run k = 1..min(max_k, F-1)
    k_removal: int = 25  # the removal test's headline k (docs/audits.md: 25 features)
    k_consistency: int = 20  # the fill-consistency headline K (docs/audits.md: K = 20)
    removal_ratio_max: float = 0.5  # pass needs own <= ratio x random at k_removal
    consistency_min: float = 0.5  # ... and fill consistency at K >= this
    inconclusive_margin: float = 0.05  # |random - own| below this: the test cannot separate them
    n_random_orders: int = Field(default=8, ge=2)  # random permutations for the Jaccard baseline
    n_show: int = Field(default=4, ge=0)  # images in the heatmap overlays


def _removal_curve(
    ctx: AuditContext,
    images: torch.Tensor,
    order: torch.Tensor,
    fit: LimeFit,
    ks: list[int],
    strategy: str,
    grid: tuple[int, int] | None,
    clean: torch.Tensor,
    seed: int,
) -> torch.Tensor:
    """Per image [B, len(ks)]: 1 where the prediction is unchanged after removing the first k features
    of `order`, k in ks (the mean over images is the removal curve)."""
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
        grid=grid,
        seed=seed,
    )
    same = logits.argmax(-1) == clean.to(logits.device).view(-1, 1)
    return same.float().cpu()


def _curve(per_image: torch.Tensor) -> list[float]:
    return [float(v) for v in per_image.mean(0)]


def _reference_order(
    ctx: AuditContext, images: torch.Tensor, strategy: str, cfg: LimeConfig, patch: int, seed: int
) -> tuple[torch.Tensor, str]:
    """The reference model's LIME ranking, under `strategy` when it applies to that model."""
    ref = ctx.reference_model
    assert ref is not None
    names = applicable_strategies(ref)
    native = [s for s in names if s in NATIVE]
    if strategy in names or parse_strategy(strategy).is_pixel_fill:
        strat = strategy
    else:  # e.g. token_drop for a ResNet reference: use the reference's own native missingness
        strat = native[0] if native else "black"
    fit = lime_fit(
        ref,
        images,
        mean=ctx.mean,
        std=ctx.std,
        strategy=strat,
        features=cfg.features,
        patch_size=patch,
        n_samples=cfg.n_samples,
        seed=seed,
        offset=ctx.image_offset,
    )
    return ranking(fit.coef, fit.n_features), strat


class LimeConsistency(Audit[LimeConfig]):
    name = NAME
    Config = LimeConfig

    def forward_passes(self, config: LimeConfig, shape: RunShape) -> Passes:
        """n_samples per image per LIME run (each strategy, each fill, the second seed), then the
        removal curves (own and random order, k = 1..max_k) per strategy; overlays and two plots."""
        n = min(config.n_images, shape.n_images)
        patch = config.patch_size or shape.default_patch
        n_feat = (shape.height // patch) * (shape.width // patch) if config.features == "grid" else 150
        kmax = max(1, min(config.max_k, n_feat - 1))
        strategies = list(config.strategies or [native_strategy(shape) or REMEDY_FILLS[0]])
        runs = [*strategies, *(f for f in config.fills if f not in strategies), strategies[0]]
        # The clean pass covers every image: the stratified subset is drawn by class.
        total = Passes(forward=shape.n_images, calls=1, figures=2 + (2 if config.n_show else 0))
        for name in runs:
            total += masked_passes(name, n * config.n_samples, n)
        for name in strategies:
            total += masked_passes(name, 2 * n * kmax, 2)
        return total

    def compute(self, ctx: AuditContext, config: LimeConfig, seed: int) -> AuditResult:
        cfg = config
        patch = self.patch_size(ctx, config)
        native = [s for s in applicable_strategies(ctx.model) if s in NATIVE]
        # The removal rule (auditors.methods.removal): native missingness, else blur, never a constant fill.
        strategies = cfg.strategies or (native[:1] or list(REMEDY_FILLS[:1]))
        for s in (*strategies, *cfg.fills):
            parse_strategy(s)
        primary = strategies[0]
        # Every class of the sample, not the first images of a class-sorted one.
        clean_all = plain_logits(ctx.model, ctx.images, mean=ctx.mean, std=ctx.std).argmax(1).cpu()
        groups = (ctx.labels.cpu() if ctx.labels is not None else clean_all).numpy()
        index = stratified_indices(groups, cfg.n_images, seed=seed, salt=_SALT)
        images = ctx.images[torch.from_numpy(index)]
        clean = clean_all[torch.from_numpy(index)].to(images.device)
        common = dict(
            mean=ctx.mean,
            std=ctx.std,
            features=cfg.features,
            patch_size=patch,
            n_samples=cfg.n_samples,
            offset=ctx.image_offset,
        )
        runs = [*strategies, *(f for f in cfg.fills if f not in strategies)]
        total = len(runs) + 2 + (1 if ctx.reference_model is not None else 0)
        fits: dict[str, LimeFit] = {}
        for i, s in enumerate(runs):
            ctx.report(i / total, f"LIME under {s}")
            fits[s] = lime_fit(ctx.model, images, strategy=s, target=clean, seed=seed, **common)  # type: ignore[arg-type]
        first = fits[primary]
        n_feat = first.n_features
        f_min = int(n_feat.min())
        kmax = max(1, min(cfg.max_k, f_min - 1))
        ks = list(range(1, kmax + 1))
        grid = patch_grid(first.segments, patch)
        orders = {s: ranking(fits[s].coef, n_feat) for s in runs}
        rand_orders = random_rankings(n_feat, seed + 7)

        ctx.report(len(runs) / total, "top-k removal test")
        by_strategy: dict[str, Any] = {}
        reference_curve: list[float] | None = None
        ref_strategy: str | None = None
        if ctx.reference_model is not None:
            ref_order, ref_strategy = _reference_order(ctx, images, primary, cfg, patch, seed)
        k_at = ks.index(min(cfg.k_removal, ks[-1]))
        ratio = Estimate(value=float("nan"), lo=float("nan"), hi=float("nan"), n=0)
        for s in strategies:
            own_i = _removal_curve(ctx, images, orders[s], fits[s], ks, s, grid, clean, seed)
            rnd_i = _removal_curve(ctx, images, rand_orders, fits[s], ks, s, grid, clean, seed)
            entry = _removal_entry(ks, _curve(own_i), _curve(rnd_i), cfg.k_removal)
            est = ratio_of_means(own_i[:, k_at].numpy(), rnd_i[:, k_at].numpy(), seed=seed)
            entry[f"ratio_at_{cfg.k_removal}_interval"] = est.as_dict()
            if s == primary:
                ratio = est
            if ctx.reference_model is not None and s == primary:
                reference_curve = _curve(
                    _removal_curve(ctx, images, ref_order, fits[s], ks, s, grid, clean, seed)
                )
                entry["reference"] = reference_curve
                entry["reference_strategy"] = ref_strategy
                entry[f"reference_at_{cfg.k_removal}"] = curve_at(ks, reference_curve, cfg.k_removal)
            by_strategy[s] = entry
        removal = by_strategy[primary]

        ctx.report((len(runs) + 1) / total, "seed stability")
        fit2 = lime_fit(ctx.model, images, strategy=primary, target=clean, seed=seed + 1, **common)  # type: ignore[arg-type]
        order2 = ranking(fit2.coef, n_feat)
        seed_jac = topk_jaccard_curve([orders[primary], order2], ks)
        rho = spearman(first.coef, fit2.coef, n_feat)

        fill_orders = [orders[f] for f in cfg.fills]
        fill_jac = topk_jaccard_curve(fill_orders, ks)
        rand_jac = topk_jaccard_curve(
            [random_rankings(n_feat, seed + 100 + i) for i in range(cfg.n_random_orders)], ks
        )
        kc = cfg.k_consistency
        per_image_cons = topk_jaccard_curve(fill_orders, [min(kc, kmax)], per_image=True)
        consistency = mean_estimate(per_image_cons, seed=seed)
        k_classes = len(ctx.class_names)
        metrics: dict[str, Any] = {
            "n_images": int(images.shape[0]),
            "n_per_class": dict(
                zip(ctx.class_names, counts_per_class(groups, index, k_classes), strict=True)
            ),
            "n_samples": cfg.n_samples,
            "features": cfg.features,
            "patch_size": patch if cfg.features == "grid" else None,
            "n_features": {"min": f_min, "max": int(n_feat.max())},
            "primary_strategy": primary,
            "seeds": [seed, seed + 1],
            "removal": removal,
            "by_strategy": by_strategy,
            "fill_consistency": {
                "fills": list(cfg.fills),
                "K": ks,
                "jaccard": fill_jac,
                "random": rand_jac,
                f"at_{kc}": curve_at(ks, fill_jac, kc),
                f"random_at_{kc}": curve_at(ks, rand_jac, kc),
                f"at_{kc}_interval": consistency.as_dict(),
                "colour_free": parse_strategy(primary).name in NATIVE,
            },
            "seed_stability": {
                "K": ks,
                "jaccard": seed_jac,
                f"jaccard_at_{kc}": curve_at(ks, seed_jac, kc),
                "spearman_mean": float(np.mean(rho)),
                "spearman": rho,
            },
        }
        verdict, summary, findings, meaning = _verdict(metrics, cfg, primary, ratio, consistency, native)
        ctx.report((len(runs) + 2) / total, "artifacts")
        artifacts = write_lime_artifacts(
            ctx,
            NAME,
            images,
            fits,
            runs,
            metrics,
            per_image_cons,
            cfg.n_show,
            kc,
            labels=None if ctx.labels is None else ctx.labels[torch.from_numpy(index)],
        )
        return AuditResult(
            name=NAME,
            verdict=verdict,
            summary=summary,
            metrics=metrics,
            findings=findings,
            artifacts=artifacts,
            config={"patch_size": patch, "strategies": strategies},
            role="explanation",
            n=ratio.n,
            estimate={
                **ratio.as_dict(),
                "statistic": f"own/random unchanged at k={cfg.k_removal} ({primary})",
            },
            meaning=meaning,
        )


def _removal_entry(ks: list[int], own: list[float], rnd: list[float], k: int) -> dict[str, Any]:
    at_own, at_rnd = curve_at(ks, own, k), curve_at(ks, rnd, k)
    return {
        "k": ks,
        "own": own,
        "random": rnd,
        "k_eval": min(k, ks[-1]),
        f"own_at_{k}": at_own,
        f"random_at_{k}": at_rnd,
        f"ratio_at_{k}": at_own / at_rnd if at_rnd > 0 else None,
        "own_auc": float(np.mean(own)),
        "random_auc": float(np.mean(rnd)),
    }


def _verdict(
    metrics: dict[str, Any],
    cfg: LimeConfig,
    primary: str,
    ratio: Estimate,
    consistency: Estimate,
    native: list[str],
) -> tuple[Any, str, list[Finding], str]:
    """docs/audits.md, "LIME consistency": pass when own <= 0.5 x random unchanged at k=25 (the whole
    bootstrap interval of the ratio) and, for a pixel fill, top-20 Jaccard across fills >= 0.5 (the
    whole interval); fail when an interval lies wholly on the wrong side; otherwise inconclusive."""
    k, kc = cfg.k_removal, cfg.k_consistency
    rem = metrics["removal"]
    own, rnd = rem[f"own_at_{k}"], rem[f"random_at_{k}"]
    colour_free = metrics["fill_consistency"]["colour_free"]
    findings: list[Finding] = []
    ref = rem.get(f"reference_at_{k}")
    if ref is not None and abs(ref - own) <= max(cfg.inconclusive_margin, 0.2 * rnd):
        findings.append(
            Finding(
                kind="indistinguishable_explanations",
                summary=(
                    f"Removing another model's top-{k} LIME features changes predictions about as much as "
                    f"removing this model's own ({ref:.2f} vs {own:.2f} unchanged): the removal test cannot "
                    "tell explanations apart under this missingness."
                ),
                evidence={"own": own, "reference": ref, "random": rnd},
            )
        )
    removal = decide(ratio, fail_above=cfg.removal_ratio_max, min_n=cfg.min_images)
    if colour_free:
        fills = "not judged"  # token dropping and layer masking have no colour
    elif consistency.n < cfg.min_images:
        fills = "inconclusive"
    else:
        fills = (
            "pass"
            if consistency.lo >= cfg.consistency_min
            else "fail"
            if consistency.hi < cfg.consistency_min
            else "inconclusive"
        )
    decisions = [removal] + ([] if fills == "not judged" else [fills])
    verdict = (
        "fail" if "fail" in decisions else "pass" if all(d == "pass" for d in decisions) else "inconclusive"
    )
    detail = (
        f"removing LIME's top {k} features under {primary} leaves {own:.2f} of predictions unchanged vs "
        f"{rnd:.2f} for random features (ratio {_num(ratio.value)} [{_num(ratio.lo)}, {_num(ratio.hi)}], "
        f"needs <= {cfg.removal_ratio_max:g}, n = {ratio.n})"
    )
    cons = f"top-{kc} Jaccard across fill colours {consistency.value:.2f} [{consistency.lo:.2f}, {consistency.hi:.2f}]"
    if colour_free:
        detail += f"; {primary} has no colour, so fill consistency is not judged (pixel-fill LIME: {cons})"
    else:
        detail += f"; {cons}, needs >= {cfg.consistency_min:g}"
    better = native[0] if native and primary not in native else None
    if ratio.n < cfg.min_images:
        return (
            "inconclusive",
            f"Inconclusive: {detail}.",
            findings,
            f"Too few images to judge LIME ({ratio.n} < {cfg.min_images}): raise n_images.",
        )
    if verdict == "pass":
        what = "informative" if colour_free else "informative and consistent across fill colours"
        return (
            "pass",
            f"LIME explanations are {what}: {detail}.",
            findings,
            f"LIME explanations of this model computed with {primary} can be trusted.",
        )
    if verdict == "fail":
        what = "do not rank what the model uses" if removal == "fail" else "depend on the fill colour"
        use = f"; use {better}" if better else ""
        return (
            "fail",
            f"LIME explanations are unreliable: {detail}.",
            findings,
            f"LIME explanations of this model computed with {primary} {what}: they are unreliable{use}.",
        )
    return (
        "inconclusive",
        f"Inconclusive: {detail}.",
        findings,
        f"The data cannot tell whether LIME explanations with {primary} are reliable; raise n_images.",
    )


def _num(value: float) -> str:
    return f"{value + 0.0:.2f}"
