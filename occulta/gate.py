"""The CI gate: a policy (`occulta.gate_policy`) evaluated against a report, to pass/fail.

A policy names metric paths (`missingness_bias.metrics.worst.entropy_drop_at_half`) and bounds. The
gate fails closed: a value the run did not produce is an error-level failure, and a name the report
does not have (a misspelt or renamed audit or metric) raises `PolicyError` naming the line and the
nearest spelling, so neither can turn a gate silently green, and a typo (exit 2) is never confused
with a failing model (exit 1).

Assertions on an audit the report did not run are the one exception a policy can opt into: with
`when_not_run: skip` (for the whole policy, or inside one assertion's condition) such an assertion is
reported as skipped instead of failing, so one policy can serve batteries of different sizes. An audit
that errored still fails.
"""

from __future__ import annotations

import difflib
import math
import re
import xml.etree.ElementTree as ET
from typing import Any, Literal

from pydantic import BaseModel, Field

from auditors.registry import available_audits
from auditors.report import Report, Verdict
from occulta.errors import PolicyError
from occulta.gate_policy import (
    POLICY_VERSION,
    SYMBOL,
    TOKEN,
    Assertion,
    Comparator,
    Level,
    Policy,
    WhenNotRun,
    is_number,
    load_policy,
)
from occulta.hints import did_you_mean

# The policy's names stay importable from here: the gate is one module to its callers.
__all__ = [
    "POLICY_VERSION",
    "Assertion",
    "AssertionResult",
    "GateCounts",
    "GateResult",
    "Level",
    "Policy",
    "WhenNotRun",
    "error_junit",
    "error_markdown",
    "evaluate",
    "format_value",
    "load_policy",
    "resolve",
    "to_junit",
]

Outcome = Literal["passed", "failed", "missing", "skipped"]
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class AssertionResult(BaseModel):
    path: str
    level: Level = Field(description="the level the policy gave; a missing metric fails at any level")
    comparator: Comparator
    expected: Any
    actual: Any = None
    passed: bool
    outcome: Outcome = Field(
        default="passed",
        description="passed | failed | missing (the metric is absent: counts as an error) | skipped "
        "(its audit was not run and the policy says when_not_run: skip)",
    )
    message: str

    @property
    def counts_as_error(self) -> bool:
        return self.outcome == "missing" or (self.outcome == "failed" and self.level == "error")


class GateCounts(BaseModel):
    total: int
    passed: int
    warnings: int = Field(description="warn-level assertions that failed")
    errors: int = Field(
        description="error-level assertions that failed, plus missing metrics (any one fails the gate)"
    )
    skipped: int = Field(default=0, description="assertions on audits not run, under when_not_run: skip")


class GateResult(BaseModel):
    passed: bool
    report_verdict: Verdict
    assertions: list[AssertionResult]
    counts: GateCounts
    markdown: str


# ---------------------------------------------------------------- evaluation


