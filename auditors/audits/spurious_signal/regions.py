"""Evidence about one suspected region: saliency concentration and the counterfactual tests.

Shared by the hinted regions and the discovery candidates of the spurious-signal audit, so both are
judged by the same numbers (docs/audits.md, "Spurious signals"; Adebayo et al. 2022 for the top-q share; PAIR 2022 for the
stamp test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from auditors.audits.spurious_signal.counterfactual import (
    Box,
    carries_artifact,
    flip_rates,
    paste_from_donors,
    removal_vs_random,
    stamp_artifact,
)
from auditors.engine import masked_logits, plain_logits
from auditors.methods.saliency import box_keep, box_share


@dataclass
class Thresholds:
    share: float = 0.5  # mean top-q share in the box (docs/audits.md, "Spurious signals")
    enrichment: float = 10.0  # or share / area baseline
    flip: float = 0.5  # stamp flip rate toward the suspected class
    removal_margin: float = 0.1  # removal effect above the 90th percentile of random boxes
    min_group: int = 5  # groups (classes) with fewer images are reported, never flagged


@dataclass
class AuditState:
    """What every region test reads: the sample, the clean predictions and the saliency maps."""

    model: nn.Module
    images: torch.Tensor  # [N,3,H,W] in [0,1], on the model's device
    labels: torch.Tensor | None
    pred: torch.Tensor  # [N] clean predictions
    class_names: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    strategy: str
    seed: int
    n_random: int
    thresholds: Thresholds
    tops: dict[str, torch.Tensor] = field(default_factory=dict)  # method -> top-q bool [N,H,W]
    top_k: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return plain_logits(self.model, images, mean=self.mean, std=self.std).argmax(1)


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


def _box_drops(st: AuditState, box: Box, index: torch.Tensor) -> torch.Tensor:
    """Drop of p(clean prediction) per image of `index` when `box` is removed."""
    x = st.images[index]
    height, width = x.shape[-2:]
    keep = box_keep([box], height, width, x.device).expand(x.shape[0], -1, -1)
    clean = plain_logits(st.model, x, mean=st.mean, std=st.std).softmax(1)
    masked = masked_logits(st.model, x, keep, st.strategy, mean=st.mean, std=st.std, seed=st.seed).softmax(1)
    t = st.pred[index].view(-1, 1)
    return (clean.gather(1, t) - masked.gather(1, t)).squeeze(1)


def counterfactual_evidence(
    st: AuditState,
    box: Box,
    *,
    artifact: tuple[torch.Tensor, torch.Tensor | None] | None,
    donors_index: torch.Tensor | None = None,
    classes: list[int] | None = None,
) -> dict[str, Any]:
    """Stamp test and removal test for `box`.

    Stamp: the artifact (or, without one, the box content of donor images of each candidate class:
    those whose prediction the box removal hurts most) is put on every image neither predicted nor
    labelled c; the flip rate is the share then predicted c. The suspected class is the one with the
    highest flip rate. Control: the same images with the box *removed* (engine strategy) instead.
    Removal: the suspected class's images lose p(c) when the box is removed, vs random boxes.
    """
    classes = list(range(st.num_classes)) if classes is None else classes
    n_images = st.images.shape[0]
    rates: dict[int, float] = {}
    if artifact is not None:
        stamped_pred = st.predict(stamp_artifact(st.images, box, *artifact))
        all_rates = flip_rates(st.pred, stamped_pred, st.labels, st.num_classes)
        rates = {c: r for c in classes if (r := all_rates[c]) is not None}
    else:
        pool = torch.arange(n_images, device=st.images.device) if donors_index is None else donors_index
        for c in classes:
            mine = pool[st.pred[pool] == c]
            if mine.numel() == 0:
                continue
            drops = _box_drops(st, box, mine)
            donors = mine[drops.argsort(descending=True)[: max(1, mine.numel() // 2)]]
            pasted = paste_from_donors(st.images, st.images[donors], box, st.seed + c)
            r = flip_rates(st.pred, st.predict(pasted), st.labels, st.num_classes)[c]
            if r is not None:
                rates[c] = r
    if not rates:
        return {
            "suspected_class": None,
            "flip_rate": 0.0,
            "confirmed_by_flip": False,
            "confirmed_by_removal": False,
        }
    suspected = max(rates, key=lambda c: rates[c])
    other = st.pred != suspected
    if st.labels is not None:
        other &= st.labels != suspected
    height, width = st.images.shape[-2:]
    keep = box_keep([box], height, width, st.images.device).expand(int(other.sum()), -1, -1)
    removed = masked_logits(
        st.model, st.images[other], keep, st.strategy, mean=st.mean, std=st.std, seed=st.seed
    )
    control = float((removed.argmax(1) == suspected).float().mean()) if bool(other.any()) else 0.0
    own = st.pred == suspected
    removal = removal_vs_random(
        st.model,
        st.images[own],
        suspected,
        box,
        mean=st.mean,
        std=st.std,
        strategy=st.strategy,
        n_random=st.n_random,
        seed=st.seed,
    )
    th = st.thresholds
    flip = rates[suspected]
    return {
        "suspected_class": st.class_names[suspected],
        "flip_rate": round(flip, 4),
        "flip_rates": {st.class_names[c]: round(r, 4) for c, r in rates.items()},
        "control_flip_rate": round(control, 4),
        "stamp": "artifact" if artifact is not None else "box content of the class's images",
        **removal,
        "confirmed_by_flip": flip >= th.flip and flip - control >= th.flip / 2,
        "confirmed_by_removal": removal["removal_effect"] - removal["random_box_effect_p90"]
        >= th.removal_margin,
    }
