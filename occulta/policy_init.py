"""`occulta policy init`: a commented starting policy that asserts only on the audits a user runs.

A policy that names audits the battery did not run fails closed on every one of their metrics, which
made the example policy useless for a two-audit battery. Each audit's block comes from its metadata
(`AuditInfo.policy`, the same lines as `examples/policy.yaml`), so the thresholds are the audits' own
verdict defaults and the generated policy agrees with the report until a user tightens it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from auditors.registry import audit_infos, builtin_infos
from occulta.errors import PolicyError
from occulta.gate_policy import WhenNotRun
from occulta.hints import did_you_mean

if TYPE_CHECKING:
    from auditors.audits.info import AuditInfo

_HEADER = """\
# Occulta gate policy for: {audits}
# Written by `occulta policy init`; edit the bounds for your model.
# Each assertion is `metric.path: [error|warn, {{comparator: value}}]`.
#   error: a failure fails the gate (exit 1).   warn: reported, the gate stays green.
#   comparators: min (>=), max (<=), equals, in (one of a list). `{{min: a, max: b}}` checks both.
# A misspelt or renamed audit or metric is a policy error (exit 2, with the nearest spelling); a value
# the run did not produce (its audit errored, say) fails the gate whatever its level.
# when_not_run: {when_not_run} -- an assertion on an audit the report did not run {consequence}.
#   Set it per assertion too: `[warn, {{max: 0.5, when_not_run: skip}}]`.
version: 1
when_not_run: {when_not_run}
assertions:
  # The overall verdict is about the model (the worst of the model audits); `inconclusive` proves
  # nothing, so it does not pass. Explanation caveats have their own `explanation_verdict`.
  verdict: [warn, {{equals: pass}}]
"""


def _flow(value: Any) -> str:
    """A YAML flow value: plain scalars for words and numbers, a list as [a, b]."""
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str) and value.replace("_", "").isalnum():
        return value
    return json.dumps(value)


def audit_block(info: AuditInfo) -> str:
    """One audit's commented assertions (empty when its metadata declares none); `occulta policy
    init` writes the same blocks for the audits a user asks for."""
    if not info.policy:
        return ""
    comment = "\n".join(f"  # {line}" for line in info.policy_comment.splitlines())
    out = [f"\n{comment}\n" if comment else "\n"]
    for line in info.policy:
        rule = ", ".join(f"{k}: {_flow(v)}" for k, v in line.rule.items())
        out.append(f"  {info.name}.{line.metric}: [{line.level}, {{{rule}}}]\n")
    return "".join(out)


def parse_audit_names(text: str) -> list[str]:
    """`a,b` into registered audit names, in the order given; a typo gets a did-you-mean hint."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise PolicyError("give at least one audit, e.g. --audits missingness_bias,spurious_signal")
    known = sorted(audit_infos())
    for name in names:
        if name not in known:
            raise PolicyError(
                f"unknown audit {name!r}{did_you_mean(name, known, cutoff=0.6)}; available: {', '.join(known)}"
            )
    return names


def render_policy(audits: list[str], when_not_run: WhenNotRun = "fail") -> str:
    """The policy text for exactly these audits, commented so a person can tighten it."""
    infos = audit_infos()
    consequence = "is skipped" if when_not_run == "skip" else "fails the gate (fail closed)"
    head = _HEADER.format(audits=", ".join(audits), when_not_run=when_not_run, consequence=consequence)
    return head + "".join(audit_block(infos[name]) for name in audits)


def default_policy(audits: list[str] | None = None) -> str:
    """The one default policy: `occulta policy init`'s for these audits (registered ones; all the
    built-ins when none is given), so the dashboard, the CLI and the docs start from the same bounds."""
    known = audit_infos()
    names = [n for n in audits or [] if n in known] or [info.name for info in builtin_infos()]
    return render_policy(names)
