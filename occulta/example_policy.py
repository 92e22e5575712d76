"""The example gate policy (`examples/policy.yaml`), generated from each audit's metadata, so a new
audit brings its own lines and a renamed metric cannot linger in the example. Torch-free.

Regenerate with `python -m occulta.example_policy > examples/policy.yaml`; a test checks the
committed file equals this output.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auditors.audits.info import AuditInfo

HEADER = """\
# Occulta gate policy: each assertion is `metric.path: [error|warn, {comparator: value}]`.
#   error: a failure fails the gate (exit 1).   warn: reported, the gate stays green.
#   comparators: min (>=), max (<=), equals, in (one of a list). `{min: a, max: b}` checks both.
#   A path the report lacks fails the gate, whatever its level: a renamed metric never passes silently.
# Thresholds below are the audits' documented defaults (docs/audits.md); tighten them per model.
# Generated from the audits' metadata by `python -m occulta.example_policy`; do not edit by hand.
version: 1
assertions:
  # The overall verdict is about the model (the worst of the model audits); `inconclusive` proves
  # nothing, so it does not pass. Explanation caveats have their own `explanation_verdict`.
  verdict: [warn, {equals: pass}]
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


def render_example_policy() -> str:
    """The policy text for every built-in audit, in the registry's order."""
    from auditors.registry import builtin_infos

    return HEADER + "".join(audit_block(info) for info in builtin_infos())


if __name__ == "__main__":
    print(render_example_policy(), end="")
