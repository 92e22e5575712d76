"""A gate policy file: YAML assertions on report paths, parsed and checked before any report is read.

Every mistake a policy can hold on its own (malformed YAML, an unknown level, comparator or top-level
key, a non-numeric bound, a duplicate path) is a `PolicyError` that names its line and, where one is
close, the nearest valid spelling. Names that only a report can refute (a misspelt audit or metric)
are caught when the policy is evaluated (`occulta.gate`).
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from occulta.errors import PolicyError
from occulta.safe_yaml import YamlBudgetError, compose_bounded

POLICY_VERSION = 1
Level = Literal["error", "warn"]
Comparator = Literal["min", "max", "equals", "in"]
WhenNotRun = Literal["fail", "skip"]
_LEVELS: tuple[str, ...] = ("error", "warn")
_COMPARATORS: tuple[str, ...] = ("min", "max", "equals", "in")
_WHEN_NOT_RUN: tuple[str, ...] = ("fail", "skip")
_TOP_KEYS: tuple[str, ...] = ("version", "when_not_run", "assertions")
SYMBOL = {"min": "≥", "max": "≤", "equals": "=", "in": "∈"}
# `name`, `.name`, `[3]` or `["key.with.dots"]`
TOKEN = re.compile(r"""\.?([A-Za-z0-9_\-]+)|\[(\d+)\]|\[(?:"([^"]+)"|'([^']+)')\]""")


class Assertion(BaseModel):
    """One comparator on one path; `{min: a, max: b}` in a policy becomes two assertions."""

    path: str
    level: Level
    comparator: Comparator
    expected: Any
    line: int = Field(description="1-based line of the assertion in the policy file")
    when_not_run: WhenNotRun = Field(
        default="fail", description="skip: the assertion does not apply when its audit was not run"
    )


class Policy(BaseModel):
    version: int = POLICY_VERSION
    when_not_run: WhenNotRun = "fail"
    assertions: list[Assertion]


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _scalar(node: yaml.Node) -> Any:
    """Construct a plain value from a composed node, with the safe loader's type rules."""
    return yaml.SafeLoader("").construct_object(node, deep=True)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_expected(comparator: str, value: Any, where: str) -> None:
    if comparator in ("min", "max"):
        if not is_number(value) or math.isnan(value):
            raise PolicyError(f"{where}: `{comparator}` needs a number, got {value!r}")
    elif comparator == "in":
        if not isinstance(value, list) or not value:
            raise PolicyError(f"{where}: `in` needs a non-empty list, e.g. {{in: [pass, inconclusive]}}")
    elif isinstance(value, dict | list):
        raise PolicyError(f"{where}: `equals` needs a single value, got {value!r}")


def _when_not_run(node: yaml.Node, where: str) -> WhenNotRun:
    value = _scalar(node)
    if value not in _WHEN_NOT_RUN:
        raise PolicyError(f"{where}: `when_not_run` is fail or skip, got {value!r}")
    return "skip" if value == "skip" else "fail"


def _parse_assertion(key: yaml.Node, value: yaml.Node, when_not_run: WhenNotRun) -> list[Assertion]:
    path = str(_scalar(key))
    where = f"line {_line(key)}, `{path}`"
    if not path or TOKEN.sub("", path):
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
    pairs = [(k, v) for k, v in cond_node.value if _scalar(k) != "when_not_run"]
    for k, v in cond_node.value:
        if _scalar(k) == "when_not_run":
            when_not_run = _when_not_run(v, f"line {_line(k)}, `{path}`")
    if not pairs:
        raise PolicyError(f"{where}: the condition needs a comparator, e.g. {{max: 1.0}}")
    out: list[Assertion] = []
    for cmp_node, expected_node in pairs:
        comparator = _scalar(cmp_node)
        if comparator not in _COMPARATORS:
            options = (*_COMPARATORS, "when_not_run")
            hint = difflib.get_close_matches(str(comparator), options, n=1)
            raise PolicyError(
                f"line {_line(cmp_node)}, `{path}`: unknown comparator {comparator!r}; "
                f"use one of {', '.join(options)}" + (f" (did you mean {hint[0]}?)" if hint else "")
            )
        expected = _scalar(expected_node)
        _check_expected(comparator, expected, f"line {_line(expected_node)}, `{path}`")
        out.append(
            Assertion(
                path=path,
                level=level,
                comparator=comparator,
                expected=expected,
                line=_line(key),
                when_not_run=when_not_run,
            )
        )
    return out


def _yaml_error(exc: yaml.YAMLError) -> str:
    """One line: where the parser stopped and what it expected, without its internals."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    opened = f", {context} that starts on line {start.line + 1}" if context and start is not None else ""
    return f"policy is not valid YAML{where}: {problem}{opened} (check indentation, colons, brackets)"


def load_policy(text: str) -> Policy:
    """Parse and validate a policy; every mistake is a `PolicyError` that names its line and key."""
    try:
        root = compose_bounded(text)  # aliases and nesting within a budget, before any walk
    except YamlBudgetError as exc:
        raise PolicyError(f"policy {exc}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(_yaml_error(exc)) from None
    if not isinstance(root, yaml.MappingNode):
        raise PolicyError("policy must be a mapping with `version: 1` and `assertions:`")
    top = {str(_scalar(k)): (k, v) for k, v in root.value}
    unknown = sorted(set(top) - set(_TOP_KEYS))
    if unknown:
        k = top[unknown[0]][0]
        hint = difflib.get_close_matches(unknown[0], _TOP_KEYS, n=1)
        raise PolicyError(
            f"line {_line(k)}: unknown top-level key `{unknown[0]}`; use {', '.join(_TOP_KEYS)}"
            + (f" (did you mean {hint[0]}?)" if hint else "")
        )
    default: WhenNotRun = "fail"
    if "when_not_run" in top:
        k, v = top["when_not_run"]
        default = _when_not_run(v, f"line {_line(k)}")
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
        assertions.extend(_parse_assertion(key, value, default))
    return Policy(version=POLICY_VERSION, when_not_run=default, assertions=assertions)
