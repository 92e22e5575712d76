"""Each candidate region: stamp flip rate against its null, and removal effect against random boxes.

Torch-free: the dashboard imports it through `AuditInfo.charts`.
"""

from __future__ import annotations

from typing import Any

from auditors.audits.charts import Chart, chart


def charts(m: dict[str, Any]) -> list[Chart]:
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
