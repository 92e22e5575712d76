"""`occulta policy init`: a commented starting policy that asserts only on the audits a user runs.

A policy that names audits the battery did not run fails closed on every one of their metrics, which
made the example policy useless for a two-audit battery. Each audit's block below says what it
checks and why the bound is where it is; the thresholds are the audits' own verdict defaults, so the
generated policy agrees with the report until a user tightens it for their model.
"""

from __future__ import annotations

import difflib
import textwrap
from dataclasses import dataclass

from auditors.registry import available_audits
from occulta.errors import PolicyError
from occulta.gate import WhenNotRun


@dataclass(frozen=True)
class PolicyLine:
    """One assertion as the template writes it: `path: [level, {condition}]` with a comment above."""

    path: str
    level: str
    condition: str
    comment: str = ""


@dataclass(frozen=True)
class AuditPolicy:
    intro: str
    lines: tuple[PolicyLine, ...]


AUDIT_POLICIES: dict[str, AuditPolicy] = {
    "missingness_bias": AuditPolicy(
        "Missingness bias: at half the patches removed, class entropy may fall at most 1 nat and no "
        "class may swallow the predictions (an attractor class).",
        (
            PolicyLine("missingness_bias.verdict", "error", "{in: [pass, inconclusive]}"),
            PolicyLine("missingness_bias.metrics.worst.entropy_drop_at_half", "error", "{max: 1.0}"),
            PolicyLine("missingness_bias.metrics.worst.max_share_at_half", "warn", "{max: 0.5}"),
            PolicyLine(
                "missingness_bias.metrics.best.auc",
                "warn",
                "{min: 0.5}",
                "share of predictions unchanged across removal fractions, for the least biased fill",
            ),
        ),
    ),
    "lime_consistency": AuditPolicy(
        "LIME consistency: removing LIME's top-25 features must change predictions at least twice as "
        "fast as removing 25 random ones, and the top-20 set must not depend on the fill colour.",
        (
            PolicyLine("lime_consistency.verdict", "warn", "{equals: pass}"),
            PolicyLine("lime_consistency.metrics.removal.ratio_at_25", "error", "{max: 0.5}"),
            PolicyLine("lime_consistency.metrics.fill_consistency.at_20", "warn", "{min: 0.5}"),
            PolicyLine("lime_consistency.metrics.seed_stability.spearman_mean", "warn", "{min: 0.8}"),
        ),
    ),
    "sis": AuditPolicy(
        "SIS / overinterpretation: few confident images should rest on <= 5% of the pixels.",
        (
            PolicyLine("sis.verdict", "warn", "{in: [pass, inconclusive]}"),
            PolicyLine(
                "sis.metrics.share_confident_sis_le_5pct",
                "error",
                "{max: 0.2}",
                "null when no image reaches the confidence threshold: that fails too (nothing verified)",
            ),
            PolicyLine("sis.metrics.subset_5pct.backselect.accuracy", "warn", "{max: 0.5}"),
        ),
    ),
    "spurious_signal": AuditPolicy(
        "Spurious signals: no confirmed shortcut region; saliency enrichment and stamp flip rates low.",
        (
            PolicyLine("spurious_signal.verdict", "error", "{equals: pass}"),
            PolicyLine("spurious_signal.metrics.n_confirmed", "error", "{max: 0}"),
            PolicyLine("spurious_signal.metrics.max_enrichment", "warn", "{max: 10}"),
            PolicyLine("spurious_signal.metrics.max_flip_rate", "warn", "{max: 0.5}"),
        ),
    ),
}

_HEADER = """\
# Occulta gate policy for: {audits}
# Written by `occulta policy init`; edit the bounds for your model.
# Each assertion is `metric.path: [error|warn, {{comparator: value}}]`.
#   error: a failure fails the gate (exit 1).   warn: reported, the gate stays green.
#   comparators: min (>=), max (<=), equals, in (one of a list). `{{min: a, max: b}}` checks both.
# A metric the report lacks fails the gate whatever its level, so a renamed metric never passes.
# when_not_run: {when_not_run} -- an assertion on an audit the report did not run {consequence}.
#   Set it per assertion too: `[warn, {{max: 0.5, when_not_run: skip}}]`.
version: 1
when_not_run: {when_not_run}
assertions:
  # The overall verdict is the worst of the audits; `inconclusive` proves nothing, so it does not pass.
  verdict: [warn, {{equals: pass}}]
"""


def parse_audit_names(text: str) -> list[str]:
    """`a,b` into known audit names, in the order given; a typo gets a did-you-mean hint."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise PolicyError("give at least one audit, e.g. --audits missingness_bias,spurious_signal")
    known = available_audits()
    for name in names:
        if name not in known or name not in AUDIT_POLICIES:
            hint = difflib.get_close_matches(name, known, n=1)
            raise PolicyError(
                f"unknown audit {name!r}"
                + (f" (did you mean {hint[0]}?)" if hint else "")
                + f"; available: {', '.join(known)}"
            )
    return names


def render_policy(audits: list[str], when_not_run: WhenNotRun = "fail") -> str:
    """The policy text for exactly these audits, commented so a person can tighten it."""
    consequence = "is skipped" if when_not_run == "skip" else "fails the gate (fail closed)"
    out = [_HEADER.format(audits=", ".join(audits), when_not_run=when_not_run, consequence=consequence)]
    for name in audits:
        block = AUDIT_POLICIES[name]
        out.append("\n" + textwrap.indent(textwrap.fill(block.intro, 96), "  # ") + "\n")
        for line in block.lines:
            if line.comment:
                out.append(f"  # {line.comment}\n")
            out.append(f"  {line.path}: [{line.level}, {line.condition}]\n")
    return "".join(out)
