"""The example gate policy (`examples/policy.yaml`), generated from each audit's metadata, so a new
audit brings its own lines and a renamed metric cannot linger in the example. It is `occulta policy
init`'s policy for every built-in audit: one default policy everywhere. Torch-free.

Regenerate with `python -m occulta.example_policy > examples/policy.yaml`; a test checks the
committed file equals this output.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auditors.audits.base import AuditInfo


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
    """The policy text for every built-in audit, in the registry's order: exactly what `occulta policy
    init` writes for them (and the dashboard's gate page starts from), so there is one default."""
    from occulta.policy_init import default_policy

    return default_policy()


if __name__ == "__main__":
    print(render_example_policy(), end="")
