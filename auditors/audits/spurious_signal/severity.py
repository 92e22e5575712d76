"""Severity: a shortcut, or a reaction? What fails a model and what is only a note.

Adding an unusual mark moves many models, clean ones too (an odd patch is out of distribution). A
shortcut is more: a signal the class *depends on*. So a candidate is a `shortcut` only when both
counterfactuals hold against their nulls:

- add: putting it on other classes' images turns them into the class far beyond the null (the
  stamp rule: corrected p < alpha and an excess flip of at least `min_flip`), and
- remove: taking it off the class's own images that carry it costs the class more than the null
  removal does. For a box: the share of the class's images that stop being predicted as the class
  beats random boxes of the same size by `min_flip` at its 95% lower bound (one-sided p < alpha). A
  clean model's confidence drops when an odd mark it reacts to is removed, but its images mostly stay
  the class (the demo's clean control loses 0.24 confidence on its circles and 4 of 24 stop being
  circles, lower bound 7%; the planted CNN loses all 24). For a global change: the mean drop
  in p(class) beats the same change in the other direction (one-sided p < alpha).

A signal that *alone* turns most of the other classes' images into the class (flip share >= 1/2, on
top of the stamp rule's significance against its nulls) is a shortcut too, whatever its removal
shows: it is sufficient for the class (the sufficiency test of Spurious ImageNet, Neuhaus et al.
2023). A partly biased model that also learned the object loses little when the mark is removed,
yet a mark that decides for the class on most inputs is exactly what a gate must stop; a clean
model's reaction to an odd patch moves a minority. Not so a class pattern: a class's mean fine detail
holds its objects' own detail where they sit alike, and a clean model reads that as the object (a clean
CNN of the validity bench turned 52% of other images into its class 3 with that class's mean detail,
against 17% shuffled, and lost little when it was taken off); a pattern is sufficient only when its
removal also costs the class confidence beyond its null.

A mark that moves fewer than half of them is still a shortcut when the model learned *that* mark:
stamping it moves other classes' images far beyond a similar mark does (the same size, shape, colours
and contrast with another structure: `nulls.matched_test`; for a mark found as a pattern at one place,
its own pixels shuffled there, and for one kept to its tones, its values shuffled over the image), by
at least `min_flip` with p < alpha, and taking it off the class's own images costs the class confidence
beyond the null (p < alpha). A clean model that merely reacts to a dark patch moves as much for any
dark patch of that size (the demo's clean control: 32% for the mark, 32% for its similar marks), while
a partly biased model that learned the mark, and the object as well, loses little of the class when the
mark is removed yet reacts to this mark far more than to its like.
A solid mark's similar mark is the mark itself, and its removal does not tell either: a clean model
that reacts to any dark patch toward a class loses that class when the dark mark on its images is
removed (the demo's clean control on one machine: 34% of other images turned, 25% of its circles lost,
against 17% and 1% for the nulls; on another 32% and 3 of 24). So a solid mark is a shortcut only when
it is sufficient.

A compression cannot be taken off: nothing gives a compressed image back its detail. For it the data
screen has shown that the class's images carry it, and the model must have learned *that* change: it
turns other classes' images into the class beyond noise of the same energy per image does (another
structure, the same size of change), by at least `min_flip` with p < alpha, or alone turns most of them.

Adding alone, below that, is a `sensitivity`: the model reacts to the signal but does not need it,
so it is reported as a note with its numbers and does not fail the model. Each judgement says why,
and the advice fits it.
"""

from __future__ import annotations

from typing import Any, Literal

from auditors.stats import holm, proportion

Severity = Literal["shortcut", "sensitivity", "none"]

# A signal that turns at least this share of other classes' images into the class is sufficient for
# it: a majority, a natural bound rather than one fitted to any planted case.
SUFFICIENT_FLIP = 0.5
# A class pattern's mean detail can be the objects' own, and a class's pixel noise its texture's: each
# is sufficient only when taking it off costs the class too.
NOT_SUFFICIENT_ALONE = frozenset({"pattern", "noise"})
# What a mark is compared with when its similar-mark result does not say (`nulls.matched_test`).
LIKE = "a similar mark (the same size, shape, colours and contrast, another structure)"

