"""The toy audit's chart: proof that an audit's curves reach the dashboard from its own package."""

from __future__ import annotations

from typing import Any

from auditors.audits.charts import Chart, chart


def charts(m: dict[str, Any]) -> list[Chart]:
    return [
        chart(
            "toy.majority",
            "Share of the most predicted class",
            "class",
            "share",
            [str(m.get("majority_class", "?"))],
            {"majority share": [m.get("majority_share")]},
        )
        | {"type": "bar"}
    ]