class _MissingPathError(Exception):
    """A path that does not resolve; the message says where it stopped and what was there.

    `unknown` marks a name the report's structure lacks (an audit, field or key nobody wrote), as
    opposed to a value the run did not produce (a short list, a metric left empty): the first is a
    typo in the policy, the second is about the model.
    """

    def __init__(
        self, message: str, *, unknown: str | None = None, where: str = "", options: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.unknown, self.where, self.options = unknown, where, options or []


class _PolicyTypoError(Exception):
    """An assertion naming something no report of this shape has: a policy error, not a failure."""


def _tokens(path: str) -> list[str | int]:
    out: list[str | int] = []
    for m in TOKEN.finditer(path):
        name, index, dq, sq = m.groups()
        out.append(int(index) if index is not None else (name or dq or sq))
    return out


def _nearest(key: str, keys: list[str]) -> str:
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
    shown = close or sorted(keys)[:8]
    return f"{'nearest' if close else 'available'}: {', '.join(shown) if shown else '(none)'}"


def resolve(document: dict[str, Any], path: str) -> Any:
    """Walk a path through the report; the first segment is an audit name, else a report field."""
    tokens = _tokens(path)
    audits = {a["name"]: a for a in document["audits"]}
    head = tokens[0]
    if head in audits:
        node: Any = audits[head]
    elif head in document and head != "audits":
        node = document[head]
    else:
        keys = list(audits) + [k for k in document if k != "audits"]
        raise _MissingPathError(
            f"no audit or report field `{head}` ({_nearest(str(head), keys)})",
            unknown=str(head),
            options=keys,
        )
    walked = str(head)
    for token in tokens[1:]:
        if isinstance(node, dict) and isinstance(token, str) and token in node:
            node = node[token]
        elif isinstance(node, dict) and str(token) in node:
            node = node[str(token)]
        elif isinstance(node, list) and isinstance(token, int | str) and str(token).isdigit():
            if int(token) >= len(node):
                raise _MissingPathError(f"`{walked}` has {len(node)} items, no index {token}")
            node = node[int(token)]
        elif isinstance(node, dict):
            raise _MissingPathError(
                f"`{walked}` has no key `{token}` ({_nearest(str(token), list(node))})",
                unknown=str(token),
                where=walked,
                options=[str(k) for k in node],
            )
        else:
            raise _MissingPathError(f"`{walked}` is a {type(node).__name__}, not a mapping or list")
        walked += f"[{token}]" if isinstance(token, int) else f".{token}"
    return node


def format_value(value: Any) -> str:
    """Numbers to 4 significant digits, so one column never mixes `0.543419361114502` and `0.744`."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value) if value is not None else "—"


def _shown(actual: float, expected: float) -> str:
    """4 digits, or all of them where rounding would make a failing value look equal to its bound."""
    text = f"{actual:.4g}"
    return repr(actual) if float(text) == expected and actual != expected else text


def _compare(comparator: str, expected: Any, actual: Any) -> tuple[bool, str]:
    if comparator in ("min", "max"):
        if actual is None:
            return False, "no value: the audit could not measure it (see its verdict)"
        if not is_number(actual):
            return False, f"expected a number, found {type(actual).__name__} {actual!r}"
        if math.isnan(actual):
            return False, "value is NaN"
        ok = actual >= expected if comparator == "min" else actual <= expected
        return ok, f"{_shown(actual, expected)} {'' if ok else 'not '}{SYMBOL[comparator]} {expected:g}"
    if comparator == "in":
        ok = actual in expected
        return ok, f"{actual!r} {'' if ok else 'not '}in {expected!r}"
    ok = actual == expected
    return ok, f"{actual!r} {'==' if ok else '!='} {expected!r}"


def _not_run(document: dict[str, Any], path: str, known: set[str]) -> str | None:
    """The audit a path names when the report did not run it, else None (a report field, or run)."""
    head = _tokens(path)[0]
    ran = {a["name"] for a in document["audits"]}
    if not isinstance(head, str) or head in ran or (head in document and head != "audits"):
        return None
    return head if head in known else None


def _typo_message(assertion: Assertion, exc: _MissingPathError, known: set[str]) -> str:
    """One line that starts with the misspelt name and its nearest spelling, then what exists there."""
    name = exc.unknown or ""
    if not exc.where:
        options = sorted(set(exc.options) | known)
        what, there = "audit or report field", "audits and fields"
    else:
        options = sorted(exc.options)
        what = "metric" if ".metrics" in f".{exc.where}" else "key"
        there = f"`{exc.where}` has"
    listed = ", ".join(options[:12]) + (", ..." if len(options) > 12 else "") if options else "(nothing)"
    return (
        f"line {assertion.line}: unknown {what} `{name}` in `{assertion.path}`"
        f"{did_you_mean(name, options, cutoff=0.6)}; {there}: {listed}"
    )


def _evaluate_one(document: dict[str, Any], assertion: Assertion, known: set[str]) -> AssertionResult:
    common = {
        "path": assertion.path,
        "level": assertion.level,
        "comparator": assertion.comparator,
        "expected": assertion.expected,
    }
    try:
        actual = resolve(document, assertion.path)
    except _MissingPathError as exc:
        not_run = _not_run(document, assertion.path, known)
        if not_run is not None and assertion.when_not_run == "skip":
            message = f"skipped: audit `{not_run}` was not run (when_not_run: skip)"
            return AssertionResult(**common, passed=True, outcome="skipped", message=message)
        if not_run is not None:
            ran = ", ".join(a["name"] for a in document["audits"]) or "none"
            message = (
                f"missing metric `{assertion.path}`: audit `{not_run}` was not run (this report ran: "
                f"{ran}); run it, drop the assertion, or mark it `when_not_run: skip`"
            )
            return AssertionResult(**common, passed=False, outcome="missing", message=message)
        audit = next((a for a in document["audits"] if a["name"] == _tokens(assertion.path)[0]), None)
        errored = bool(audit and audit.get("error"))
        if exc.unknown is not None and not errored:
            raise _PolicyTypoError(_typo_message(assertion, exc, known)) from None
        why = f"; the audit errored: {audit['error']}" if audit and errored else ""
        message = f"missing metric `{assertion.path}`: {exc}{why}"
        # fail closed: a missing metric is an error whatever the level, so a rename never passes
        return AssertionResult(**common, passed=False, outcome="missing", message=message)
    ok, message = _compare(assertion.comparator, assertion.expected, actual)
    return AssertionResult(
        **common,
        actual=actual if isinstance(actual, str | int | float | bool | None) else repr(actual),
        passed=ok,
        outcome="passed" if ok else "failed",
        message=message,
    )


def evaluate(report: Report, policy: Policy) -> GateResult:
    """Check every assertion; the gate passes when no error-level assertion failed or went missing.

    Only a registered audit's name can be "not run" (and so skippable). A name the report's structure
    lacks (a misspelt audit, field or metric of an audit that ran without error) raises `PolicyError`
    with the did-you-mean first: the policy is wrong, whatever the model does, so it is never a
    silent skip nor a "failed model". A value the run did not produce (the audit errored, a list is
    shorter, a metric is empty) stays a missing metric that fails the gate.
    """
    document = report.model_dump(mode="json", by_alias=True)
    known = set(available_audits())
    results: list[AssertionResult] = []
    typos: list[str] = []
    for assertion in policy.assertions:
        try:
            results.append(_evaluate_one(document, assertion, known))
        except _PolicyTypoError as exc:
            typos.append(str(exc))
    if typos:  # a typo is the user's to fix (exit 2), never a failing model (exit 1)
        more = f" (and {len(typos) - 1} more: {'; '.join(typos[1:])})" if len(typos) > 1 else ""
        raise PolicyError(typos[0] + more)
    counts = GateCounts(
        total=len(results),
        passed=sum(r.outcome == "passed" for r in results),
        warnings=sum(r.outcome == "failed" and r.level == "warn" for r in results),
        errors=sum(r.counts_as_error for r in results),
        skipped=sum(r.outcome == "skipped" for r in results),
    )
    passed = counts.errors == 0
    return GateResult(
        passed=passed,
        report_verdict=report.verdict,
        assertions=results,
        counts=counts,
        markdown=_markdown(report, results, counts, passed),
    )


# ---------------------------------------------------------------- outputs


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else format_value(value)
    return text.replace("|", "\\|").replace("\n", " ")


_ICON = {"passed": "✅", "skipped": "⏭️", "missing": "❌"}


def _markdown(report: Report, results: list[AssertionResult], counts: GateCounts, passed: bool) -> str:
    """A summary fit for a pull-request comment or `$GITHUB_STEP_SUMMARY`."""
    head = "✅ passed" if passed else "❌ failed"
    lines = [
        f"## Occulta gate {head}",
        "",
        f"Report verdict **{report.verdict_label}** for `{report.model.arch}` on `{report.dataset.ref}`: "
        f"{counts.passed}/{counts.total} assertions passed, {counts.warnings} warning(s), "
        f"{counts.errors} error(s)"
        + (f", {counts.skipped} skipped (audit not run)." if counts.skipped else "."),
        "",
        "| | Assertion | Expected | Actual | Detail |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        icon = _ICON.get(r.outcome) or ("⚠️" if r.level == "warn" else "❌")
        expected = f"{SYMBOL[r.comparator]} {_cell(r.expected)}"
        lines.append(f"| {icon} | `{r.path}` | {expected} | {_cell(r.actual)} | {_cell(r.message)} |")
    if report.audits:
        lines += ["", "### Audits", ""]
        lines += [f"- **{a.name}** ({a.verdict}): {_cell(a.summary)}" for a in report.audits]
    return "\n".join(lines) + "\n"


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def _junit_document(suite: ET.Element) -> str:
    root = ET.Element("testsuites", name="occulta")
    root.append(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def to_junit(result: GateResult) -> str:
    """JUnit XML: one testcase per assertion; error-level failures and missing metrics fail, failed
    warnings and assertions on audits not run are skipped."""
    suite = ET.Element(
        "testsuite",
        name="occulta-gate",
        tests=str(result.counts.total),
        failures=str(result.counts.errors),
        skipped=str(result.counts.warnings + result.counts.skipped),
        errors="0",
    )
    for r in result.assertions:
        audit = _tokens(r.path)[0]
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"occulta.gate.{audit}",
            name=_xml_text(f"{r.path} {SYMBOL[r.comparator]} {r.expected!r}"),
        )
        if r.outcome == "passed":
            continue
        if r.outcome == "skipped":
            ET.SubElement(case, "skipped", message=_xml_text(r.message))
        elif r.counts_as_error:
            failure = ET.SubElement(case, "failure", message=_xml_text(r.message), type="GateAssertion")
            failure.text = _xml_text(f"{r.path}: {r.message} (actual: {format_value(r.actual)})")
        else:
            ET.SubElement(case, "skipped", message=_xml_text(f"warning: {r.message}"))
            ET.SubElement(case, "system-out").text = _xml_text(f"warning: {r.path}: {r.message}")
    return _junit_document(suite)


def error_junit(message: str, exit_code: int, *, passed_anyway: bool = False) -> str:
    """JUnit for a gate that could not be evaluated: one errored test case, so a CI reporter step
    always has a file to read and shows why instead of silently reporting nothing. Under
    `--on-error pass` the case is skipped instead, so the reporter agrees with the exit code."""
    errors, skipped = ("0", "1") if passed_anyway else ("1", "0")
    suite = ET.Element(
        "testsuite", name="occulta-gate", tests="1", failures="0", skipped=skipped, errors=errors
    )
    case = ET.SubElement(suite, "testcase", classname="occulta.gate", name="gate evaluated")
    text = _xml_text(f"{message} (occulta gate exit code {exit_code})")
    if passed_anyway:
        ET.SubElement(case, "skipped", message=_xml_text(message))
        ET.SubElement(case, "system-out").text = text
    else:
        error = ET.SubElement(case, "error", message=_xml_text(message), type=f"exit {exit_code}")
        error.text = text
    return _junit_document(suite)


def error_markdown(message: str, exit_code: int, *, passed_anyway: bool = False) -> str:
    """The summary for a gate that could not be evaluated (exit 2 or 3, or 0 under --on-error pass)."""
    head = "⚠️ NOT evaluated (passing only because of --on-error pass)" if passed_anyway else "❌ error"
    return f"## Occulta gate {head}\n\n> [!WARNING]\n> {message} (exit code {exit_code})\n"
