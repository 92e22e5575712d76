"""Plot helpers shared by the audits: PNG files a report embeds. Matplotlib on the Agg backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563")


def line_plot(
    path: Path,
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    hline: float | None = None,
    ylim: tuple[float, float] | None = None,
) -> None:
    """One line per series (e.g. per strategy) over a shared x axis."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=110)
    for i, (name, ys) in enumerate(series.items()):
        ax.plot(list(x), list(ys), marker="o", ms=3, lw=1.6, label=name, color=PALETTE[i % len(PALETTE)])
    if hline is not None:
        ax.axhline(hline, color="#6b7280", ls="--", lw=1)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def histogram(path: Path, values: Sequence[float], *, title: str, xlabel: str, bins: int = 20) -> None:
    fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=110)
    ax.hist(list(values), bins=bins, color=PALETTE[0], alpha=0.85)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def to_hwc(image: torch.Tensor) -> np.ndarray:
    """[3,H,W] in [0,1] -> HxWx3 numpy for imshow."""
    return image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def overlay_grid(
    path: Path,
    images: Sequence[torch.Tensor],
    maps: Sequence[Sequence[torch.Tensor | None]],
    *,
    row_titles: Sequence[str],
    col_titles: Sequence[str],
    boxes: Sequence[Sequence[float] | None] | None = None,
    cmap: str = "inferno",
) -> None:
    """A grid: the original image in column 0, then one heatmap overlay per column of `maps`.

    `maps[i][j]` is an [H,W] map for image i and column j (None leaves the cell empty); `boxes[i]`
    draws an [x, y, w, h] rectangle on every cell of row i.
    """
    rows, cols = len(images), 1 + (len(maps[0]) if maps else 0)
    bar = 0.75  # inches under the grid for the colour bar, so a reader knows bright means high
    height = 1.6 * rows + bar
    fig, axes = plt.subplots(rows, cols, figsize=(max(1.6 * cols, 3.2), height), dpi=110, squeeze=False)
    for i, img in enumerate(images):
        base = to_hwc(img)
        for j in range(cols):
            ax = axes[i][j]
            ax.axis("off")
            ax.imshow(base, interpolation="nearest")
            if j > 0:
                m = maps[i][j - 1]
                if m is not None:
                    arr = m.detach().float().cpu().numpy()
                    ax.imshow(arr, cmap=cmap, alpha=0.6, interpolation="nearest")
            if boxes is not None and boxes[i] is not None:
                x, y, w, h = boxes[i]  # type: ignore[misc]
                ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), w, h, fill=False, ec="#22d3ee", lw=1.4))
            if i == 0:
                ax.set_title((["image", *col_titles])[j], fontsize=8)
        axes[i][0].text(-2, images[i].shape[-2] / 2, row_titles[i], fontsize=8, ha="right", va="center")
    fig.tight_layout(pad=0.3, rect=(0, bar / height, 1, 1))
    cax = fig.add_axes((0.2, 0.35 * bar / height, 0.6, 0.12 * bar / height))
    scale = plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap=cmap)
    colour_bar = fig.colorbar(scale, cax=cax, orientation="horizontal", ticks=[0, 1])
    colour_bar.ax.set_xticklabels(["low", "high"], fontsize=8)
    colour_bar.ax.set_title("map value (each map scaled to its own range)", fontsize=8)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.05)  # never clip a title or a label
    plt.close(fig)


def grouped_bars(
    path: Path, categories: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str, ylabel: str
) -> None:
    """Grouped bars: one group per category (e.g. class), one bar per series (e.g. strategy)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(categories) * max(1, len(series)) / 2), 3.4), dpi=110)
    n = max(1, len(series))
    width = 0.8 / n
    xs = np.arange(len(categories))
    for i, (name, ys) in enumerate(series.items()):
        ax.bar(xs + (i - (n - 1) / 2) * width, list(ys), width, label=name, color=PALETTE[i % len(PALETTE)])
    ax.set_xticks(xs, list(categories), rotation=30 if len(categories) > 6 else 0, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def map_inputs(
    images: torch.Tensor,
    predicted: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    confidence: torch.Tensor | None = None,
) -> dict[str, np.ndarray]:
    """What a raw-map `.npz` ships beside its maps: the inputs (uint8 [N,3,H,W]) and the predicted
    classes, so a viewer can show each map next to its image and draw a finding on a real example;
    with `labels` (true classes, -1 unknown) and `confidence` (softmax of the prediction) a gallery
    tile can say what the model saw and how sure it was."""
    pixels = (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    out = {"images": pixels.numpy(), "predicted": predicted.detach().cpu().numpy().astype(np.int16)}
    if labels is not None:
        out["labels"] = labels.detach().cpu().numpy().astype(np.int16)
    if confidence is not None:
        out["confidence"] = confidence.detach().float().cpu().numpy().astype(np.float16)
    return out
