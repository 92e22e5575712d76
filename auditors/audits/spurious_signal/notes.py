"""Findings for the low-level global shortcuts and for sensitivities, in the report's contract.

A low-level shortcut is a `global_shortcut` finding that names its statistic (its box is the whole
image). A sensitivity (adding the signal moves other classes, removing it costs its class nothing
beyond the null) is a `sensitivity` finding: a note with the same numbers, which does not fail the
model, and whose advice says so.
"""

from __future__ import annotations

from typing import Any

from auditors.audits.spurious_signal.findings import global_shortcut, num, pct, spurious_region
from auditors.report import Finding


def _estimate(e: dict[str, Any] | None) -> dict[str, Any] | None:
    if not e:
        return None
    return {k: e[k] for k in ("value", "lo", "hi", "n", "p_value", "null_mean") if k in e}


def _what(r: dict[str, Any]) -> str:
    """How a tested signal is named in a sentence."""
    if r.get("statistic") == "pattern":
        where = f" at {r['box']}" if r.get("box") else ""
        return (
            f"a faint pattern{where} that {r['carriers']} of its {r['class_images']} images share (largest "
            f"amplitude {num(r['pattern_abs_max'], 3)} of the [0, 1] range)"
        )
    if "statistic" in r:
        direction = "higher" if r["shift"] > 0 else "lower"
        return f"its {direction} {r['statistic']} ({num(r['class_level'], 3)} vs {num(r['others_level'], 3)})"
    if "shift" in r:
        return "its colour cast (mean RGB shift " + ", ".join(num(v, 3) for v in r["shift"]) + ")"
    return f"a mark at {r['box']}"


def lowlevel_finding(r: dict[str, Any], height: int, width: int) -> Finding:
    """The `global_shortcut` finding of a confirmed low-level statistic."""
    cls, flip, rem = r["class"], r["flip"], r["removal"]
    if rem is not None:
        after = (
            f"taking it off the class's own images costs {num(rem['value'])} confidence vs "
            f"{num(rem['null_mean'] or 0.0)}"
        )
    else:
        sim = r["similar_mark"]
        after = (
            f"noise of the same energy turns {pct(sim['flip']['value'])} (it cannot be taken off the "
            "class's own images: a compression is not undone)"
        )
    summary = (
        f"{cls!r} is decided by {_what(r)}: giving other classes' images that level turns "
        f"{pct(flip['value'])} of {flip['n']} (95% CI {pct(flip['lo'])}–{pct(flip['hi'])}) into {cls!r}, "
        f"against {pct(flip['null_mean'])} for the same change the other way (p = {flip['p_value']:.2g}, "
        f"{r['correction']}); {after}. Advice: {r['advice']}."
    )
    evidence = {
        "scope": "image",
        "statistic": r["statistic"],
        "class_level": r["class_level"],
        "others_level": r["others_level"],
        "data_shift": r["shift"],
        "data_p_value": r["data_p_value"],
        "data_correction": r["data_correction"],
        "flip": _estimate(flip),
        "removal": None if rem is None else _estimate(rem),
        "similar_change": r.get("similar_mark"),
        "gain": _estimate(r["gain"]),
        "correction": r["correction"],
        "excess_flip": r["excess_flip"],
        "severity": r["severity"],
        "why": r["why"],
    }
    return global_shortcut(cls, summary, evidence, height, width)


def _judged(r: dict[str, Any], example_list: list[dict[str, Any]]) -> dict[str, Any]:
    """The evidence every tested class signal with a box's removal reports: the add and removal
    estimates, the correction, the excess over the null, the severity and why, and the pictures."""
    rem = r["removal"]
    return {
        "flip": _estimate(r["flip"]),
        "removal": (_estimate(rem) or {}) | {k: rem[k] for k in ("lost", "random_lost", "lost_p_value")},
        "gain": _estimate(r["gain"]),
        "correction": r["correction"],
        "excess_flip": r["excess_flip"],
        "severity": r["severity"],
        "why": r["why"],
        "examples": example_list,
    }


