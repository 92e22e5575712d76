"""The CI gate: a YAML policy of assertions on report metrics, evaluated to pass/fail.

A policy names metric paths (`missingness_bias.metrics.worst.entropy_drop_at_half`) and bounds. The
gate fails closed: a path the report lacks is an error-level failure that says which keys exist, so a
renamed metric can never turn a gate silently green. Typos in the policy itself raise `PolicyError`
naming the line, because a gate that ignores a misspelt assertion is worse than no gate.
"""

from __future__ import annotations

import difflib
import math
import re
import xml.etree.ElementTree as ET
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from auditors.report import Report, Verdict
from occulta.errors import PolicyError
from occulta.safe_yaml import YamlBudgetError, compose_bounded

POLICY_VERSION = 1
Level = Literal["error", "warn"]
Comparator = Literal["min", "max", "equals", "in"]
_LEVELS: tuple[str, ...] = ("error", "warn")
_COMPARATORS: tuple[str, ...] = ("min", "max", "equals", "in")
_SYMBOL = {"min": "≥", "max": "≤", "equals": "=", "in": "∈"}
# `name`, `.name`, `[3]` or `["key.with.dots"]`
_TOKEN = re.compile(r"""\.?([A-Za-z0-9_\-]+)|\[(\d+)\]|\[(?:"([^"]+)"|'([^']+)')\]""")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class Assertion(BaseModel):
    """One comparator on one path; `{min: a, max: b}` in a policy becomes two assertions."""

    path: str
    level: Level
    comparator: Comparator
    expected: Any
    line: int = Field(description="1-based line of the assertion in the policy file")


class Policy(BaseModel):
    version: int = POLICY_VERSION
    assertions: list[Assertion]


class AssertionResult(BaseModel):
    path: str
    level: Level
    comparator: Comparator
    expected: Any
    actual: Any = None
    passed: bool
    message: str


class GateCounts(BaseModel):
    total: int
    passed: int
    warnings: int = Field(description="warn-level assertions that failed")
    errors: int = Field(description="error-level assertions that failed (any one fails the gate)")


class GateResult(BaseModel):
    passed: bool
    report_verdict: Verdict
    assertions: list[AssertionResult]
    counts: GateCounts
    markdown: str


# ---------------------------------------------------------------- policy parsing


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _scalar(node: yaml.Node) -> Any:
    """Construct a plain value from a composed node, with the safe loader's type rules."""
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_expected(comparator: str, value: Any, where: str) -> None:
    if comparator in ("min", "max"):
        if not _is_number(value) or math.isnan(value):
            raise PolicyError(f"{where}: `{comparator}` needs a number, got {value!r}")
    elif comparator == "in":
        if not isinstance(value, list) or not value:
            raise PolicyError(f"{where}: `in` needs a non-empty list, e.g. {{in: [pass, inconclusive]}}")
    elif isinstance(value, dict | list):
        raise PolicyError(f"{where}: `equals` needs a single value, got {value!r}")


def _parse_assertion(key: yaml.Node, value: yaml.Node) -> list[Assertion]:
    path = str(_scalar(key))
    where = f"line {_line(key)}, `{path}`"
    if not path or _TOKEN.sub("", path):
        raise PolicyError(f"{where}: not a metric path (use name.key.key, [0] for list items)")
    if not isinstance(value, yaml.SequenceNode) or len(value.value) != 2:
        raise PolicyError(f"{where}: expected [error|warn, {{min|max|equals|in: value}}]")
    level_node, cond_node = value.value
    level = _scalar(level_node)
    if level not in _LEVELS:
        hint = difflib.get_close_matches(str(level), _LEVELS, n=1)
        raise PolicyError(
            f"{where}: unknown level {level!r}; use error or warn"
            + (f" (did you mean {hint[0]}?)" if hint else "")
        )
    if not isinstance(cond_node, yaml.MappingNode) or not cond_node.value:
        raise PolicyError(f"{where}: the condition must be a mapping like {{max: 1.0}}")
    out: list[Assertion] = []
    for cmp_node, expected_node in cond_node.value:
        comparator = _scalar(cmp_node)
        if comparator not in _COMPARATORS:
            hint = difflib.get_close_matches(str(comparator), _COMPARATORS, n=1)
            raise PolicyError(
                f"line {_line(cmp_node)}, `{path}`: unknown comparator {comparator!r}; "
                f"use one of {', '.join(_COMPARATORS)}" + (f" (did you mean {hint[0]}?)" if hint else "")
            )
        expected = _scalar(expected_node)
        _check_expected(comparator, expected, f"line {_line(expected_node)}, `{path}`")
        out.append(
            Assertion(path=path, level=level, comparator=comparator, expected=expected, line=_line(key))
        )
    return out


