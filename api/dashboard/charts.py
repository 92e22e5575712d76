"""Curves of each audit as chart specs (x labels + named series) for Chart.js, one builder per audit
name in a registry, so a new audit adds a builder instead of a branch. Pure functions over the report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from auditors.report import AuditResult
from occulta.render import flatten_metrics

Chart = dict[str, Any]
_BUILDERS: dict[str, Callable[[dict[str, Any]], list[Chart]]] = {}


def builder(name: str) -> Callable[[Callable[[dict[str, Any]], list[Chart]]], Callable[..., list[Chart]]]:
    def register(fn: Callable[[dict[str, Any]], list[Chart]]) -> Callable[..., list[Chart]]:
        _BUILDERS[name] = fn
        return fn

    return register


def _numbers(values: Any) -> list[float | None] | None:
    if not isinstance(values, list) or not values:
        return None
    if not all(v is None or isinstance(v, int | float) for v in values):
        return None
    return [None if v is None else float(v) for v in values]


def chart(key: str, title: str, x_label: str, y_label: str, x: list[Any], series: dict[str, Any]) -> Chart:
    data = {name: nums for name, values in series.items() if (nums := _numbers(values)) is not None}
    return {
        "key": key,
        "title": title,
        "x_label": x_label,
        "y_label": y_label,
        "x": x,
        "series": [{"label": k, "data": v} for k, v in data.items() if len(v) == len(x)],
    }


@builder("missingness_bias")
def _missingness(m: dict[str, Any]) -> list[Chart]:
    x = [f"{round(100 * f)}%" for f in m.get("fractions", [])]
    strategies: dict[str, dict[str, Any]] = m.get("strategies", {})
    return [
        chart(
            f"missingness_bias.{metric}",
            title,
            "share of patches removed",
            y,
            x,
            {s: v.get(metric) for s, v in strategies.items()},
        )
        for metric, title, y in (
            ("entropy", "Class entropy of predictions", "nats"),
            ("unchanged", "Predictions unchanged", "share"),
            ("accuracy", "Accuracy", "share"),
        )
    ]


@builder("lime_consistency")
def _lime(m: dict[str, Any]) -> list[Chart]:
    removal, fills = m.get("removal", {}), m.get("fill_consistency", {})
    out = [
        chart(
            "lime_consistency.removal",
            "Predictions unchanged after removing the top-k features",
            "features removed (k)",
            "share unchanged",
            removal.get("k", []),
            {"LIME's own ranking": removal.get("own"), "random ranking": removal.get("random")},
        ),
        chart(
            "lime_consistency.fill_consistency",
            "Top-K agreement across fill colours",
            "top features (K)",
            "Jaccard",
            fills.get("K", []),
            {"across fills": fills.get("jaccard"), "random baseline": fills.get("random")},
        ),
    ]
    return out


@builder("sis")
def _sis(m: dict[str, Any]) -> list[Chart]:
    pct = sorted(v for v in m.get("sis_size", {}).get("pct", []) if isinstance(v, int | float))
    return [
        chart(
            "sis.sis_size",
            "Sufficient input subset size per image (sorted)",
            "image",
            "% of pixels",
            [str(i + 1) for i in range(len(pct))],
            {"SIS size": pct},
        )
        | {"type": "bar"}
    ]


@builder("spurious_signal")
def _spurious(m: dict[str, Any]) -> list[Chart]:
    candidates = [c for c in m.get("candidates", []) if isinstance(c, dict)]
    labels = [f"{c.get('class')} @ {[round(v) for v in c.get('box') or []]}" for c in candidates]
    return [
        chart(
            "spurious_signal.candidates",
            "Candidate regions: stamping flips vs the null / removal effect",
            "candidate (class @ box)",
            "share",
            labels,
            {
                "flip rate": [(c.get("flip") or {}).get("value") for c in candidates],
                "null flip rate": [(c.get("null_flip") or {}).get("value") for c in candidates],
                "removal effect": [(c.get("removal") or {}).get("effect") for c in candidates],
                "random-box effect": [(c.get("removal") or {}).get("random_effect") for c in candidates],
            },
        )
        | {"type": "bar"}
    ]


def charts_for(audit: AuditResult) -> list[Chart]:
    build = _BUILDERS.get(audit.name)
    charts = build(audit.metrics) if build else []
    return [c for c in charts if c["series"]]


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
