"""Saliency evidence about one suspected region: how much of the model's attention sits in the box.

docs/audits.md, "Spurious signals" (Adebayo et al. 2022 for the top-q share). Saliency only shows where
a model looks on the images it is given, so it is reported beside the stamp test (`discover`), which
asks the model directly, and never confirms a region on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from auditors.audits.spurious_signal.counterfactual import Box, carries_artifact
from auditors.methods.saliency import box_share


@dataclass
class Thresholds:
    share: float = 0.5  # mean top-q share in the box (docs/audits.md, "Spurious signals")
    enrichment: float = 10.0  # or share / area baseline
    min_group: int = 8  # groups (classes) with fewer images are reported, never flagged


@dataclass
class AuditState:
    """What the saliency evidence reads: the sample, the clean predictions and the top-q masks."""

    images: torch.Tensor  # [N,3,H,W] in [0,1], on the model's device
    labels: torch.Tensor | None
    pred: torch.Tensor  # [N] clean predictions
    class_names: list[str]
    thresholds: Thresholds
    tops: dict[str, torch.Tensor] = field(default_factory=dict)  # method -> top-q bool [N,H,W]
    top_k: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _area_baseline(box: Box, height: int, width: int) -> float:
    return box[2] * box[3] / (height * width)


def _group_stats(
    share: torch.Tensor, groups: torch.Tensor, st: AuditState, baseline: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c, name in enumerate(st.class_names):
        sel = groups == c
        n = int(sel.sum())
        if n:
            s = float(share[sel].mean())
            out[name] = {"share": round(s, 4), "enrichment": round(s / baseline, 3), "n": n}
    return out


def saliency_evidence(
    st: AuditState, box: Box, index: torch.Tensor, artifact: tuple[torch.Tensor, torch.Tensor | None] | None
) -> dict[str, Any]:
    """Per method: mean top-q share in `box` over the images `index`, the area baseline, enrichment,
    per true and per predicted class, and (with an artifact) on images that do / do not carry it.

    A method flags the box when some predicted class (with ≥ min_group images) has mean share ≥ 0.5
    or ≥ 10× the baseline; a per-image region (one image) is judged on that image.
    """
    height, width = st.images.shape[-2:]
    baseline = _area_baseline(box, height, width)
    th = st.thresholds
    pred = st.pred[index]
    has = carries_artifact(st.images[index], box, *artifact) if artifact is not None else None
    out: dict[str, Any] = {}
    for method, top in st.tops.items():
        share = box_share(top[index], box)
        mean_share = float(share.mean())
        per_pred = _group_stats(share, pred, st, baseline)
        min_n = th.min_group if index.numel() > 1 else 1
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
        if st.labels is not None:
            entry["per_true_class"] = _group_stats(share, st.labels[index], st, baseline)
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
    return {"area_baseline": round(baseline, 5), "top_k_pixels": st.top_k, "methods": out}


def hotspot_maps(maps: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[K,H,W]: per predicted class, the mean of the maps normalised to sum 1 (zeros for empty classes);
    drawn in the report so a reader sees where each class is decided."""
    norm = maps / maps.flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1)
    out = torch.zeros(num_classes, *maps.shape[1:], device=maps.device)
    for c in range(num_classes):
        sel = pred == c
        if bool(sel.any()):
            out[c] = norm[sel].mean(0)
    return out
