"""The SIS audit's merge: its shards' per-image results, in pick order, into the audit's result.

Every metric, the verdict, the findings and the pictures are computed here from the whole pick, so a
single run (one shard) and a sharded run share this code and give the same result. No model and no
images: what the pictures need travels in the partials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from auditors.audits.base import LegacyPartial, ShardMeta
from auditors.audits.partials import unpack_arrays
from auditors.audits.ranges import check_tiling
from auditors.audits.sis.config import NAME, SISConfig
from auditors.audits.sis.controls import Shown, size_vs_correctness, write_sis_artifacts
from auditors.methods.backselect import subset_size
from auditors.report import AuditResult, Finding, Verdict
from auditors.stats import Estimate, decide, proportion

# What every shard resolved alike; shards that disagree were run with different configs or data.
_SHARED = ("seed", "method", "strategy", "height", "width", "n_pick", "selection", "skipped")
_LISTS = ("labels", "clean", "f_full", "f_masked", "sis_size", "sufficiency")


def _mean(values: Sequence[float | bool]) -> float:
    return float(np.mean(values))


def _shown(parts: Sequence[LegacyPartial], pct: list[float | None], n_show: int) -> list[Shown]:
    """The `n_show` images with the smallest SIS (ties: the earlier position) over all shards; each
    shard sent its own smallest, so these are among them."""
    items = sorted(
        (it for part in parts for it in part["show"]), key=lambda it: (pct[it["position"]], it["position"])
    )
    out = []
    for it in items[:n_show]:
        a = unpack_arrays(it["arrays"])
        image = torch.from_numpy(a["image"].astype(np.float32) / 255.0)
        out.append(Shown(it["position"], image, torch.from_numpy(a["sis"]), torch.from_numpy(a["subset"])))
    return out


def merge(meta: ShardMeta, cfg: SISConfig, partials: Sequence[LegacyPartial]) -> AuditResult:
    """Concatenate the shards' per-image results in pick order and compute the audit from the whole."""
    if not partials:
        raise ValueError("no SIS shard to merge: the sample has no images")
    ordered = check_tiling(partials, min(cfg.n_images, meta.n_images))
    first = ordered[0]
    for part in ordered[1:]:
        if any(part[k] != first[k] for k in _SHARED):
            raise ValueError("shards were run with different settings; rerun them with one config")
    seed, method, n_pick, selection = first["seed"], first["method"], first["n_pick"], first["selection"]
    has_labels = all(part["labels"] is not None for part in ordered)
    v: dict[str, Any] = {k: [x for part in ordered for x in (part[k] or [])] for k in _LISTS}
    if len(v["clean"]) != n_pick:
        raise ValueError(f"shards hold {len(v['clean'])} of the {n_pick} picked images")
    config = {**cfg.model_dump(), "seed": seed, "method": method}
    seconds = round(float(sum(part.get("seconds", 0.0) for part in ordered)), 3)
    base: dict[str, Any] = dict(name=NAME, config=config, seconds=seconds)
    if n_pick == 0:
        return AuditResult(
            verdict="inconclusive",
            summary=f"Inconclusive: none of the {selection['n_candidates']} images reaches confidence "
            f"{cfg.tau}, so no SIS exists.",
            metrics={"selection": selection, "tau": cfg.tau, "n_images": 0},
            n=0,
            meaning="No confident image to test for overinterpretation: lower tau or audit more images.",
            **base,
        )
    f_masked = v["f_masked"]
    if first["skipped"]:
        return AuditResult(
            verdict="inconclusive",
            summary=f"inconclusive: with every pixel masked ({cfg.strategy}) the model already reaches "
            f"{cfg.tau} for most images, so every SIS would be empty; try another mask value",
            metrics={
                "selection": selection,
                "fully_masked": {"confidence_mean": _mean(f_masked), "f": f_masked},
            },
            n=n_pick,
            meaning="The mask value itself makes the model confident, so SIS say nothing: try another "
            "mask value (strategy).",
            **base,
        )
    n_px = first["height"] * first["width"]
    clean, labels = v["clean"], v["labels"] if has_labels else None
    confident = [f >= cfg.tau for f in v["f_full"]]
    pct = [None if s is None else 100.0 * s / n_px for s in v["sis_size"]]
    conf_pct = [p for p, c in zip(pct, confident, strict=True) if c and p is not None]
    small = [p <= 100 * cfg.subset_fraction for p in conf_pct]
    suff = [f for f in v["sufficiency"] if f is not None]
    metrics: dict[str, Any] = {
        "method": method,
        "strategy": cfg.strategy,
        "tau": cfg.tau,
        "n_images": n_pick,
        "selection": selection,
        "n_pixels": n_px,
        "clean": {
            "confidence_mean": _mean(v["f_full"]),
            "share_confident": _mean(confident),
            "accuracy": _mean([c == y for c, y in zip(clean, labels, strict=True)])
            if labels is not None
            else None,
        },
        "fully_masked": {
            "confidence_mean": _mean(f_masked),
            "confidence_max": float(max(f_masked)),
            "share_at_or_above_tau": _mean([f >= cfg.tau for f in f_masked]),
        },
        "sis_size": {
            "pct": pct,
            "n_with_sis": len(conf_pct),
            "mean_pct": _mean(conf_pct) if conf_pct else None,
            "median_pct": float(np.median(conf_pct)) if conf_pct else None,
            "min_pct": float(np.min(conf_pct)) if conf_pct else None,
            "max_pct": float(np.max(conf_pct)) if conf_pct else None,
        },
        "share_confident_sis_le_5pct": _mean(small) if small else None,
        "sufficiency": {"f": suff, "share_ge_tau": _mean([f >= cfg.tau for f in suff]) if suff else None},
        "subset_5pct": {
            "n_pixels": subset_size(n_px, cfg.subset_fraction),
            "fraction": cfg.subset_fraction,
            **{s: _subset_stats(ordered, s, clean, labels) for s in ("backselect", "random")},
        },
        "size_vs_correctness": size_vs_correctness(
            pct, torch.tensor(clean), None if labels is None else torch.tensor(labels)
        ),
    }
    if cfg.retrain_on_subsets:
        metrics["retrain"] = first["retrain"]  # the shard at position 0 retrained, on the whole sample
    share_est = proportion(sum(small), len(small))
    metrics["share_confident_sis_le_5pct_interval"] = share_est.as_dict()
    verdict, summary, findings, meaning = _verdict(metrics, cfg, share_est)
    artifacts = write_sis_artifacts(meta.out_dir, NAME, _shown(ordered, pct, cfg.n_show), pct)
    return AuditResult(
        verdict=verdict,
        summary=summary,
        metrics=metrics,
        findings=findings,
        artifacts=artifacts,
        n=share_est.n,
        estimate={
            **share_est.as_dict(),
            "statistic": f"share of confident images with an SIS <= {100 * cfg.subset_fraction:g}% of pixels",
        },
        meaning=meaning,
        **base,
    )


def _subset_stats(
    parts: Sequence[LegacyPartial], name: str, clean: list[int], labels: list[int] | None
) -> dict[str, float | None]:
    """Accuracy and confidence of the model seeing only a 5% subset (the rest masked)."""
    got = {
        k: [x for part in parts for x in part["subsets"][name][k]]
        for k in ("pred", "confidence", "target_prob")
    }
    pred = got["pred"]
    return {
        "accuracy": _mean([p == y for p, y in zip(pred, labels, strict=True)])
        if labels is not None
        else None,
        "agreement": _mean([p == c for p, c in zip(pred, clean, strict=True)]),
        "confidence_mean": _mean(got["confidence"]),
        "target_prob_mean": _mean(got["target_prob"]),
    }


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
