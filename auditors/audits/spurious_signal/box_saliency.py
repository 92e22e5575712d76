"""Saliency evidence about one suspected region: how much of the model's attention sits in the box.

docs/audits.md, "Spurious signals" (Adebayo et al. 2022 for the top-q share). Saliency only shows where
a model looks on the images it is given, so it is reported beside the stamp test (`discover`), which
asks the model directly, and never confirms a region on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from auditors.audits.spurious_signal.counterfactual import Box


@dataclass
class Thresholds:
    share: float = 0.5  # mean top-q share in the box (docs/audits.md, "Spurious signals")
    enrichment: float = 10.0  # or share / area baseline
    min_group: int = 8  # groups (classes) with fewer images are reported, never flagged


def area_baseline(box: Box, height: int, width: int) -> float:
    return box[2] * box[3] / (height * width)


def _group_stats(
    share: torch.Tensor, groups: torch.Tensor, class_names: list[str], baseline: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c, name in enumerate(class_names):
        sel = groups == c
        n = int(sel.sum())
        if n:
            s = float(share[sel].mean())
            out[name] = {"share": round(s, 4), "enrichment": round(s / baseline, 3), "n": n}
    return out


def evidence(
    shares: dict[str, torch.Tensor],
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    has: torch.Tensor | None,
    class_names: list[str],
    th: Thresholds,
    baseline: float,
    top_k: int,
) -> dict[str, Any]:
    """Per method: mean top-q share in the box over the images whose per-image `shares` are given,
    the area baseline, enrichment, per true and per predicted class, and (with an artifact, `has`:
    which images carry it) on images that do / do not carry it. Only per-image shares go in, so shards
    can compute them and a merge can judge them.

    A method flags the box when some predicted class (with ≥ min_group images) has mean share ≥ 0.5
    or ≥ 10× the baseline; a per-image region (one image) is judged on that image.
    """
    out: dict[str, Any] = {}
    for method, share in shares.items():
        mean_share = float(share.mean())
        per_pred = _group_stats(share, pred, class_names, baseline)
        min_n = th.min_group if share.numel() > 1 else 1
        flagged_classes = [
            c
            for c, g in per_pred.items()
            if g["n"] >= min_n and (g["share"] >= th.share or g["enrichment"] >= th.enrichment)
        ]
        entry: dict[str, Any] = {
            "mean_share": round(mean_share, 4),
            "enrichment": round(mean_share / baseline, 3),
            "flagged_classes": flagged_classes,
            "per_predicted_class": per_pred,
        }
        if labels is not None:
            entry["per_true_class"] = _group_stats(share, labels, class_names, baseline)
        if has is not None:
            for key, sel in (("with_artifact", has), ("without_artifact", ~has)):
                if bool(sel.any()):
                    s = float(share[sel].mean())
                    entry[key] = {
                        "share": round(s, 4),
                        "enrichment": round(s / baseline, 3),
                        "n": int(sel.sum()),
                    }
        out[method] = entry
    return {"area_baseline": round(baseline, 5), "top_k_pixels": top_k, "methods": out}
