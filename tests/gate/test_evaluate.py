"""Evaluating a policy against a report: paths, comparators, fail-closed, warn vs error, outputs."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from auditors.report import AuditResult
from occulta.errors import PolicyError
from occulta.gate import AssertionResult, GateResult, evaluate, load_policy, to_junit
from tests.gate.reports import make_report


def gate(assertions: str, **report: object) -> GateResult:
    return evaluate(make_report(**report), load_policy("assertions:\n" + assertions))


def only(result: GateResult) -> AssertionResult:
    assert len(result.assertions) == 1
    return result.assertions[0]


@pytest.mark.parametrize(
    ("line", "actual", "passed"),
    [
        ("missingness_bias.metrics.worst.entropy_drop_at_half: [error, {max: 1.0}]", 0.4, True),
        ("missingness_bias.metrics.worst.entropy_drop_at_half: [error, {max: 0.4}]", 0.4, True),
        ("missingness_bias.metrics.worst.entropy_drop_at_half: [error, {max: 0.39}]", 0.4, False),
        ("missingness_bias.metrics.worst.entropy_drop_at_half: [error, {min: 0.4}]", 0.4, True),
        ("missingness_bias.metrics.worst.entropy_drop_at_half: [error, {min: 0.5}]", 0.4, False),
        ("missingness_bias.verdict: [error, {equals: pass}]", "pass", True),
        ("lime_consistency.verdict: [error, {in: [pass, inconclusive]}]", "fail", False),
        ("verdict: [error, {equals: pass}]", "fail", False),
        ("seed: [error, {equals: 0}]", 0, True),
        ("missingness_bias.metrics.strategies[1].auc: [error, {min: 0.7}]", 0.72, True),
        ("missingness_bias.metrics.strategies.0.name: [error, {equals: black}]", "black", True),
        ("missingness_bias.findings[0].class: [error, {equals: b}]", "b", True),
        ("model.num_classes: [error, {equals: 2}]", 2, True),
    ],
)
def test_comparators_and_path_forms(line: str, actual: object, passed: bool) -> None:
    result = only(gate(f"  {line}\n"))
    assert (result.actual, result.passed) == (actual, passed)


def test_key_with_dots_is_reachable_with_brackets() -> None:
    audits = [AuditResult(name="sis", verdict="pass", summary="s", metrics={"size_at_0.99": 0.03})]
    assert only(gate('  sis.metrics["size_at_0.99"]: [error, {max: 0.05}]\n', audits=audits)).passed


def test_misspelt_metric_is_a_policy_error_with_the_did_you_mean_first() -> None:
    with pytest.raises(PolicyError) as err:
        gate("  missingness_bias.metrics.worst.entropy_drp_at_half: [warn, {max: 1.0}]\n")
    first = str(err.value).splitlines()[0]
    assert first.startswith("line 2: unknown metric `entropy_drp_at_half`")
    assert "(did you mean entropy_drop_at_half?)" in first


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("missing_audit.verdict", "unknown audit or report field `missing_audit`"),
        ("missingnes_bias.verdict", "(did you mean missingness_bias?)"),
        (
            "missingness_bias.verdct",
            "unknown key `verdct` in `missingness_bias.verdct` (did you mean verdict?)",
        ),
        ("lime_consistency.metrics.removal.own", "`lime_consistency.metrics.removal` has: own_at_25"),
        ("model.archh", "(did you mean arch?)"),
    ],
)
def test_every_name_the_report_lacks_is_a_policy_error(path: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=r"^line 2: unknown") as err:
        gate(f"  {path}: [error, {{max: 1}}]\n")
    assert fragment in str(err.value)


def test_several_typos_are_all_named_on_one_line_the_first_first() -> None:
    with pytest.raises(PolicyError) as err:
        gate("  sis_x.verdict: [warn, {equals: pass}]\n  missingness_bias.metrics.bestt: [error, {max: 1}]\n")
    text = str(err.value)
    assert "\n" not in text and text.startswith("line 2: unknown audit or report field `sis_x`")
    assert "(and 1 more: line 3: unknown metric `bestt`" in text


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("missingness_bias.metrics.strategies[5].auc", "has 2 items, no index 5"),
        ("missingness_bias.verdict.deeper", "is a str, not a mapping or list"),
    ],
)
def test_a_value_the_run_did_not_produce_is_an_error_failure(path: str, fragment: str) -> None:
    a = only(gate(f"  {path}: [error, {{max: 1}}]\n"))
    assert (a.passed, a.level, a.outcome) == (False, "error", "missing")
    assert fragment in a.message


def test_missing_value_fails_closed_even_on_a_warn_line() -> None:
    audits = [AuditResult(name="sis", verdict="inconclusive", summary="s", metrics={"worst": None})]
    result = gate("  sis.metrics.worst.auc: [warn, {max: 1.0}]\n", audits=audits)
    a = only(result)
    assert a.outcome == "missing" and a.level == "warn", "the row keeps the level the policy gave"
    assert result.counts.errors == 1 and not result.passed


def test_missing_metric_of_an_errored_audit_says_why() -> None:
    audits = [AuditResult(name="sis", verdict="error", summary="crashed", error="CUDA out of memory")]
    a = only(gate("  sis.metrics.share_small: [error, {max: 0.1}]\n", audits=audits))
    assert not a.passed and "CUDA out of memory" in a.message


@pytest.mark.parametrize("value", ["high", None, {"a": 1}, True, math.nan])
def test_numeric_bound_on_a_non_number_fails(value: object) -> None:
    audits = [AuditResult(name="sis", verdict="pass", summary="s", metrics={"x": value})]
    assert not only(gate("  sis.metrics.x: [error, {min: 0}]\n", audits=audits)).passed


def test_failed_warning_keeps_the_gate_green_and_is_counted() -> None:
    result = gate(
        "  lime_consistency.metrics.removal.own_at_25: [warn, {max: 0.5}]\n"
        "  missingness_bias.verdict: [error, {equals: pass}]\n"
    )
    assert result.passed
    assert result.counts.model_dump() == {"total": 2, "passed": 1, "warnings": 1, "errors": 0, "skipped": 0}


def test_one_failed_error_fails_the_gate() -> None:
    result = gate(
        "  lime_consistency.metrics.removal.own_at_25: [error, {max: 0.5}]\n"
        "  missingness_bias.verdict: [error, {equals: pass}]\n"
    )
    assert not result.passed
    assert result.counts.errors == 1 and result.report_verdict == "fail"


def test_markdown_has_verdict_line_icons_and_each_audit_summary() -> None:
    md = gate(
        "  missingness_bias.verdict: [error, {equals: pass}]\n"
        "  lime_consistency.metrics.removal.own_at_25: [warn, {max: 0.5}]\n"
        "  sis.metrics.share_small: [error, {max: 0.1}]\n"
    ).markdown
    assert md.startswith("## Occulta gate ❌ failed")
    assert "Report verdict **fail**" in md and "1/3 assertions passed" in md
    assert "| ✅ | `missingness_bias.verdict` |" in md
    assert "| ⚠️ | `lime_consistency.metrics.removal.own_at_25` | ≤ 0.5 | 0.7 |" in md
    assert "| ❌ | `sis.metrics.share_small` |" in md
    assert "Predictions stay spread over classes when half the patches are removed." in md
    assert "- **lime_consistency** (fail): Explanations are unreliable under black fill." in md


def test_markdown_escapes_pipes_so_the_table_stays_a_table() -> None:
    audits = [AuditResult(name="sis", verdict="pass", summary="s", metrics={"x": "a|b"})]
    md = gate("  sis.metrics.x: [error, {equals: c}]\n", audits=audits).markdown
    row = next(line for line in md.splitlines() if "`sis.metrics.x`" in line)
    assert row.count("|") - row.count("\\|") == 6


def test_junit_is_valid_xml_with_one_testcase_per_assertion() -> None:
    audits = [
        AuditResult(name="sis", verdict="pass", summary="s", metrics={"x": 2.0, "y": "bad\x00<&>"}),
    ]
    result = gate(
        "  sis.metrics.x: [error, {max: 1}]\n"  # error failure
        "  sis.metrics.y: [warn, {equals: good}]\n"  # warning, with characters XML cannot hold raw
        "  sis.verdict: [error, {equals: pass}]\n",  # pass
        audits=audits,
    )
    suite = ET.fromstring(to_junit(result)).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == ["occulta.gate.sis"] * 3
    failure = cases[0].find("failure")
    assert failure is not None and "2 not ≤ 1" in (failure.get("message") or "")
    skipped = cases[1].find("skipped")
    assert skipped is not None and (skipped.get("message") or "").startswith("warning:")
    assert "<&>" in (cases[1].findtext("system-out") or "")
    assert cases[2].find("failure") is None and cases[2].find("skipped") is None


def test_gate_result_round_trips_through_json_for_the_api() -> None:
    result = gate("  missingness_bias.metrics.strategies: [error, {min: 0}]\n")
    again = GateResult.model_validate_json(result.model_dump_json())
    assert again == result and not again.passed


def test_assertion_on_an_audit_not_run_fails_by_default_and_says_how_to_opt_out() -> None:
    a = only(gate("  sis.metrics.share_confident_sis_le_5pct: [warn, {max: 0.2}]\n"))
    assert a.outcome == "missing" and not a.passed
    assert "audit `sis` was not run" in a.message and "when_not_run: skip" in a.message


def test_when_not_run_skip_skips_only_audits_that_were_not_run() -> None:
    policy = load_policy(
        "when_not_run: skip\nassertions:\n"
        "  sis.verdict: [error, {equals: pass}]\n"
        "  spurious_signal.verdict: [error, {equals: pass}]\n"
    )
    result = evaluate(make_report(), policy)
    skipped, other = result.assertions
    assert skipped.outcome == "skipped" and "audit `sis` was not run" in skipped.message
    assert other.outcome == "skipped" and result.passed and result.counts.skipped == 2


def test_when_not_run_skip_never_skips_a_misspelt_audit_or_renamed_metric() -> None:
    with pytest.raises(PolicyError, match="did you mean missingness_bias"):
        gate("  missingnes_bias.verdict: [error, {equals: pass, when_not_run: skip}]\n")
    renamed = "when_not_run: skip\nassertions:\n  missingness_bias.metrics.worst.renamed: [error, {max: 1}]\n"
    with pytest.raises(PolicyError, match="unknown metric `renamed`"):
        evaluate(make_report(), load_policy(renamed))


def test_per_assertion_when_not_run_overrides_the_policy_default() -> None:
    policy = load_policy(
        "when_not_run: skip\nassertions:\n"
        "  sis.verdict: [error, {equals: pass, when_not_run: fail}]\n"
        "  spurious_signal.verdict: [error, {equals: pass}]\n"
    )
    result = evaluate(make_report(), policy)
    assert [r.outcome for r in result.assertions] == ["missing", "skipped"]


def test_skipped_assertions_are_junit_skipped_cases() -> None:
    result = gate("  sis.verdict: [error, {equals: pass, when_not_run: skip}]\n")
    assert result.passed
    suite = ET.fromstring(to_junit(result)).find("testsuite")
    assert suite is not None and suite.get("skipped") == "1" and suite.get("failures") == "0"
    assert "⏭️" in result.markdown and "1 skipped (audit not run)" in result.markdown


@pytest.mark.parametrize("bad", ["when_not_run: maybe\n", "when_not_ran: skip\n"])
def test_when_not_run_accepts_only_fail_or_skip(bad: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(bad + "assertions:\n  verdict: [error, {equals: pass}]\n")
    assert "when_not_run" in str(info.value)