ADVICE = {
    "shortcut": "remove or randomise the signal in the training data (or balance it across classes), "
    "retrain, and audit again",
    "sensitivity": "nothing the class depends on; if such signals can reach production images, augment "
    "the training data with them so the model learns to ignore them",
    "none": "nothing to do",
}


def removal_numbers(removal: dict[str, Any] | None) -> tuple[float, float, float, int] | None:
    """(mean drop, null drop, p-value, n) of a removal result of any test's shape (box removal
    against random boxes, or a global change against its mirror), or None when it did not run."""
    if not removal:
        return None
    if "removal" in removal:  # nulls.removal_test: effect / random_effect / n and an inner estimate
        inner = removal.get("removal")
        if not inner or not removal.get("n"):
            return None
        return (
            float(removal["effect"]),
            float(removal["random_effect"]),
            float(inner["p_value"]),
            int(removal["n"]),
        )
    if removal.get("p_value") is None or removal.get("null_mean") is None:
        return None
    return (
        float(removal["value"]),
        float(removal["null_mean"]),
        float(removal["p_value"]),
        int(removal.get("n", 0)),
    )


def _lost_class(removal: dict[str, Any], alpha: float, min_lost: float) -> tuple[Severity, str]:
    """A box's removal judged by predictions: the share of the class's images that stop being the
    class without the mark, against random boxes of its size."""
    lost, rand, p, n = removal["lost"], removal["random_lost"], removal["lost_p_value"], removal["n"]
    # The loss must be at least `min_lost` beyond random boxes with 95% confidence (the Wilson lower
    # bound of the share), not only in its point estimate: the same kind of statement as the stamp's.
    low = proportion(round(lost * n), n).lo
    if p < alpha and low - rand >= min_lost:
        return "shortcut", (
            f"adding it moves other classes' images far beyond the null, and removing it from {n} of the "
            f"class's own images makes {lost:.0%} of them leave the class, against {rand:.0%} for random "
            f"boxes (p = {p:.3g})"
        )
    return "sensitivity", (
        f"adding it moves other classes' images toward the class, but removing it from {n} of the class's "
        f"own images makes only {lost:.0%} of them leave the class (95% lower bound {low:.0%}), against "
        f"{rand:.0%} for random boxes (p = {p:.3g}): the model reacts to it without depending on it"
    )


def judge(
    stamp_confirmed: bool,
    removal: dict[str, Any] | None,
    alpha: float,
    min_lost: float = 0.1,
    flip: float | None = None,
    similar: dict[str, Any] | None = None,
    sufficient_alone: bool = True,
    removable: bool = True,
) -> tuple[Severity, str]:
    """The severity of a tested signal and the reason, in a sentence's words. A signal whose stamp
    is confirmed and turns `flip` >= SUFFICIENT_FLIP of other classes' images is sufficient for the
    class; else a box's removal is judged by the class's images that leave the class (`min_lost`
    beyond random boxes): a clean model's confidence drops when an odd mark it reacts to is removed,
    but its images stay the class. Below both, a mark that beats its `similar` mark (the module doc)
    and whose removal costs the class confidence is a shortcut the model learned beside the object.
    Without `sufficient_alone` (a class pattern: its mean detail can be the object's own where objects
    sit alike; a class's pixel noise, its texture's), sufficiency also needs that cost. A signal that
    is not `removable` (a compression) is judged by sufficiency and likeness alone (`_unremovable`)."""
    if not stamp_confirmed:
        return "none", "adding it does not move other classes' images beyond the null"
    if not removable:
        return _unremovable(flip, similar, alpha, min_lost)
    level, why = _by_removal(removal, alpha, min_lost)
    if level == "shortcut" and similar is not None and similar.get("solid"):
        level, why = "sensitivity", _solid(removal)
    if (
        level == "sensitivity"
        and flip is not None
        and flip >= SUFFICIENT_FLIP
        and (sufficient_alone or _costs(removal, alpha))
    ):
        return "shortcut", (
            f"adding it alone turns {flip:.0%} of other classes' images into the class, far beyond the "
            "null: the signal is sufficient for the class on most inputs (its removal costs the class's "
            "own images less, so the model uses the object as well)"
        )
    if level == "sensitivity" and similar is not None:
        return _by_likeness(similar, removal, alpha, min_lost) or (level, why)
    return level, why


