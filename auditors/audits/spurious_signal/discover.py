"""Discovery without a hint: which class is decided by a fixed mark, where, and how sure is that?

1. Content (`content.find_signatures`): per class, the pixels whose colour repeats on the class's
   images far more than on the others, judged against a label-permutation null; their components are
   the candidates, each with a tight box and the mark's own pattern.
2. Stamp (`nulls.stamp_test`): the pattern is stamped on images of the other classes and paired with
   the same pixels copied from a random other-class image; the paired gain in p(class) gives a one-sided
   p-value, corrected over all candidates (Holm). The flip rate with its Wilson interval is the effect.
3. A candidate is confirmed when its corrected p < `alpha` and it flips at least `min_flip` of the other
   images; then the removal test (`nulls.removal_test`) measures what the class loses without it.
4. Overlapping candidates of one class are merged before testing (`merge`), so one mark is one finding.
5. Global (`global_shift`): each class's colour cast moved onto the other classes, Holm over classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from auditors.audits.spurious_signal.content import Signature, box_signature, find_signatures
from auditors.audits.spurious_signal.counterfactual import carries_artifact
from auditors.audits.spurious_signal.global_shift import colour_shift_test
from auditors.audits.spurious_signal.merge import merge_groups, union
from auditors.audits.spurious_signal.nulls import Probe, removal_test, stamp_test
from auditors.sampling import stratified_indices
from auditors.stats import holm

OUT_OF_SCOPE = (
    "texture or frequency statistics spread over the whole image (only a class's colour cast is "
    "tested globally)",
    "marks whose colour changes from image to image (semi-transparent or recoloured watermarks): the "
    "content test looks for one repeated colour per pixel",
    "a mark that moves from image to image",
)


@dataclass(frozen=True)
class DiscoverySettings:
    alpha: float = 0.05  # family-wise error level of the content null and of the corrected tests
    min_flip: float = 0.1  # the smallest excess of flips over the null a reported shortcut must cause
    min_group: int = 8  # classes with fewer images are not tested (reported as such)
    n_perm: int = 50  # label permutations behind the content null (its 95% quantile)
    max_recipients: int = 128
    max_candidates: int = 8
    n_random_boxes: int = 8
    global_test: bool = True


@dataclass
class Discovery:
    candidates: list[dict[str, Any]]
    confirmed: list[dict[str, Any]]
    global_candidates: list[dict[str, Any]]
    global_confirmed: list[dict[str, Any]]
    content_null: dict[str, float]
    untested_classes: list[str] = field(default_factory=list)


def merge_signatures(sigs: list[Signature], gap: int) -> list[Signature]:
    """One signature per group of a class's boxes that lie within `gap` pixels of each other (a mark
    of scattered pixels, a glyph's letters): the union box, patterns overlaid."""
    groups = merge_groups([(s.class_index, s.box) for s in sigs], gap)
    out = []
    for g in groups:
        if len(g) == 1:
            out.append(sigs[g[0]])
            continue
        box = sigs[g[0]].box
        for i in g[1:]:
            box = union(box, sigs[i].box)
        x, y, w, h = box
        rgb, alpha = torch.zeros(3, h, w), torch.zeros(h, w, dtype=torch.bool)
        carriers = torch.zeros_like(sigs[g[0]].carriers)
        for i in g:
            s = sigs[i]
            sx, sy, sw, sh = s.box
            sl = (slice(sy - y, sy - y + sh), slice(sx - x, sx - x + sw))
            rgb[:, sl[0], sl[1]] = torch.where(s.alpha, s.rgb, rgb[:, sl[0], sl[1]])
            alpha[sl] |= s.alpha
            carriers |= s.carriers
        n_pix = sum(sigs[i].n_pixels for i in g)
        strength = sum(sigs[i].strength * sigs[i].n_pixels for i in g) / n_pix
        out.append(
            Signature(
                sigs[g[0]].class_index,
                box,
                rgb,
                alpha,
                round(strength, 4),
                n_pix,
                carriers,
                sigs[g[0]].threshold,
            )
        )
    return out


def _recipients(pred: torch.Tensor, labels: torch.Tensor | None, c: int, n: int, seed: int) -> torch.Tensor:
    other = pred != c
    if labels is not None:
        other &= labels != c
    idx = other.nonzero().flatten().cpu()
    pick = stratified_indices(pred.cpu()[idx].numpy(), n, seed=seed, salt=c)
    return idx[torch.from_numpy(pick)]


