"""Discovery without a hint: where, across many images, is one class decided? (docs/audits.md, "Spurious signals")

Per predicted class, two aggregates over the dataset: the mean of each image's saliency map normalised
to sum 1 (the class's hotspot map), and the mean drop of p(class) when each window of a sliding grid is
removed through the engine (region-removal effect). An object moves from image to image, so its effect
spreads thin over the grid; a fixed-place shortcut (a watermark, a border) piles up on one window. The
windows whose removal effect stands out are candidates; the audit confirms each with the counterfactual
tests before it calls one a finding.

The counterfactuals alone cannot tell a shortcut from the object: pasting the centre box of a class's
images onto others pastes the object itself, which flips them too. A shortcut is a *fixed pattern at a
fixed place*, so confirmation also asks whether the box's content repeats across the images the box
decides (`content_evidence`), and, with object masks, whether the box is mostly the object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from auditors.audits.spurious_signal.counterfactual import Box
from auditors.audits.spurious_signal.regions import AuditState
from auditors.methods.saliency import grid_boxes, occlusion_effects


def hotspot_maps(maps: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[K,H,W]: per predicted class, the mean of the maps normalised to sum 1 (zeros for empty classes)."""
    norm = maps / maps.flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1)
    out = torch.zeros(num_classes, *maps.shape[1:], device=maps.device)
    for c in range(num_classes):
        sel = pred == c
        if bool(sel.any()):
            out[c] = norm[sel].mean(0)
    return out


def as_box(values: Sequence[float]) -> Box:
    """[x, y, w, h] as a tuple of ints."""
    x, y, w, h = (round(v) for v in values)
    return (x, y, w, h)


def overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    ox = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    oy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ox * oy / min(a[2] * a[3], b[2] * b[3])


def content_consistency(patches: torch.Tensor, reference: torch.Tensor, coverage: float = 0.1) -> float:
    """How fixed the content of a box is across `patches` [n,C,h,w], relative to `reference` [m,C,h,w].

    Per pixel: 1 − median_i ‖x_i − med x‖² / median_j ‖r_j − med r‖² (channels summed, medians over
    images, so up to half of the patches may differ: a 50%-biased class is still judged on its marked
    half). The box's value is the (1 − `coverage`) quantile over its pixels, because a fixed pattern
    (a glyph, a few pixels) may fill only part of the box. ≈1: the same content everywhere it matters;
    ≈0: it varies as much as on the reference images; < 0: more (an object that moves and recolours).
    """
    eps = 1e-4  # pixels constant on both sides say nothing: their ratio is 1, their consistency 0

    def spread(x: torch.Tensor) -> torch.Tensor:
        return ((x - x.median(0).values) ** 2).sum(1).median(0).values

    per_pixel = 1 - (spread(patches) + eps) / (spread(reference) + eps)
    return float(per_pixel.flatten().quantile(1 - coverage))


def content_evidence(
    images: torch.Tensor,
    pred: torch.Tensor,
    cls: int,
    box: Box,
    drops: torch.Tensor,
    object_masks: torch.Tensor | None,
    coverage: float,
) -> dict[str, Any]:
    """Content consistency of `box` on the half of class `cls`'s images that its removal hurts most
    (`drops` [N]: where the box is decisive), against the other classes' images; with object masks, the
    mean share of the box those images' objects cover."""
    x, y, w, h = box
    own = (pred == cls).nonzero().flatten()
    decisive = own[drops[own].argsort(descending=True)[: max(2, own.numel() // 2)]]
    others = pred != cls
    out: dict[str, Any] = {"consistency_images": int(decisive.numel())}
    if decisive.numel() >= 2 and int(others.sum()) >= 2:
        patches = images[decisive, :, y : y + h, x : x + w]
        out["content_consistency"] = round(
            content_consistency(patches, images[others, :, y : y + h, x : x + w], coverage), 4
        )
    if object_masks is not None:
        covered = object_masks[decisive.to(object_masks.device), y : y + h, x : x + w].float()
        out["object_overlap"] = round(float(covered.mean()), 4)
    return out


def find_candidates(
    st: AuditState,
    hotspots: torch.Tensor,
    *,
    window: int,
    stride: int,
    min_effect: float,
    min_group: int,
    max_candidates: int,
) -> tuple[list[dict[str, Any]], torch.Tensor, list[Box]]:
    """Candidate (class, box) pairs ranked by how much a window stands out for that class.

    score = the class's mean removal effect at the window − its median over all windows (so a model
    that is merely fragile everywhere scores low). A candidate needs score ≥ `min_effect`. Returns the
    candidates, the effects [N, windows] and the windows.
    """
    height, width = st.images.shape[-2:]
    boxes: list[Box] = grid_boxes(height, width, window, stride)
    effects = occlusion_effects(
        st.model, st.images, st.pred, boxes, mean=st.mean, std=st.std, strategy=st.strategy, seed=st.seed
    )
    area = window * window / (height * width)
    found: list[dict[str, Any]] = []
    for c, name in enumerate(st.class_names):
        sel = st.pred == c
        n = int(sel.sum())
        if n < min_group:
            continue
        mean_effect = effects[sel].mean(0)
        score = mean_effect - mean_effect.median()
        decisive = (effects[sel] >= 0.5).float().mean(0)
        for w in score.argsort(descending=True)[:3].tolist():
            if float(score[w]) < min_effect:
                break
            x, y, bw, bh = boxes[w]
            mass = float(hotspots[c, y : y + bh, x : x + bw].sum())
            found.append(
                {
                    "class": name,
                    "class_index": c,
                    "box": list(boxes[w]),
                    "score": round(float(score[w]), 4),
                    "mean_removal_effect": round(float(mean_effect[w]), 4),
                    "decisive_share": round(float(decisive[w]), 4),
                    "saliency_mass": round(mass, 4),
                    "saliency_enrichment": round(mass / area, 3),
                    "n_images": n,
                }
            )
    found.sort(key=lambda d: -d["score"])
    kept: list[dict[str, Any]] = []
    for cand in found:
        box = as_box(cand["box"])
        if any(k["class"] == cand["class"] and overlap(box, as_box(k["box"])) > 0.5 for k in kept):
            continue
        kept.append(cand)
        if len(kept) == max_candidates:
            break
    return kept, effects, boxes
