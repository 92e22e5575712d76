"""The verdict of the spurious-signal audit: what it rests on, what it means, and its sentence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auditors.audits.base import Judgement
from auditors.audits.spurious_signal import INFO
from auditors.audits.spurious_signal.boxes import inside, iou
from auditors.audits.spurious_signal.config import SpuriousConfig
from auditors.audits.spurious_signal.discover import OUT_OF_SCOPE
from auditors.report import Finding, Verdict

AUDIT = INFO.name


@dataclass
class SpuriousJudgement(Judgement):
    """The judgement, with the example images of the confirmed findings for `draw` to write
    (example tag -> `findings.example_data`)."""

    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def conclude(
    findings: list[Finding],
    region_metrics: dict[str, Any],
    discovery: dict[str, Any],
    metrics: dict[str, Any],
    config: SpuriousConfig,
    n: int,
    n_regions: int,
    num_classes: int,
    examples: dict[str, list[dict[str, Any]]],
) -> SpuriousJudgement:
    """Fail on a confirmed region or colour cast; inconclusive when discovery could test no class and
    no hinted region was tested; else pass, saying what was and was not tested."""
    candidates = discovery["candidates"]
    confirmed = [f for f in findings if f.kind in ("spurious_region", "global_shortcut")]
    untested = discovery.get("untested_classes", [])
    tested_regions = [r for r in region_metrics.values() if "flip" in r]
    verdict: Verdict = "fail" if confirmed else "pass"
    if confirmed:
        summary = "Shortcut(s) confirmed: " + "; ".join(
            f"{f.class_name!r} at {[round(v) for v in f.box or []]}"
            if f.kind == "spurious_region"
            else f"{f.class_name!r} by a faint pattern its images share"
            if f.evidence.get("statistic") == "pattern"
            else f"{f.class_name!r} by its {f.evidence['statistic']}"
            if f.evidence.get("statistic")
            else f"{f.class_name!r} by its colour cast"
            for f in confirmed
        )
    elif config.discovery and len(untested) == num_classes and not tested_regions:
        verdict = "inconclusive"
        summary = (
            f"Too few images to test: no class has {config.min_group} of the {n} audited "
            "images; audit more images."
        )
    else:
        notes = [f for f in findings if f.kind == "sensitivity"]
        summary = (
            f"No shortcut confirmed ({n_regions} hinted, {len(candidates)} fixed and "
            f"{len(discovery.get('moving', []))} moving discovery candidates, "
            f"{len(discovery['global'])} class colour casts, {len(discovery.get('lowlevel', []))} "
            f"class low-level statistics, {len(discovery.get('patterns', []))} class patterns and "
            f"{len(discovery.get('located', []))} places the model's gradients single out tested"
            + (
                f"; {len(notes)} sensitivity note(s): the model reacts to a signal it does not depend on"
                if notes
                else ""
            )
            + (f"; too few images to test {', '.join(untested)}" if untested else "")
            + _colour_resolution(discovery)
            + "); not tested: "
            + "; ".join(OUT_OF_SCOPE)
            + "."
        )
    tested = [
        *tested_regions,
        *candidates,
        *discovery.get("moving", []),
        *discovery["global"],
        *discovery.get("lowlevel", []),
        *discovery.get("patterns", []),
        *discovery.get("located", []),
    ]
    tested = [t for t in tested if _shown(t, findings)]  # the verdict rests on what the report shows
    return SpuriousJudgement(
        verdict=verdict,
        summary=summary,
        metrics=metrics,
        findings=findings,
        n=n,
        estimate=strongest_effect(tested, confirmed=[t for t in tested if t.get("confirmed")]),
        meaning=meaning(verdict, confirmed),
        examples=examples,
    )


def max_enrichment(region: dict[str, Any]) -> float:
    vals = [
        g["enrichment"] for m in region.get("methods", {}).values() for g in m["per_predicted_class"].values()
    ]
    return max(vals, default=0.0)


def already_found(findings: list[Finding], new: Finding) -> bool:
    """A discovered mark that a hinted region of the same class already covers is not reported twice."""
    return any(
        f.kind == new.kind
        and f.class_name == new.class_name
        and f.box
        and new.box
        and iou(f.box, new.box) > 0.3
        for f in findings
    )


def covered(cls: str | None, box: list[float] | None, shortcut: bool, findings: list[Finding]) -> bool:
    """Whether a class pattern (localized to `box`, or spread when None) is covered by a region found
    on its class: a region shortcut covers any pattern, a region the model merely reacts to covers only
    a pattern that is itself a sensitivity; a localized pattern only by a region holding at least half
    of it (a fixed mark's box, or the zone of a mark that moves, whose detail the class mean keeps at
    the places it sits most)."""
    for f in findings:
        if f.class_name != cls or f.evidence.get("statistic") == "pattern":
            continue
        region = f.kind == "spurious_region" or (
            f.kind == "sensitivity" and f.evidence.get("scope") == "region"
        )
        if not region or (shortcut and f.kind != "spurious_region"):
            continue
        if box is None or (f.box is not None and inside(box, f.box) >= 0.5):
            return True
    return False


def _pattern_box(f: Finding) -> list[float] | None:
    return f.box if f.evidence.get("scope") == "region" else None


def without_covered_patterns(findings: list[Finding]) -> list[Finding]:
    """A class's shared pattern is not reported beside a region found on the same class (`covered`): a
    fixed mark's fine detail is a pattern too, and the region says more (where it is and what it
    looks like). A pattern shortcut gives way only to a region shortcut, never to a region that is a
    mere sensitivity. Its test stays in the metrics."""
    return [
        f
        for f in findings
        if f.evidence.get("statistic") != "pattern"
        or not covered(f.class_name, _pattern_box(f), f.kind != "sensitivity", findings)
    ]


def _shown(t: dict[str, Any], findings: list[Finding]) -> bool:
    """Whether a tested signal is one the report shows (`without_covered_patterns`; a located mark that
    another finding explains, `merge._explained`)."""
    if t.get("explained"):
        return False
    if t.get("statistic") != "pattern":
        return True
    return not covered(t.get("class"), t.get("box"), bool(t.get("confirmed")), findings)


def strongest_effect(tested: list[dict[str, Any]], confirmed: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the verdict rests on: the stamp flip rate (n, 95% interval, corrected p, null) of the
    confirmed shortcut with the largest excess over its null, else of the strongest effect tested."""
    pool = confirmed or [t for t in tested if isinstance(t.get("flip"), dict)]
    if not pool:
        return None
    best = max(pool, key=lambda t: float(t.get("excess_flip", 0.0)))
    flip = best["flip"]
    kind = str(best["statistic"]) if "statistic" in best else "colour cast" if "shift" in best else "region"
    estimate = {k: flip[k] for k in ("value", "lo", "hi", "n", "p_value", "null_mean") if k in flip}
    if estimate.get("null_mean") is None and isinstance(best.get("null_flip"), dict):
        estimate["null_mean"] = best["null_flip"].get("value")
    return estimate | {
        "level": 0.95,
        "statistic": f"stamp flip rate toward {best.get('class')!r}, strongest {kind} tested "
        f"({best.get('correction', 'uncorrected')})",
    }


def _colour_resolution(discovery: dict[str, Any]) -> str:
    """What the colour screen could not see at this sample (`global_shift.colour_z`): a pass says how
    small a cast escapes it, so that a reader does not take it for a clean bill on faint casts."""
    res = (discovery.get("colour_screen") or {}).get("resolution") or {}
    if not res:
        return ""
    worst = max(res.values())
    return (
        f"; a colour cast moving a class's mean colour by less than {worst:.3f} (RGB, 0-1) cannot show "
        "at this sample (on a third of a class, three times that on its images; more images per class "
        "shrink it as one over their square root)"
    )


def meaning(verdict: str, confirmed: list[Finding]) -> str:
    if verdict == "fail":
        classes = ", ".join(sorted({repr(f.class_name) for f in confirmed}))
        return (
            f"The model predicts {classes} from a shortcut, not from the object: remove or randomise the "
            "mark (or balance it across classes) in the training data, retrain, and audit again."
        )
    if verdict == "inconclusive":
        return "Too few images per class to test for shortcuts: audit more images."
    return (
        "No fixed mark, colour cast or low-level statistic (detail, JPEG blockiness, pixel noise) "
        "decides a class on these images; not tested: " + "; ".join(OUT_OF_SCOPE) + "."
    )
