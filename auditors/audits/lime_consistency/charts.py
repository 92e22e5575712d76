"""LIME's top-k removal curve against a random order, and top-K agreement across fill colours.

Torch-free: the dashboard imports it through `AuditInfo.charts`.
"""

from __future__ import annotations

from typing import Any

from auditors.audits.charts import Chart, chart


def charts(m: dict[str, Any]) -> list[Chart]:
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
