"""The dashboard's charts: each audit's own chart specs (declared by the audit package, read through
the registry) plus the page-side helpers that overlay two audits and compare their metrics."""

from __future__ import annotations

from typing import Any

from auditors.audits.charts import Chart
from auditors.registry import audit_charts
from auditors.report import AuditResult
from occulta.render import flatten_metrics


def charts_for(audit: AuditResult) -> list[Chart]:
    return [c for c in audit_charts(audit.name, audit.metrics) if c["series"]]


def overlay(a: AuditResult | None, b: AuditResult | None) -> list[Chart]:
    """The same charts of two audits on one canvas each: A solid, B dashed (set by the page script)."""
    by_key: dict[str, Chart] = {}
    for side, audit in (("A", a), ("B", b)):
        for c in charts_for(audit) if audit else []:
            merged = by_key.setdefault(c["key"], c | {"series": []})
            if len(c["x"]) > len(merged["x"]):
                merged["x"] = c["x"]
            merged["series"] += [s | {"label": f"{side} · {s['label']}", "side": side} for s in c["series"]]
    return list(by_key.values())


def metric_rows(audit: AuditResult) -> list[tuple[str, Any]]:
    return [(path, value) for path, value in flatten_metrics(audit.metrics) if not isinstance(value, list)]


def differs(a: Any, b: Any, rel: float = 0.05) -> bool:
    """Numbers differ beyond 5% (relative) or 0.01 (absolute, near zero); anything else if not equal."""
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(a - b) > max(0.01, rel * max(abs(a), abs(b)))
    return bool(a != b)


def compare_rows(a: AuditResult | None, b: AuditResult | None) -> list[dict[str, Any]]:
    left = dict(metric_rows(a)) if a else {}
    right = dict(metric_rows(b)) if b else {}
    paths = list(left) + [p for p in right if p not in left]
    return [
        {"path": p, "a": left.get(p), "b": right.get(p), "diff": differs(left.get(p), right.get(p))}
        for p in paths
    ]
