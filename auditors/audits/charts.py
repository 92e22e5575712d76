"""Chart specs: an audit's curves as data (x labels + named series) that any front end can draw.

Each audit declares its own charts in a torch-free `charts.py` of its package, named by
`AuditInfo.charts`, so the dashboard draws a new audit's curves without an edit of its own. A chart is
pure data computed from the audit's `metrics`, never from the model.
"""

from __future__ import annotations

from typing import Any

Chart = dict[str, Any]


def _numbers(values: Any) -> list[float | None] | None:
    if not isinstance(values, list) or not values:
        return None
    if not all(v is None or isinstance(v, int | float) for v in values):
        return None
    return [None if v is None else float(v) for v in values]


def chart(key: str, title: str, x_label: str, y_label: str, x: list[Any], series: dict[str, Any]) -> Chart:
    """A line chart (add `| {"type": "bar"}` for bars); series that are not numbers of len(x) are dropped."""
    data = {name: nums for name, values in series.items() if (nums := _numbers(values)) is not None}
    return {
        "key": key,
        "title": title,
        "x_label": x_label,
        "y_label": y_label,
        "x": x,
        "series": [{"label": k, "data": v} for k, v in data.items() if len(v) == len(x)],
    }