def load_policy(text: str) -> Policy:
    """Parse and validate a policy; every mistake is a `PolicyError` that names its line and key."""
    try:
        root = compose_bounded(text)  # aliases and nesting within a budget, before any walk
    except YamlBudgetError as exc:
        raise PolicyError(f"policy {exc}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy is not valid YAML: {exc}") from exc
    if not isinstance(root, yaml.MappingNode):
        raise PolicyError("policy must be a mapping with `version: 1` and `assertions:`")
    top = {str(_scalar(k)): (k, v) for k, v in root.value}
    unknown = sorted(set(top) - {"version", "assertions"})
    if unknown:
        k = top[unknown[0]][0]
        raise PolicyError(f"line {_line(k)}: unknown top-level key `{unknown[0]}`; use version, assertions")
    version = _scalar(top["version"][1]) if "version" in top else POLICY_VERSION
    if version != POLICY_VERSION:
        raise PolicyError(f"unsupported policy version {version!r}; this occulta reads version 1")
    if "assertions" not in top:
        raise PolicyError("policy has no `assertions:`; a gate with nothing to check proves nothing")
    node = top["assertions"][1]
    if not isinstance(node, yaml.MappingNode) or not node.value:
        raise PolicyError(f"line {_line(node)}: `assertions` must be a non-empty mapping of path: [...]")
    seen: dict[str, int] = {}
    assertions: list[Assertion] = []
    for key, value in node.value:
        path = str(_scalar(key))
        if path in seen:  # YAML would silently keep only the last one
            raise PolicyError(f"line {_line(key)}: `{path}` is already asserted on line {seen[path]}")
        seen[path] = _line(key)
        assertions.extend(_parse_assertion(key, value))
    return Policy(version=POLICY_VERSION, assertions=assertions)


# ---------------------------------------------------------------- evaluation


class _MissingPathError(Exception):
    """A path that does not resolve; the message says where it stopped and what was there."""


def _tokens(path: str) -> list[str | int]:
    out: list[str | int] = []
    for m in _TOKEN.finditer(path):
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
        raise _MissingPathError(f"no audit or report field `{head}` ({_nearest(str(head), keys)})")
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
            raise _MissingPathError(f"`{walked}` has no key `{token}` ({_nearest(str(token), list(node))})")
        else:
            raise _MissingPathError(f"`{walked}` is a {type(node).__name__}, not a mapping or list")
        walked += f"[{token}]" if isinstance(token, int) else f".{token}"
    return node


def _compare(comparator: str, expected: Any, actual: Any) -> tuple[bool, str]:
    if comparator in ("min", "max"):
        if not _is_number(actual):
            return False, f"expected a number, found {type(actual).__name__} {actual!r}"
        if math.isnan(actual):
            return False, "value is NaN"
        ok = actual >= expected if comparator == "min" else actual <= expected
        return ok, f"{actual:g} {'' if ok else 'not '}{_SYMBOL[comparator]} {expected:g}"
    if comparator == "in":
        ok = actual in expected
        return ok, f"{actual!r} {'' if ok else 'not '}in {expected!r}"
    ok = actual == expected
    return ok, f"{actual!r} {'==' if ok else '!='} {expected!r}"