def pattern_finding(
    r: dict[str, Any], height: int, width: int, example_list: list[dict[str, Any]]
) -> Finding:
    """The finding of a confirmed class pattern: a `global_shortcut` for one spread over the image (a
    blend, a sinusoid), a `spurious_region` at its tight box for one that sits in one place (a
    semi-transparent watermark: `pattern.extent`)."""
    cls, flip, rem = r["class"], r["flip"], r["removal"]
    summary = (
        f"{cls!r} is decided by {_what(r)}: adding it to other classes' images turns "
        f"{pct(flip['value'])} of {flip['n']} (95% CI {pct(flip['lo'])}–{pct(flip['hi'])}) into {cls!r}, "
        f"against {pct(flip['null_mean'])} for the same pixels shuffled (p = {flip['p_value']:.2g}, "
        f"{r['correction']}); taking it off {rem['n']} of the class's images that carry it makes "
        f"{pct(rem['lost'])} of them leave the class and lowers p(class) by {num(rem['value'], 2)}, "
        f"against {pct(rem['random_lost'])} and {num(rem['null_mean'], 2)} for the shuffled pattern. "
        f"Advice: {r['advice']}."
    )
    box = r.get("box")
    evidence = {
        "scope": "region" if box else "image",
        "statistic": "pattern",
        "placement": "fixed" if box else "global",
        "blend": "additive",
        "kept": r.get("kept", "box" if box else "whole"),  # what of the carriers' mean was tested
        "data_z": r["z"],
        "carriers": r["carriers"],
        "class_images": r["class_images"],
        "pattern_abs_max": r["pattern_abs_max"],
        **_judged(r, example_list),
    }
    if box:
        evidence["mark_size"] = list(box[2:])
        return spurious_region(cls, summary, box, evidence)
    return global_shortcut(cls, summary, evidence, height, width)


def located_finding(
    r: dict[str, Any], height: int, width: int, example_list: list[dict[str, Any]]
) -> Finding:
    """The `spurious_region` of a confirmed located mark (`located`): the box the class's gradients
    single out, tested by moving the class's own pixels there onto other images."""
    cls, flip, rem, nulls = r["class"], r["flip"], r["removal"], r["nulls"]
    summary = (
        f"{cls!r} is decided by a mark at {r['box']} that the model looks at on its images (found from "
        f"the model's gradients, so it may change colour from image to image): moving that box's pixels "
        f"from {r['carriers']} of the class's {r['class_images']} images onto {flip['n']} images of other "
        f"classes turns {pct(flip['value'])} (95% CI {pct(flip['lo'])}–{pct(flip['hi'])}) into {cls!r}, "
        f"against {pct(nulls['other_content']['flip'])} for other classes' pixels there and "
        f"{pct(nulls['elsewhere']['flip'])} for the class's pixels from elsewhere "
        f"(p = {flip['p_value']:.2g}, {r['correction']}); taking it off those images makes {pct(rem['lost'])} of them leave the class, "
        f"against {pct(rem['random_lost'])} for a random box of its size. Advice: {r['advice']}."
    )
    evidence = {
        "scope": "region",
        "placement": "fixed",
        "found_by": "gradients",
        "mark_size": list(r["box"][2:]),
        "data_z": r["z"],
        "carriers": r["carriers"],
        "class_images": r["class_images"],
        "nulls": nulls,
        "holds_content": r["holds_content"],
        **_judged(r, example_list),
    }
    return spurious_region(cls, summary, r["box"], evidence)


def sensitivity_finding(r: dict[str, Any], height: int, width: int) -> Finding:
    """A `sensitivity` note: the model reacts to the signal without depending on it."""
    cls, flip = r["class"], r["flip"]
    local = r.get("box") is not None and ("statistic" not in r or r["statistic"] == "pattern")
    box = r["box"] if local else [0, 0, width, height]
    summary = (
        f"Sensitivity, not a shortcut: {_what(r)} moves {pct(flip['value'])} of {flip['n']} other-class "
        f"images to {cls!r}, but {r['why'].split(', but ', 1)[-1]}. Advice: {r['advice']}."
    )
    return Finding(
        kind="sensitivity",
        summary=summary,
        class_name=cls,
        box=[float(v) for v in box] if box else None,
        evidence={
            "flip": _estimate(flip),
            "excess_flip": r.get("excess_flip"),
            "removal": r.get("removal"),
            "severity": r["severity"],
            "why": r["why"],
            "statistic": r.get("statistic"),
            "scope": "region" if local else "image",
        },
    )
