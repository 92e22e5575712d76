"""SIS / overinterpretation audit (Carter et al. 2019; Carter et al., NeurIPS 2021): docs/audits.md, "SIS and overinterpretation".

A model overinterprets when it stays confident on a few pixels that mean nothing to a person. The
audit finds each confident image's sufficient input subset (SIS) with BackSelect, then measures how
small they are, how the model does on the 5% of pixels BackSelect keeps vs 5% random pixels, and
(optionally) whether a fresh model can learn the task from those 5% subsets alone.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from auditors.audits.base import Audit, AuditConfig
from auditors.audits.context import AuditContext
from auditors.audits.sis.controls import (
    random_subsets,
    retrain_on_subsets,
    size_vs_correctness,
    write_sis_artifacts,
)
from auditors.cost import Passes, RunShape
from auditors.engine import masked_logits, parse_strategy, plain_logits
from auditors.methods.backselect import (
    BackSelectResult,
    backselect,
    backselect_subset,
    gradient_backselect,
    sis_from_order,
    step_sizes,
    subset_keep,
)
from auditors.report import AuditResult, Finding, Verdict
from auditors.sampling import counts_per_class, stratified_among
from auditors.stats import Estimate, decide, proportion

NAME = "sis"
_SALT = 0x515  # this audit's own stratified draw


class SISConfig(AuditConfig):
    """Defaults fit a CPU: 8 confident images, stratified by class; exact BackSelect only where it is
    cheap (see `exact_max_pixels`)."""

    strategy: str = "mean"  # the mask value: the model's mean colour (0 after normalisation)
    tau: float = Field(default=0.99, gt=0, lt=1)
    n_images: int = Field(default=8, ge=1)
    method: Literal["auto", "exact", "gradient"] = "auto"
    # auto: exact BackSelect up to this many pixels; None = 1024 (32x32) on CUDA, 256 (16x16) on CPU,
    # where exact 32x32 costs 524,800 forward passes per image (minutes each).
    exact_max_pixels: int | None = None
    gradient_k: int = Field(default=100, ge=1)  # at most this many pixels per gradient step (and <= 1%)
    subset_fraction: float = Field(default=0.05, gt=0, le=1)
    max_small_sis_share: float = Field(default=0.5, ge=0, le=1)  # fail above this share of tiny SIS
    min_images: int = Field(default=5, ge=1)  # fewer confident images: inconclusive
    masked_confidence_max: float = 0.5  # a fully masked input this confident makes an SIS meaningless
    retrain_on_subsets: bool = False
    retrain_images: int = Field(default=512, ge=8)  # images backselected (gradient) for retraining
    retrain_epochs: int = Field(default=15, ge=1)
    n_show: int = Field(default=6, ge=0)


def run_backselect(ctx: AuditContext, images: torch.Tensor, cfg: SISConfig, method: str) -> BackSelectResult:
    kw: dict[str, Any] = dict(mean=ctx.mean, std=ctx.std, strategy=cfg.strategy)
    if method == "exact":
        return backselect(
            ctx.model, images, progress=lambda i, n: ctx.report(0.8 * i / n, f"BackSelect {i}/{n}"), **kw
        )
    return gradient_backselect(ctx.model, images, k=cfg.gradient_k, **kw)


def choose_method(cfg: SISConfig, ctx: AuditContext) -> str:
    if cfg.method != "auto":
        return cfg.method
    h, w = ctx.image_size
    limit = cfg.exact_max_pixels or (1024 if ctx.device.type == "cuda" else 256)
    return "exact" if h * w <= limit else "gradient"


def subset_stats(
    ctx: AuditContext,
    images: torch.Tensor,
    keep: torch.Tensor,
    clean: torch.Tensor,
    labels: torch.Tensor | None,
    strategy: str,
) -> dict[str, float | None]:
    """Accuracy and confidence of the model seeing only `keep` (the rest masked with `strategy`)."""
    logits = masked_logits(ctx.model, images, keep, strategy, mean=ctx.mean, std=ctx.std, seed=ctx.seed)
    probs = torch.softmax(logits, 1).cpu()
    pred = probs.argmax(1)
    return {
        "accuracy": float((pred == labels).float().mean()) if labels is not None else None,
        "agreement": float((pred == clean.cpu()).float().mean()),
        "confidence_mean": float(probs.amax(1).mean()),
        "target_prob_mean": float(probs.gather(1, clean.cpu().view(-1, 1)).mean()),
    }


class SIS(Audit[SISConfig]):
    name = NAME
    Config = SISConfig

    def forward_passes(self, config: SISConfig, shape: RunShape) -> Passes:
        """Exact BackSelect: n(n+1)/2 passes per image of n pixels; gradient: a forward + backward and
        a check per step (`step_sizes`: at most k pixels, 1% of the image, a share of what is left).
        Only confident images are explained, so this is an upper bound. Plus clean, fully masked, target, f(x), sufficiency and the two
        5% subsets; overlays and a histogram."""
        n = min(config.n_images, shape.n_images)
        n_px = shape.height * shape.width
        limit = config.exact_max_pixels or (1024 if shape.is_cuda else 256)
        exact = config.method == "exact" or (config.method == "auto" and n_px <= limit)
        total = Passes(forward=7 * n, calls=7, figures=1 + (2 if config.n_show else 0))
        steps = len(step_sizes(n_px, config.gradient_k))
        if exact:
            total += Passes(forward=n * n_px * (n_px + 1) // 2, calls=n_px * n)
        else:
            total += Passes(forward=steps * n, gradient=steps * n, calls=2 * steps * math.ceil(n / 64))
        if config.retrain_on_subsets:
            m = min(config.retrain_images, shape.n_images)
            total += Passes(
                forward=steps * m, gradient=steps * m + config.retrain_epochs * m, calls=2 * steps
            )
        return total

    def compute(self, ctx: AuditContext, config: SISConfig, seed: int) -> AuditResult:
        cfg = config
        if not parse_strategy(cfg.strategy).is_pixel_fill:
            raise ValueError(f"SIS masks single pixels with a fill value; {cfg.strategy} is not a pixel fill")
        method = choose_method(cfg, ctx)
        h, w = ctx.image_size
        n_px = h * w
        # The confident images of every class (an SIS exists only where f >= tau), not a prefix.
        probs_all = torch.softmax(plain_logits(ctx.model, ctx.images, mean=ctx.mean, std=ctx.std).float(), 1)
        f_all, pred_all = (t.cpu().numpy() for t in probs_all.max(1))
        groups = ctx.labels.cpu().numpy() if ctx.labels is not None else pred_all
        eligible = f_all >= cfg.tau
        index = stratified_among(groups, eligible, cfg.n_images, seed=seed, salt=_SALT)
        selection = {
            "n_candidates": int(f_all.size),
            "n_confident": int(eligible.sum()),
            "n_confident_per_class": _per_class(ctx, groups, np.flatnonzero(eligible)),
            "n_per_class": _per_class(ctx, groups, index),
            "resolution_pct": _resolution_pct(method, n_px, cfg.gradient_k),
        }
        if index.size == 0:
            return AuditResult(
                name=NAME,
                verdict="inconclusive",
                summary=f"Inconclusive: none of the {f_all.size} images reaches confidence {cfg.tau}, so no SIS exists.",
                metrics={"selection": selection, "tau": cfg.tau, "n_images": 0},
                config={"method": method},
                n=0,
                meaning="No confident image to test for overinterpretation: lower tau or audit more images.",
            )
        chosen = torch.from_numpy(index)
        images = ctx.images[chosen]
        labels = ctx.labels[chosen].cpu() if ctx.labels is not None else None

        # docs/audits.md, "SIS and overinterpretation": check first that the fully masked input is well below tau.
        clean = plain_logits(ctx.model, images, mean=ctx.mean, std=ctx.std).argmax(1)
        none_kept = torch.zeros(len(images), h, w, dtype=torch.bool)
        masked = masked_logits(
            ctx.model, images, none_kept, cfg.strategy, mean=ctx.mean, std=ctx.std, seed=seed
        )
        f_masked = torch.softmax(masked, 1).gather(1, clean.view(-1, 1)).squeeze(1).cpu()
        if float((f_masked >= cfg.tau).float().mean()) > 0.5:
            return AuditResult(
                name=NAME,
                verdict="inconclusive",
                summary=f"inconclusive: with every pixel masked ({cfg.strategy}) the model already reaches "
                f"{cfg.tau} for most images, so every SIS would be empty; try another mask value",
                metrics={
                    "selection": selection,
                    "fully_masked": {"confidence_mean": float(f_masked.mean()), "f": f_masked.tolist()},
                },
                config={"method": method},
                n=len(images),
                meaning="The mask value itself makes the model confident, so SIS say nothing: try another "
                "mask value (strategy).",
            )
        ctx.report(0.0, f"{method} BackSelect on {len(images)} images")
        res = run_backselect(ctx, images, cfg, method)
        f_full = res.f_full.cpu()
        confident = f_full >= cfg.tau
        sis = sis_from_order(res, cfg.tau)
        sizes = [None if s is None else len(s) for s in sis]
        # Sufficiency is re-checked through the engine: the SIS alone must keep f >= tau.
        with_sis = [i for i, s in enumerate(sis) if s is not None and len(s) > 0]
        suff: list[float] = []
        if with_sis:
            keep = subset_keep([sis[i] for i in with_sis], h, w)  # type: ignore[misc]
            logits = masked_logits(
                ctx.model, images[with_sis], keep, cfg.strategy, mean=ctx.mean, std=ctx.std
            )
            suff = torch.softmax(logits, 1).gather(1, clean[with_sis].view(-1, 1)).squeeze(1).cpu().tolist()
        ctx.report(0.85, "5% subsets")
        bs_sub = backselect_subset(res, cfg.subset_fraction)
        rnd_sub = random_subsets(len(images), n_px, len(bs_sub[0]), seed)
        subsets = {
            "n_pixels": len(bs_sub[0]),
            "fraction": cfg.subset_fraction,
            "backselect": subset_stats(ctx, images, subset_keep(bs_sub, h, w), clean, labels, cfg.strategy),
            "random": subset_stats(ctx, images, subset_keep(rnd_sub, h, w), clean, labels, cfg.strategy),
        }
        pct = [None if s is None else 100.0 * s / n_px for s in sizes]
        conf_pct = [p for p, c in zip(pct, confident.tolist(), strict=True) if c and p is not None]
        small = [p <= 100 * cfg.subset_fraction for p in conf_pct]
        metrics: dict[str, Any] = {
            "method": method,
            "strategy": cfg.strategy,
            "tau": cfg.tau,
            "n_images": len(images),
            "selection": selection,
            "n_pixels": n_px,
            "clean": {
                "confidence_mean": float(f_full.mean()),
                "share_confident": float(confident.float().mean()),
                "accuracy": float((clean.cpu() == labels).float().mean()) if labels is not None else None,
            },
            "fully_masked": {
                "confidence_mean": float(f_masked.mean()),
                "confidence_max": float(f_masked.max()),
                "share_at_or_above_tau": float((f_masked >= cfg.tau).float().mean()),
            },
            "sis_size": {
                "pct": pct,
                "n_with_sis": len(conf_pct),
                "mean_pct": float(np.mean(conf_pct)) if conf_pct else None,
                "median_pct": float(np.median(conf_pct)) if conf_pct else None,
                "min_pct": float(np.min(conf_pct)) if conf_pct else None,
                "max_pct": float(np.max(conf_pct)) if conf_pct else None,
            },
            "share_confident_sis_le_5pct": float(np.mean(small)) if small else None,
            "sufficiency": {
                "f": suff,
                "share_ge_tau": float(np.mean([v >= cfg.tau for v in suff])) if suff else None,
            },
            "subset_5pct": subsets,
            "size_vs_correctness": size_vs_correctness(pct, clean.cpu(), labels),
        }
        if cfg.retrain_on_subsets:
            ctx.report(0.9, "retraining on 5% subsets")
            metrics["retrain"] = retrain_on_subsets(
                ctx,
                cfg.retrain_images,
                cfg.gradient_k,
                cfg.strategy,
                cfg.subset_fraction,
                cfg.retrain_epochs,
                seed,
            )
        share_est = proportion(sum(small), len(small))
        metrics["share_confident_sis_le_5pct_interval"] = share_est.as_dict()
        verdict, summary, findings, meaning = _verdict(metrics, cfg, share_est)
        artifacts = write_sis_artifacts(ctx, NAME, images, sis, bs_sub, pct, cfg.n_show)
        return AuditResult(
            name=NAME,
            verdict=verdict,
            summary=summary,
            metrics=metrics,
            findings=findings,
            artifacts=artifacts,
            config={"method": method},
            n=share_est.n,
            estimate={
                **share_est.as_dict(),
                "statistic": f"share of confident images with an SIS <= {100 * cfg.subset_fraction:g}% of pixels",
            },
            meaning=meaning,
        )


def _per_class(ctx: AuditContext, groups: np.ndarray, index: np.ndarray) -> dict[str, int]:
    counts = counts_per_class(groups, index, len(ctx.class_names))
    return dict(zip(ctx.class_names, counts, strict=True))


def _resolution_pct(method: str, n_px: int, k: int) -> float:
    """How accurately an SIS size is known, in % of the pixels: the largest BackSelect step."""
    largest = 1 if method == "exact" else max(step_sizes(n_px, k))
    return round(100.0 * largest / n_px, 4)


def _verdict(m: dict[str, Any], cfg: SISConfig, share: Estimate) -> tuple[Verdict, str, list[Finding], str]:
    """Fail (overinterpretation) when the share of confident images resting on <= 5% of their pixels is
    surely above `max_small_sis_share` (its whole Wilson interval), pass when surely at or below,
    inconclusive otherwise or on fewer than `min_images` confident images.

    An SIS means nothing when the fully masked input is itself confident, or when no image is confident.
    """
    fm = m["fully_masked"]
    findings: list[Finding] = []
    if fm["confidence_max"] >= cfg.masked_confidence_max:
        findings.append(
            Finding(
                kind="confident_when_masked",
                summary=f"With every pixel masked ({cfg.strategy}) the model is still up to "
                f"{fm['confidence_max']:.2f} confident: the mask value itself carries class evidence.",
                evidence=fm,
            )
        )
    if share.n == 0:
        return (
            "inconclusive",
            f"Inconclusive: no image reaches confidence {cfg.tau}, so no SIS exists.",
            findings,
            "No confident image to test for overinterpretation: lower tau or audit more images.",
        )
    if fm["share_at_or_above_tau"] > 0.5:
        return (
            "inconclusive",
            f"Inconclusive: the fully masked input reaches {cfg.tau} for most images, so SIS are empty.",
            findings,
            "The mask value itself makes the model confident, so SIS say nothing: try another mask value.",
        )
    sub = m["subset_5pct"]
    pct = 100 * cfg.subset_fraction
    detail = (
        f"{share.value:.0%} [{share.lo:.0%}, {share.hi:.0%}] of {share.n} confident images have an SIS of "
        f"<= {pct:g}% of pixels (median {m['sis_size']['median_pct']:.1f}%, accurate to "
        f"{m['selection']['resolution_pct']:.2g}%); on {sub['n_pixels']} backselected pixels the model keeps "
        f"{sub['backselect']['agreement']:.0%} of its predictions vs {sub['random']['agreement']:.0%} on "
        "random pixels"
    )
    decision = decide(share, fail_above=cfg.max_small_sis_share, min_n=cfg.min_images)
    if decision == "fail":
        findings.append(Finding(kind="overinterpretation", summary=detail, evidence=share.as_dict()))
        return (
            "fail",
            f"Overinterpretation: {detail}.",
            findings,
            (
                f"The model is confident from <= {pct:g}% of the pixels on most images: it overinterprets "
                "(a model finding). Ensembles or input dropout during training reduce it."
            ),
        )
    if decision == "pass":
        return (
            "pass",
            f"No overinterpretation: {detail}.",
            findings,
            (f"The model needs more than {pct:g}% of the pixels to be confident on most images."),
        )
    why = (
        f"only {share.n} confident images (< {cfg.min_images})"
        if share.n < cfg.min_images
        else "the interval straddles the limit"
    )
    return (
        "inconclusive",
        f"Inconclusive ({why}): {detail}.",
        findings,
        ("Too few confident images to tell whether the model overinterprets: raise n_images."),
    )