def _evaluate_one(document: dict[str, Any], assertion: Assertion) -> AssertionResult:
    try:
        actual = resolve(document, assertion.path)
    except _MissingPathError as exc:
        audit = next((a for a in document["audits"] if a["name"] == _tokens(assertion.path)[0]), None)
        why = f"; the audit errored: {audit['error']}" if audit and audit.get("error") else ""
        return AssertionResult(
            path=assertion.path,
            level="error",  # fail closed: a missing metric is never just a warning
            comparator=assertion.comparator,
            expected=assertion.expected,
            passed=False,
            message=f"missing metric `{assertion.path}`: {exc}{why}",
        )
    ok, message = _compare(assertion.comparator, assertion.expected, actual)
    return AssertionResult(
        path=assertion.path,
        level=assertion.level,
        comparator=assertion.comparator,
        expected=assertion.expected,
        actual=actual if isinstance(actual, str | int | float | bool | None) else repr(actual),
        passed=ok,
        message=message,
    )


def evaluate(report: Report, policy: Policy) -> GateResult:
    """Check every assertion; the gate passes when no error-level assertion failed."""
    document = report.model_dump(mode="json", by_alias=True)
    results = [_evaluate_one(document, a) for a in policy.assertions]
    counts = GateCounts(
        total=len(results),
        passed=sum(r.passed for r in results),
        warnings=sum(not r.passed and r.level == "warn" for r in results),
        errors=sum(not r.passed and r.level == "error" for r in results),
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
    text = value if isinstance(value, str) else repr(value) if value is not None else "—"
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(report: Report, results: list[AssertionResult], counts: GateCounts, passed: bool) -> str:
    """A summary fit for a pull-request comment or `$GITHUB_STEP_SUMMARY`."""
    head = "✅ passed" if passed else "❌ failed"
    lines = [
        f"## Occulta gate {head}",
        "",
        f"Report verdict **{report.verdict_label}** for `{report.model.arch}` on `{report.dataset.ref}`: "
        f"{counts.passed}/{counts.total} assertions passed, {counts.warnings} warning(s), "
        f"{counts.errors} error(s).",
        "",
        "| | Assertion | Expected | Actual | Detail |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        icon = "✅" if r.passed else ("⚠️" if r.level == "warn" else "❌")
        expected = f"{_SYMBOL[r.comparator]} {_cell(r.expected)}"
        lines.append(f"| {icon} | `{r.path}` | {expected} | {_cell(r.actual)} | {_cell(r.message)} |")
    if report.audits:
        lines += ["", "### Audits", ""]
        lines += [f"- **{a.name}** ({a.verdict}): {_cell(a.summary)}" for a in report.audits]
    return "\n".join(lines) + "\n"


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def to_junit(result: GateResult) -> str:
    """JUnit XML: one testcase per assertion; error-level failures fail, failed warnings are skipped."""
    suite = ET.Element(
        "testsuite",
        name="occulta-gate",
        tests=str(result.counts.total),
        failures=str(result.counts.errors),
        skipped=str(result.counts.warnings),
        errors="0",
    )
    for r in result.assertions:
        audit = _tokens(r.path)[0]
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"occulta.gate.{audit}",
            name=_xml_text(f"{r.path} {_SYMBOL[r.comparator]} {r.expected!r}"),
        )
        if r.passed:
            continue
        if r.level == "error":
            failure = ET.SubElement(case, "failure", message=_xml_text(r.message), type="GateAssertion")
            failure.text = _xml_text(f"{r.path}: {r.message} (actual: {r.actual!r})")
        else:
            ET.SubElement(case, "skipped", message=_xml_text(f"warning: {r.message}"))
            ET.SubElement(case, "system-out").text = _xml_text(f"warning: {r.path}: {r.message}")
    root = ET.Element("testsuites", name="occulta")
    root.append(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
