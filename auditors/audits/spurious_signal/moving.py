"""The counterfactual tests of a mark that moves (`motif`), with the fixed mark's nulls (`nulls`).

Stamp: the mark is put on other classes' images at places the class's own images carry it (one drawn
per image), against the same pixels copied from another class's image and a solid patch of a random
colour in the mark's shape, at those places. Removal: the mark is taken off the class's images that
carry it, each at its own place, against random boxes of its size in the same image. The draws are keyed
by the candidate's index, so every shard that runs a test gets the same numbers.
"""

from __future__ import annotations

from typing import Any

import torch

from auditors.audits.spurious_signal.discover import DiscoverySettings, could_confirm, recipients
from auditors.audits.spurious_signal.findings import moving_example_data
from auditors.audits.spurious_signal.motif import Motif, heat_map
from auditors.audits.spurious_signal.nulls import Probe, matched_test, removal_test, stamp_test

SALT = 7919  # keeps a moving mark's draws apart from the fixed candidate of the same index


def motif_stamp(
    probe: Probe,
    images: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    m: Motif,
    j: int,
    cfg: DiscoverySettings,
) -> dict[str, Any]:
    """The stamp test of moving mark `j`: recipients get the mark at a place drawn from its carriers'."""
    seed = probe.seed + SALT + j
    rec = recipients(pred, labels, m.class_index, cfg.max_recipients, seed)
    donors = images[recipients(pred, labels, m.class_index, images.shape[0], seed + 101)]
    gen = torch.Generator().manual_seed(seed)
    all_boxes = m.boxes()
    boxes = [all_boxes[int(i)] for i in torch.randint(0, len(all_boxes), (rec.numel(),), generator=gen)]
    t = stamp_test(probe, images[rec], donors, m.class_index, boxes, m.rgb, m.alpha, seed=seed)
    return t | {"recipients": rec, "boxes": boxes, "donors": donors}


def motif_matched(probe: Probe, images: torch.Tensor, m: Motif, t: dict[str, Any], j: int) -> dict[str, Any]:
    """Motif `j`'s stamp (`t`, from `motif_stamp`) against a similar mark at the same places
    (`nulls.matched_test`), as `discover.candidate_matched` does for a fixed mark."""
    rec = images[t["recipients"]]
    return matched_test(
        probe,
        rec,
        t["donors"],
        m.class_index,
        t["boxes"],
        m.rgb,
        m.alpha,
        t["stamped_probs"],
        seed=probe.seed + SALT + j,
    )


def motif_removal(probe: Probe, images: torch.Tensor, m: Motif, cfg: DiscoverySettings) -> dict[str, Any]:
    """The removal test of a moving mark on the class's images that carry it, each over its own span
    (every place the mark's code occurs there: the whole of a ruler, not one stretch of it)."""
    idx = m.carriers.nonzero().flatten()
    return removal_test(
        probe,
        images[idx.to(images.device)],
        m.class_index,
        m.spans or m.boxes(),
        n_random=cfg.n_random_boxes,
        seed=probe.seed + SALT,
    )


def motif_summary(m: Motif, counts: torch.Tensor, height: int, width: int) -> dict[str, Any]:
    """What the report says about a moving mark (JSON: it travels in a shard's partial): its zone as the
    box, its size, where it sits (a heat map over an 8 x 8 grid) and how many images carry it."""
    w, h = m.size
    return {
        "class_index": m.class_index,
        "box": list(m.zone),
        "placement": "moving",
        "mark_size": [w, h],
        "positions_heat_map": heat_map(m, height, width),
        "content": {
            "share_with_mark": m.share,
            "others_share": m.others_share,
            "n_carriers": int(m.carriers.sum()),
            "n_class": int(counts[m.class_index]),
            "null_threshold": m.threshold,
        },
    }


def motif_test(
    probe: Probe,
    images: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    m: Motif,
    j: int,
    cfg: DiscoverySettings,
    class_names: list[str],
) -> dict[str, Any]:
    """Stamp, then (when it could be confirmed) removal and example images, as one shard test."""
    t = motif_stamp(probe, images, pred, labels, m, j, cfg)
    out = {k: t[k] for k in ("flip", "null_flip", "gain", "n", "p_value")}
    if could_confirm(t, cfg):
        out["matched"] = motif_matched(probe, images, m, t, j)
        out["removal"] = motif_removal(probe, images, m, cfg)
        out["examples"] = moving_example_data(probe, images, labels, m, t, class_names)
    return out
