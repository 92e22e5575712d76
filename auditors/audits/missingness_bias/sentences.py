"""The missingness-bias audit's sentences, built from structured fields (each strategy's verdict and
the recommended strategy), so none can contradict itself: a strategy is called safe only when it
passed, unreliable only when it failed, and lists read as English ("black or mean", not "black, mean").
`tests/unit/test_sentences.py` checks every combination of verdicts and strategies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from auditors.report import Verdict


def either(names: Sequence[str]) -> str:
    """ "a", "a or b", "a, b or c"."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def summary(
    per: dict[str, dict[str, Any]], failing: list[str], best: str, worst: str, d: float, clean_h: float
) -> str:
    """One sentence a person can act on: the worst strategy's collapse, else how well the best keeps
    the predictions."""
    b = per[best]
    keeps = b["unchanged"][len(b["unchanged"]) // 2]
    use = f"{best} keeps {keeps:.0%} of predictions at {d:.0%} removed (AUC {b['auc']:.2f})"
    if not failing:
        return f"No strategy collapses the class distribution at {d:.0%} removed; {use}."
    w = per[worst]
    a = w["attractors"][0] if w["attractors"] else None
    lead = f"Removing {d:.0%} of the patches with {worst}"
    lead += f" sends {a['share']:.0%} of predictions to '{a['class']}'" if a else " collapses the predictions"
    lead += (
        f" (class entropy {clean_h:.2f} → {w['entropy_at_half']:.2f} nats, a drop of "
        f"{max(0.0, w['entropy_drop_share_at_half']):.0%} of its maximum)"
    )
    lead += f"; biased strategies: {', '.join(failing)}"
    if best in failing:
        return lead + "; every strategy is biased."
    return lead + f"; {use}."


def meaning(verdicts: Mapping[str, Verdict], recommended: str | None, n: int, min_n: int) -> str:
    """What the verdicts mean for someone explaining this model, and what to do."""
    if n < min_n:
        return f"Too few images to tell ({n} < {min_n}): audit more images."
    failing = [s for s, v in verdicts.items() if v == "fail"]
    undecided = [s for s, v in verdicts.items() if v == "inconclusive"]
    safe = recommended if recommended is not None and verdicts.get(recommended) == "pass" else None
    if failing:
        lead = f"Explanations of this model that remove pixels with {either(failing)} are unreliable; "
        if safe:
            return lead + f"use {safe}."
        if recommended is not None and recommended in undecided:
            return lead + (
                f"{recommended} is the least biased of the others but is not proven safe either: "
                "audit more images before relying on it."
            )
        return lead + (
            "none can be recommended (only a native strategy or blur that passes would be): treat "
            "removal-based explanations of this model with caution."
        )
    if undecided:
        lead = f"Could not tell whether removing pixels with {either(undecided)} biases explanations of this model; "
        if safe:
            return lead + f"{safe} passed and is safe to use."
        return lead + "audit more images."
    return "Removing pixels does not bias this model's predictions" + (
        f"; {recommended} is the recommended way to remove them." if recommended else "."
    )
