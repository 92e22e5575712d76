"""The LIME consistency verdict and its sentences (docs/audits.md, "LIME consistency")."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from auditors.audits.base import Conclusion, Judgement
from auditors.audits.lime_consistency.config import LimeConfig
from auditors.report import Finding
from auditors.stats import Estimate, decide, interval_n_to_decide, power_plan, power_sentence


@dataclass
class LimeJudgement(Judgement):
    """The judgement, with each picked image's top-K agreement across fills (the overlays show the
    least consistent images first)."""

    per_image_consistency: list[float] = field(default_factory=list)


def verdict_of(
    metrics: dict[str, Any],
    cfg: LimeConfig,
    primary: str,
    ratio: Estimate,
    consistency: Estimate,
    native: list[str],
) -> Conclusion:
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
    why = ""
    if verdict == "inconclusive":
        plan = undecided_plan(cfg, ratio, consistency, removal, fills)
        metrics["power"] = plan
        why = power_sentence(plan)
    if ratio.n < cfg.min_images:
        return Conclusion(
            "inconclusive",
            f"Inconclusive: {detail}.",
            findings,
            f"Too few images to judge LIME ({ratio.n} < {cfg.min_images}): {why}.",
        )
    if verdict == "pass":
        what = "informative" if colour_free else "informative and consistent across fill colours"
        return Conclusion(
            "pass",
            f"LIME explanations are {what}: {detail}.",
            findings,
            f"LIME explanations of this model computed with {primary} can be trusted.",
        )
    if verdict == "fail":
        what = "do not rank what the model uses" if removal == "fail" else "depend on the fill colour"
        use = f"; use {better}" if better else ""
        return Conclusion(
            "fail",
            f"LIME explanations are unreliable: {detail}.",
            findings,
            f"LIME explanations of this model computed with {primary} {what}: they are unreliable{use}.",
        )
    return Conclusion(
        "inconclusive",
        f"Inconclusive: {detail}.",
        findings,
        f"The data cannot tell whether LIME explanations with {primary} are reliable: {why}.",
    )


def undecided_plan(
    cfg: LimeConfig, ratio: Estimate, consistency: Estimate, removal: str, fills: str
) -> dict[str, Any]:
    """The n at which each undecided rule would decide at its observed effect (its interval narrowing
    as 1/sqrt(n)), the largest of them; below `min_images`, at least `min_images`; the planned n when
    an interval has no finite side to scale."""
    needs: list[int | None] = []
    if removal == "inconclusive":
        needs.append(interval_n_to_decide(ratio, cfg.removal_ratio_max))
    if fills == "inconclusive" and consistency.n > 0:
        needs.append(interval_n_to_decide(consistency, cfg.consistency_min))
    if ratio.n < cfg.min_images:
        needs = [max(cfg.min_images, n if n is not None else cfg.planned_n()) for n in needs or [None]]
    if None in needs and math.isfinite(ratio.value) and ratio.value != cfg.removal_ratio_max:
        # The interval has no finite side to scale (a resample without a changed random prediction):
        # fall back on the planning effect's n.
        return power_plan(ratio.n, max(ratio.n, cfg.planned_n()), basis="planning effect")
    need = None if not needs or None in needs else max(n for n in needs if n is not None)
    return power_plan(ratio.n, need)


def _num(value: float) -> str:
    return f"{value + 0.0:.2f}"
