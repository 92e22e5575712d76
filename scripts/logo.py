"""Draw docs/logo.png, the mark the Helm chart and the README show: an image as a grid of patches,
some of them removed, the way every audit sees an input. Run `python scripts/logo.py` to redraw it
(matplotlib only; the file is committed, nothing draws it at run time)."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
from matplotlib.patches import Circle, FancyBboxPatch, Rectangle

GRID = 5
# Patches taken out (row, column from the top left): a diagonal stroke and a corner, like a mask.
REMOVED = {(0, 3), (1, 1), (1, 4), (2, 0), (3, 3), (4, 1)}
BACKGROUND, TILE, ACCENT = "#14213d", "#4cc9f0", "#f72585"


def draw(out: Path, size_px: int = 256) -> None:
    """A rounded square holding the grid; the centre patch is the pupil of an eye (the audit)."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1), dpi=size_px)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.add_patch(
        FancyBboxPatch((0.04, 0.04), 0.92, 0.92, boxstyle="round,pad=0,rounding_size=0.16", color=BACKGROUND)
    )
    cell, gap = 0.14, 0.02
    origin = 0.5 - (GRID * cell + (GRID - 1) * gap) / 2
    for row in range(GRID):
        for col in range(GRID):
            if (row, col) in REMOVED:
                continue
            x = origin + col * (cell + gap)
            y = 1 - origin - (row + 1) * cell - row * gap
            shade = 0.45 + 0.55 * (row + col) / (2 * (GRID - 1))
            ax.add_patch(Rectangle((x, y), cell, cell, color=TILE, alpha=shade, linewidth=0))
    ax.add_patch(Circle((0.5, 0.5), 0.06, color=ACCENT))
    fig.savefig(out, dpi=size_px, transparent=True)
    plt.close(fig)


if __name__ == "__main__":
    draw(
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "logo.png"
    )