def _solid(removal: dict[str, Any] | None) -> str:
    """Why a solid mark whose removal costs its class is still only a sensitivity (module doc)."""
    cost = ""
    if removal and "lost" in removal:
        cost = (
            f" (removing it from {removal['n']} of the class's own images makes {removal['lost']:.0%} of them "
            f"leave the class, against {removal['random_lost']:.0%} for random boxes)"
        )
    return (
        "adding it moves other classes' images toward the class, but it is one solid colour: nothing tells "
        "a model that learned it from one that reacts to any patch of that colour there, and taking such a "
        f"patch off costs a class whose images that reaction favours{cost}; a solid mark is a shortcut "
        "only when it alone turns most of the other classes' images into the class"
    )


def _unremovable(
    flip: float | None, similar: dict[str, Any] | None, alpha: float, min_flip: float
) -> tuple[Severity, str]:
    """A signal that cannot be taken off the class's own images (nothing gives a compressed image back
    its detail): a shortcut when it is sufficient for the class, or when the model learned *this*
    change, moving other classes' images beyond a similar change (the same energy, another
    structure) by `min_flip` with p < alpha. The data screen has already shown the class's images
    carry it; a model that merely reacts to any degradation of that size moves as much for the
    similar change."""
    if flip is not None and flip >= SUFFICIENT_FLIP:
        return "shortcut", (
            f"adding it alone turns {flip:.0%} of other classes' images into the class, far beyond the "
            "null: the signal is sufficient for the class on most inputs"
        )
    if similar is not None:
        excess, p_add = float(similar["excess"]), float(similar["p_value"])
        if p_add < alpha and excess >= min_flip:
            return "shortcut", (
                f"the model learned this very change: it turns {excess:.0%} more of other classes' images "
                f"into the class than noise of the same energy does (p = {p_add:.3g}), and the class's own "
                "images carry it; it cannot be taken off them (a compression is not undone), so the "
                "model's dependence rests on that"
            )
        return "sensitivity", (
            f"adding it moves other classes' images toward the class, but only {max(excess, 0.0):.0%} more "
            f"than noise of the same energy (p = {p_add:.3g}), and it cannot be taken off the class's own "
            "images to show that the class depends on it: the model reacts to degradation of that size"
        )
    return "sensitivity", (
        "adding it moves other classes' images toward the class, but it cannot be taken off the class's "
        "own images to show that the class depends on it"
    )


def _costs(removal: dict[str, Any] | None, alpha: float) -> bool:
    """Whether taking the signal off the class's own images lowers p(class) beyond its null."""
    nums = removal_numbers(removal)
    return nums is not None and nums[2] < alpha and nums[0] > nums[1]


def _by_likeness(
    similar: dict[str, Any], removal: dict[str, Any] | None, alpha: float, min_flip: float
) -> tuple[Severity, str] | None:
    """Shortcut when the mark moves other classes far beyond a similar mark and its removal costs the
    class confidence beyond the null; None otherwise."""
    nums = removal_numbers(removal)
    if nums is None:
        return None
    drop, null_drop, p_drop, n = nums
    excess, p_add = float(similar["excess"]), float(similar["p_value"])
    if p_add < alpha and excess >= min_flip and _costs(removal, alpha):
        return "shortcut", (
            f"the model learned this very mark: it turns {excess:.0%} more of other classes' images into "
            f"the class than {similar.get('like', LIKE)} does (p = {p_add:.3g}), and removing it from {n} "
            f"of the class's own images lowers p(class) by {drop:.2f} against {null_drop:.2f} for the null "
            f"(p = {p_drop:.3g}); the class keeps most of them, so the model uses the object as well"
        )
    return None


