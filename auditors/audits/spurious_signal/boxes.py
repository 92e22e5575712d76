"""Box geometry shared by discovery and the benchmark: IoU, overlap, and merging overlapping findings.

One artifact must give one finding: a glyph split into strokes, or a bar seen by two windows, comes
back as boxes of the same class that touch or overlap, and those are merged into their union.
"""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[int, int, int, int]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    ox = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    oy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ox * oy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def inside(a: Sequence[float], b: Sequence[float]) -> float:
    """The share of box `a`'s area that lies in box `b`."""
    ox = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    oy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return float(ox * oy / (a[2] * a[3])) if a[2] * a[3] > 0 else 0.0


def touches(a: Sequence[float], b: Sequence[float], gap: int = 1) -> bool:
    """Whether two boxes overlap or leave at most `gap` empty pixels between them on both axes."""
    gap_x = max(a[0], b[0]) - min(a[0] + a[2], b[0] + b[2])
    gap_y = max(a[1], b[1]) - min(a[1] + a[3], b[1] + b[3])
    return gap_x <= gap and gap_y <= gap


def union(a: Box, b: Box) -> Box:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0)


def merge_groups(items: Sequence[tuple[int, Box]], gap: int = 1) -> list[list[int]]:
    """Indices of `items` ((class, box) pairs) grouped so that boxes of one class that touch, directly
    or through a chain, share a group; groups keep the order of their first member."""
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (ci, bi) in enumerate(items):
        for j in range(i):
            cj, bj = items[j]
            if ci == cj and touches(bi, bj, gap):
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(items)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])
