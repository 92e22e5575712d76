"""The sufficient-input-subset size of each explained image, sorted.

Torch-free: the dashboard imports it through `AuditInfo.charts`.
"""

from __future__ import annotations

from typing import Any

from auditors.audits.charts import Chart, chart


def charts(m: dict[str, Any]) -> list[Chart]:
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
