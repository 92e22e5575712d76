"""Policy files: the grammar that parses, and each kind of typo that must be refused with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from occulta.errors import PolicyError
from occulta.gate import load_policy

GOOD = """\
version: 1
assertions:
  verdict: [error, {equals: pass}]
  missingness_bias.verdict: [error, {in: [pass, inconclusive]}]
  missingness_bias.metrics.worst.entropy_drop_at_half: [error, {max: 1.0}]
  lime_consistency.metrics.removal.own_at_25: [warn, {min: 0, max: 0.5}]
  missingness_bias.metrics.strategies[1].auc: [warn, {min: 0.3}]
"""


def test_good_policy_parses_every_comparator_with_its_line() -> None:
    policy = load_policy(GOOD)
    got = [(a.path, a.level, a.comparator, a.expected, a.line) for a in policy.assertions]
    assert got == [
        ("verdict", "error", "equals", "pass", 3),
        ("missingness_bias.verdict", "error", "in", ["pass", "inconclusive"], 4),
        ("missingness_bias.metrics.worst.entropy_drop_at_half", "error", "max", 1.0, 5),
        ("lime_consistency.metrics.removal.own_at_25", "warn", "min", 0, 6),
        ("lime_consistency.metrics.removal.own_at_25", "warn", "max", 0.5, 6),
        ("missingness_bias.metrics.strategies[1].auc", "warn", "min", 0.3, 7),
    ]


def test_version_may_be_omitted() -> None:
    assert load_policy("assertions:\n  verdict: [error, {equals: pass}]\n").version == 1


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("assertions:\n  a.b: [eror, {max: 1}]\n", ["line 2", "`a.b`", "unknown level 'eror'", "error"]),
        ("assertions:\n  a.b: [error, {maximum: 1}]\n", ["line 2", "unknown comparator 'maximum'", "max"]),
        ("assertions:\n  a.b: [warn, {max: high}]\n", ["line 2", "`max` needs a number", "'high'"]),
        ("assertions:\n  a.b: [warn, {min: true}]\n", ["`min` needs a number"]),
        ("assertions:\n  a.b: [warn, {in: pass}]\n", ["`in` needs a non-empty list"]),
        ("assertions:\n  a.b: [warn, {equals: [1, 2]}]\n", ["`equals` needs a single value"]),
        ("assertions:\n  a.b: error\n", ["line 2", "expected [error|warn"]),
        ("assertions:\n  a.b: [error, max]\n", ["condition must be a mapping"]),
        ("assertions:\n  a..b: [error, {max: 1}]\n", ["`a..b`", "not a metric path"]),
        ("assertions:\n  a.b: [error, {max: 1}\n", ["not valid YAML", "line 2"]),
        (
            "version: 1\nasertions:\n  a.b: [error, {max: 1}]\n",
            ["line 2", "unknown top-level key `asertions`"],
        ),
        ("version: 2\nassertions:\n  a.b: [error, {max: 1}]\n", ["unsupported policy version 2"]),
        ("version: 1\n", ["no `assertions:`"]),
        ("assertions: {}\n", ["non-empty mapping"]),
        ("- a.b\n", ["must be a mapping"]),
        (
            "assertions:\n  a.b: [error, {max: 1}]\n  a.b: [warn, {max: 2}]\n",
            ["line 3", "already asserted on line 2"],
        ),
    ],
    ids=[
        "unknown-level",
        "unknown-comparator",
        "non-numeric-bound",
        "boolean-bound",
        "in-not-a-list",
        "equals-a-list",
        "assertion-not-a-pair",
        "condition-not-a-mapping",
        "empty-path-segment",
        "malformed-yaml",
        "misspelt-top-level-key",
        "unknown-version",
        "no-assertions",
        "empty-assertions",
        "not-a-mapping",
        "duplicate-path",
    ],
)
def test_policy_typo_is_a_policy_error_naming_the_place(text: str, fragments: list[str]) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(text)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_policy_error_has_the_stable_code_the_api_maps() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy("assertions:\n  a: [fatal, {max: 1}]\n")
    assert info.value.code == "invalid_policy"


def test_example_policy_in_the_docs_parses_and_covers_the_four_audits() -> None:
    text = (Path(__file__).parents[2] / "examples" / "policy.yaml").read_text()
    heads = {a.path.split(".")[0] for a in load_policy(text).assertions}
    assert heads == {"verdict", "missingness_bias", "lime_consistency", "sis", "spurious_signal"}


def test_the_committed_example_policy_is_the_one_generated_from_the_audits_metadata() -> None:
    from occulta.example_policy import render_example_policy

    committed = (Path(__file__).parents[2] / "examples" / "policy.yaml").read_text()
    assert committed == render_example_policy(), (
        "run: python -m occulta.example_policy > examples/policy.yaml"
    )