def _by_removal(removal: dict[str, Any] | None, alpha: float, min_lost: float) -> tuple[Severity, str]:
    """Shortcut when removing the signal costs the class beyond its null, else sensitivity."""
    if removal and removal.get("n") and "lost" in removal:
        return _lost_class(removal, alpha, min_lost)
    nums = removal_numbers(removal)
    if nums is None and removal and removal.get("n_random_boxes") == 0:
        return "sensitivity", (
            "adding it moves other classes' images toward the class, but its box leaves no room for a "
            "random box of its size, so its removal has no null to show that the class depends on it"
        )
    if nums is None:
        return "sensitivity", (
            "adding it moves other classes' images toward the class, but the class's own images do not "
            "carry it, so the class cannot depend on it"
        )
    drop, null_drop, p, n = nums
    if p < alpha and drop > null_drop:
        return "shortcut", (
            f"adding it moves other classes' images far beyond the null, and removing it from {n} of the "
            f"class's own images lowers p(class) by {drop:.2f} against {null_drop:.2f} for the null "
            f"(p = {p:.3g})"
        )
    return "sensitivity", (
        f"adding it moves other classes' images toward the class, but removing it from {n} of the class's "
        f"own images costs the class no more than the null does ({drop:.2f} against {null_drop:.2f}, "
        f"p = {p:.3g}): the model reacts to it without depending on it"
    )


def annotate(result: dict[str, Any], alpha: float, min_lost: float = 0.1) -> Severity:
    """Record `severity`, `why` and `advice` on a judged candidate (its `confirmed` flag is the stamp
    rule's) and narrow `confirmed` to shortcuts; returns the severity. A class pattern is sufficient
    only when its removal costs the class too (`judge`)."""
    flip = (result.get("flip") or {}).get("value")
    level, why = judge(
        bool(result.get("confirmed")),
        result.get("removal"),
        alpha,
        min_lost,
        None if flip is None else float(flip),
        result.get("similar_mark"),
        sufficient_alone=result.get("statistic") not in NOT_SUFFICIENT_ALONE,
        removable=result.get("removable", True),
    )
    result["stamp_confirmed"] = bool(result.get("confirmed"))
    result["severity"], result["why"], result["advice"] = level, why, ADVICE[level]
    result["confirmed"] = level == "shortcut"
    return level


def judge_class_tests(
    results: list[dict[str, Any]], class_names: list[str], alpha: float, min_flip: float, over: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The whole-image tests of every class (colour cast, low-level statistics): Holm over `over`,
    the stamp rule (corrected p < alpha, excess flip >= min_flip), then severity. Returns all the
    results and the shortcuts among them."""
    adjusted = holm([r["p_value"] for r in results])
    shortcuts = []
    for r, p_adj in zip(results, adjusted, strict=True):
        r["class"] = class_names[r["class_index"]]
        r["flip"] = r["flip"] | {"p_value": round(p_adj, 6), "p_raw": round(r["p_value"], 6)}
        r["correction"] = f"holm over {len(results)} {over}"
        r["excess_flip"] = round(r["flip"]["value"] - r["flip"]["null_mean"], 4)
        r["confirmed"] = bool(p_adj < alpha and r["excess_flip"] >= min_flip)
        # A pattern cut to one place or to its tones (`pattern.extent`, `pattern.tones`): its add null,
        # its own values shuffled, is a similar mark already; so are a located mark's (`located`).
        if r.get("placement") == "fixed" or r.get("kept") == "tones":
            r["similar_mark"] = {
                "flip": r["flip"]["null_mean"],
                "p_value": p_adj,
                "excess": r["excess_flip"],
                "like": r.get("like", "its own values shuffled (the same energy, no structure)"),
            }
        if annotate(r, alpha, min_flip) == "shortcut":
            shortcuts.append(r)
    return results, shortcuts
