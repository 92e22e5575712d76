"""LIME consistency audit (Jain et al., ICLR 2022 §4-5; layer masking paper §LIME): docs/audits.md, "LIME consistency".

LIME ranks features by what happens when they are *removed*, so its explanations inherit the model's
missingness bias. Three checks say whether they can be trusted: the top-k removal test (own ranking vs
random order vs another model's ranking), consistency across fill colours, and stability across
perturbation seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field

from auditors.audits.base import Audit, LegacyPartial, ShardMeta
from auditors.audits.context import AuditContext
from auditors.audits.info import AuditConfig
from auditors.audits.lime_consistency import shard
from auditors.audits.lime_consistency.metrics import (
    curve_at,
    random_rankings,
    topk_jaccard_curve,
    write_lime_artifacts,
)
from auditors.audits.partials import unpack_arrays
from auditors.audits.ranges import check_tiling, even_ranges
from auditors.engine import DEFAULT_COLORS, NATIVE, parse_strategy
from auditors.methods.lime import FeatureKind
from auditors.methods.removal import REMEDY_FILLS
from auditors.passes import Passes, RunShape, masked_passes, native_strategy
from auditors.report import AuditResult, Finding
from auditors.sampling import counts_per_class
from auditors.stats import Estimate, decide, mean_estimate, ratio_of_means

NAME = "lime_consistency"


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


class LimeConsistency(Audit[LimeConfig, Any]):
    legacy_flow = True
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
        # The pick is drawn by class: by label, else by a clean pass over every image; then a clean
        # pass over the pick.
        grouping = 0 if shape.labelled else shape.n_images
        total = Passes(
            forward=grouping + n, calls=2 - shape.labelled, figures=2 + (2 if config.n_show else 0)
        )
        for name in runs:
            total += masked_passes(name, n * config.n_samples, n)
        for name in strategies:
            total += masked_passes(name, 2 * n * kmax, 2)
        return total

    shardable = True
    shard_inputs = "all"  # every shard makes the class-stratified pick from the whole sample

    def plan_shards(self, n_images: int, config: LimeConfig, n_shards: int) -> list[range]:
        """Positions in the pick (`config.n_images` of the sample): each image's LIME is independent."""
        return even_ranges(min(config.n_images, n_images), n_shards)

    def run_shard(self, ctx: AuditContext, config: LimeConfig, indices: range) -> LegacyPartial:
        return shard.run_shard(
            ctx, config, indices, seed=ctx.seed_for(config), patch=self.patch_size(ctx, config)
        )

    def merge(self, meta: ShardMeta, config: LimeConfig, partials: Sequence[LegacyPartial]) -> AuditResult:
        """Every statistic over the whole pick, from the shards' per-image outcomes."""
        cfg = config
        ordered = check_tiling(partials)
        first = ordered[0]
        settings = ("seed", "patch_size", "strategies", "runs", "ks", "native")
        for part in ordered[1:]:
            if any(part[k] != first[k] for k in settings):
                raise ValueError("shards were run with different settings; rerun them with one config")
        seed, patch, strategies, runs = first["seed"], first["patch_size"], first["strategies"], first["runs"]
        primary = strategies[0]
        n_feat = torch.tensor([n for part in ordered for n in part["n_features"]])
        f_min = int(n_feat.min())
        kmax = max(1, min(cfg.max_k, f_min - 1))
        ks = list(range(1, kmax + 1))
        orders = {s: _stack_orders([o for part in ordered for o in part["orders"][s]], n_feat) for s in runs}
        k_at = ks.index(min(cfg.k_removal, ks[-1]))
        by_strategy: dict[str, Any] = {}
        ratio = Estimate(value=float("nan"), lo=float("nan"), hi=float("nan"), n=0)
        for s in strategies:
            own_i = _outcomes([part["removal"][s]["own"] for part in ordered], kmax)
            rnd_i = _outcomes([part["removal"][s]["random"] for part in ordered], kmax)
            entry = _removal_entry(ks, _curve(own_i), _curve(rnd_i), cfg.k_removal)
            est = ratio_of_means(own_i[:, k_at], rnd_i[:, k_at], seed=seed)
            entry[f"ratio_at_{cfg.k_removal}_interval"] = est.as_dict()
            if s == primary:
                ratio = est
                if first["reference"] is not None:
                    ref_curve = _curve(_outcomes([part["reference"]["outcomes"] for part in ordered], kmax))
                    entry["reference"] = ref_curve
                    entry["reference_strategy"] = first["reference"]["strategy"]
                    entry[f"reference_at_{cfg.k_removal}"] = curve_at(ks, ref_curve, cfg.k_removal)
            by_strategy[s] = entry
        order2 = _stack_orders([o for part in ordered for o in part["order_second_seed"]], n_feat)
        seed_jac = topk_jaccard_curve([orders[primary], order2], ks)
        rho = [r for part in ordered for r in part["spearman"]]
        fill_orders = [orders[f] for f in cfg.fills]
        fill_jac = topk_jaccard_curve(fill_orders, ks)
        everyone = range(len(n_feat))
        rand_jac = topk_jaccard_curve(
            [random_rankings(n_feat, seed + 100 + i, everyone) for i in range(cfg.n_random_orders)], ks
        )
        kc = cfg.k_consistency
        per_image_cons = topk_jaccard_curve(fill_orders, [min(kc, kmax)], per_image=True)
        consistency = mean_estimate(per_image_cons, seed=seed)
        groups = np.array([g for part in ordered for g in part["groups"]], dtype=np.int64)
        k_classes = len(meta.class_names)
        native_primary = parse_strategy(primary).name in NATIVE
        metrics: dict[str, Any] = {
            "n_images": len(n_feat),
            "n_per_class": dict(
                zip(
                    meta.class_names, counts_per_class(groups, np.arange(len(groups)), k_classes), strict=True
                )
            ),
            "n_samples": cfg.n_samples,
            "features": cfg.features,
            "patch_size": patch if cfg.features == "grid" else None,
            "n_features": {"min": f_min, "max": int(n_feat.max())},
            "primary_strategy": primary,
            "seeds": [seed, seed + 1],
            "removal": by_strategy[primary],
            "by_strategy": by_strategy,
            "fill_consistency": {
                "fills": list(cfg.fills),
                "K": ks,
                "jaccard": fill_jac,
                "random": rand_jac,
                f"at_{kc}": curve_at(ks, fill_jac, kc),
                f"random_at_{kc}": curve_at(ks, rand_jac, kc),
                f"at_{kc}_interval": consistency.as_dict(),
                "colour_free": native_primary,
            },
            "seed_stability": {
                "K": ks,
                "jaccard": seed_jac,
                f"jaccard_at_{kc}": curve_at(ks, seed_jac, kc),
                "spearman_mean": float(np.mean(rho)),
                "spearman": rho,
            },
        }
        verdict, summary, findings, meaning = _verdict(
            metrics, cfg, primary, ratio, consistency, first["native"]
        )
        arrays = _concat([unpack_arrays(part["arrays"]) for part in ordered])
        artifacts = write_lime_artifacts(
            meta.out_dir, NAME, arrays, runs, metrics, per_image_cons, cfg.n_show, kc
        )
        return AuditResult(
            name=NAME,
            verdict=verdict,
            summary=summary,
            metrics=metrics,
            findings=findings,
            artifacts=artifacts,
            config=self.recorded_config(cfg, seed, {"patch_size": patch, "strategies": strategies}),
            role="explanation",
            n=ratio.n,
            estimate={
                **ratio.as_dict(),
                "statistic": f"own/random unchanged at k={cfg.k_removal} ({primary})",
            },
            meaning=meaning,
        )


def _curve(per_image: np.ndarray) -> list[float]:
    return [float(v) for v in per_image.mean(0)]


def _outcomes(shards: list[list[list[int]]], kmax: int) -> np.ndarray:
    """[B, kmax] removal outcomes of the whole pick from the shards' (in position order)."""
    return np.array([row[:kmax] for rows in shards for row in rows], dtype=np.float32)


def _stack_orders(rows: list[list[int]], n_feat: torch.Tensor) -> torch.Tensor:
    """[B, F] rankings from each image's ranking of its own features, absent features appended last."""
    f_max = int(n_feat.max())
    return torch.tensor([[*row, *range(len(row), f_max)] for row in rows], dtype=torch.long)


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One set of artifact arrays from the shards' (same keys; image axis first)."""
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


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
