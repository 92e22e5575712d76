"""The example gate policy (`examples/policy.yaml`), generated from each audit's metadata, so a new
audit brings its own lines and a renamed metric cannot linger in the example. It is `occulta policy
init`'s policy for every built-in audit: one default policy everywhere. Torch-free.

Regenerate with `python -m occulta.example_policy > examples/policy.yaml`; a test checks the
committed file equals this output.
"""

from __future__ import annotations

from occulta.policy_init import default_policy


def render_example_policy() -> str:
    """The policy text for every built-in audit, in the registry's order: exactly what `occulta policy
    init` writes for them (and the dashboard's gate page starts from), so there is one default."""
    return default_policy()


if __name__ == "__main__":
    print(render_example_policy(), end="")
