"""Class entropy, unchanged predictions and accuracy against the share of patches removed, one series per strategy.

Torch-free: the dashboard imports it through `AuditInfo.charts`.
"""

from __future__ import annotations

from typing import Any

from auditors.audits.charts import Chart, chart


def charts(m: dict[str, Any]) -> list[Chart]:
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