def discover(
    probe: Probe,
    images: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    class_names: list[str],
    settings: DiscoverySettings | None = None,
) -> Discovery:
    """Run content, stamp, correction, removal and global tests on `images` [N,3,H,W] in [0,1]."""
    cfg = settings or DiscoverySettings()
    k = len(class_names)
    seed = probe.seed
    # A mark belongs to the images of a class: group by label where there are labels (a weak model's
    # predictions scatter the carriers), by prediction otherwise.
    groups = labels if labels is not None else pred
    counts = torch.bincount(groups.cpu(), minlength=k)
    untested = [class_names[c] for c in range(k) if int(counts[c]) < cfg.min_group]
    sigs, content_null = find_signatures(
        images, groups, k, min_group=cfg.min_group, alpha=cfg.alpha, n_perm=cfg.n_perm, seed=seed
    )
    # Parts of one mark closer than an eighth of the image are one mark (5 fixed pixels in a 6-px box).
    sigs = merge_signatures(sigs, gap=max(2, min(images.shape[-2:]) // 8))[: cfg.max_candidates]
    tests = []
    for j, s in enumerate(sigs):
        rec = _recipients(pred, labels, s.class_index, cfg.max_recipients, seed + j)
        donors = images[_recipients(pred, labels, s.class_index, images.shape[0], seed + 101 + j)]
        tests.append(
            stamp_test(probe, images[rec], donors, s.class_index, s.box, s.rgb, s.alpha, seed=seed + j)
            | {"recipients": rec}
        )
    adjusted = holm([t["p_value"] for t in tests])
    candidates, confirmed = [], []
    for s, t, p_adj in zip(sigs, tests, adjusted, strict=True):
        flip = t["flip"] | {"p_value": round(p_adj, 6), "p_raw": round(t["p_value"], 6)}
        cand: dict[str, Any] = {
            "class": class_names[s.class_index],
            "class_index": s.class_index,
            "box": list(s.box),
            "content": {
                "strength": s.strength,
                "n_pixels": s.n_pixels,
                "n_carriers": int(s.carriers.sum()),
                "n_class": int(counts[s.class_index]),
                "null_threshold": round(s.threshold, 4),
            },
            "flip": flip,
            "null_flip": t["null_flip"],
            "gain": t["gain"],
            "n": t["n"],
            "correction": f"holm over {len(sigs)} candidates",
            "n_candidates": len(sigs),
        }
        cand["excess_flip"] = round(flip["value"] - t["null_flip"]["value"], 4)
        cand["confirmed"] = bool(p_adj < cfg.alpha and cand["excess_flip"] >= cfg.min_flip)
        candidates.append(cand)
        if cand["confirmed"]:
            carriers = s.carriers.to(images.device) & (groups == s.class_index)
            cand["removal"] = removal_test(
                probe, images[carriers], s.class_index, s.box, n_random=cfg.n_random_boxes, seed=seed
            )
            cand["_signature"] = s
            cand["_stamp"] = t
            confirmed.append(cand)
    g_cands, g_conf = (
        _global(probe, images, groups, pred, labels, class_names, counts, cfg)
        if cfg.global_test
        else ([], [])
    )
    return Discovery(candidates, confirmed, g_cands, g_conf, content_null, untested)


def _global(
    probe: Probe,
    images: torch.Tensor,
    groups: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    class_names: list[str],
    counts: torch.Tensor,
    cfg: DiscoverySettings,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tested = [c for c in range(len(class_names)) if int(counts[c]) >= cfg.min_group]
    results = [
        colour_shift_test(
            probe, images, groups, pred, labels, c, max_images=cfg.max_recipients, seed=probe.seed + c
        )
        for c in tested
    ]
    adjusted = holm([r["p_value"] for r in results])
    confirmed = []
    for r, p_adj in zip(results, adjusted, strict=True):
        r["class"] = class_names[r["class_index"]]
        r["flip"] = r["flip"] | {"p_value": round(p_adj, 6), "p_raw": round(r["p_value"], 6)}
        r["correction"] = f"holm over {len(results)} classes"
        r["excess_flip"] = round(r["flip"]["value"] - r["flip"]["null_mean"], 4)
        r["confirmed"] = bool(p_adj < cfg.alpha and r["excess_flip"] >= cfg.min_flip)
        if r["confirmed"]:
            confirmed.append(r)
    return results, confirmed


def region_test(
    probe: Probe,
    images: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    class_names: list[str],
    box: tuple[int, int, int, int],
    artifact: tuple[torch.Tensor, torch.Tensor | None] | None,
    settings: DiscoverySettings | None = None,
) -> dict[str, Any]:
    """A hinted region, judged like a discovered one: for every class with enough images, the stamp
    test (the artifact, or the class's own most common content in the box) against its null, Holm over
    the classes; the suspected class is the one with the largest excess flip. Confirmed when its stamp
    passes discovery's rule and the removal test beats random boxes (the audit also accepts saliency
    flagging the box as the second line)."""
    cfg = settings or DiscoverySettings()
    k, seed = len(class_names), probe.seed
    groups = labels if labels is not None else pred
    counts = torch.bincount(groups.cpu(), minlength=k)
    tested = [c for c in range(k) if int(counts[c]) >= cfg.min_group]
    _, _, w, h = box
    results = []
    for c in tested:
        if artifact is not None:
            rgb, alpha = (
                artifact[0],
                artifact[1] if artifact[1] is not None else torch.ones(h, w, dtype=torch.bool),
            )
            carriers = carries_artifact(images, box, rgb, alpha).cpu()
        else:
            s = box_signature(images, groups, k, c, box)
            rgb, alpha, carriers = s.rgb, s.alpha, s.carriers
        rec = _recipients(pred, labels, c, cfg.max_recipients, seed + c)
        donors = images[_recipients(pred, labels, c, images.shape[0], seed + 101 + c)]
        t = stamp_test(probe, images[rec], donors, c, box, rgb, alpha, seed=seed + c)
        results.append((c, t, rgb, alpha, carriers))
    if not results:
        return {"box": list(box), "confirmed": False, "skipped": f"no class has {cfg.min_group} images"}
    adjusted = holm([t["p_value"] for _, t, *_ in results])
    best = max(
        range(len(results)),
        key=lambda i: results[i][1]["flip"]["value"] - results[i][1]["null_flip"]["value"],
    )
    c, t, rgb, alpha, carriers = results[best]
    flip = t["flip"] | {"p_value": round(adjusted[best], 6), "p_raw": round(t["p_value"], 6)}
    excess = round(flip["value"] - t["null_flip"]["value"], 4)
    out: dict[str, Any] = {
        "class": class_names[c],
        "class_index": c,
        "box": list(box),
        "stamp": "artifact" if artifact is not None else "the class's most common content in the box",
        "flip": flip,
        "null_flip": t["null_flip"],
        "gain": t["gain"],
        "n": t["n"],
        "flip_by_class": {class_names[cc]: round(tt["flip"]["value"], 4) for cc, tt, *_ in results},
        "correction": f"holm over {len(results)} classes",
        "n_candidates": len(results),
        "excess_flip": excess,
        "content": {"n_carriers": int(carriers.sum()), "n_class": int(counts[c])},
        "stamp_confirmed": bool(adjusted[best] < cfg.alpha and excess >= cfg.min_flip),
    }
    # A stamp alone can move a clean model (an unusual patch is out of distribution): a hinted region is
    # confirmed only when removing it also costs the class more than random boxes, on the class's
    # images that carry it (all of the class's images when none does).
    own = groups == c
    carried = own & carriers.to(own.device)
    removed_on = carried if bool(carried.any()) else own
    out["removal"] = removal_test(probe, images[removed_on], c, box, n_random=cfg.n_random_boxes, seed=seed)
    rem = out["removal"].get("removal") or {}
    out["removal_confirmed"] = bool(
        rem.get("p_value", 1.0) < cfg.alpha and out["removal"]["effect"] > out["removal"]["random_effect"]
    )
    out["confirmed"] = out["stamp_confirmed"] and out["removal_confirmed"]
    out["_signature"] = Signature(c, box, rgb, alpha, 0.0, int(alpha.sum()), removed_on.cpu(), float("nan"))
    out["_stamp"] = t | {"recipients": _recipients(pred, labels, c, cfg.max_recipients, seed + c)}
    return out
