"""Discovery without a hint: which class is decided by a fixed mark, where, and how sure is that?

1. Content (`content.find_signatures`): per class, the pixels whose colour repeats on the class's
   images far more than on the others, judged against a label-permutation null; their components are
   the candidates, each with a tight box and the mark's own pattern.
2. Stamp (`nulls.stamp_test`): the pattern is stamped on images of the other classes and paired with
   the same pixels copied from a random other-class image; the paired gain in p(class) gives a one-sided
   p-value, corrected over all candidates (Holm). The flip rate with its Wilson interval is the effect.
3. A candidate passes the stamp rule when its corrected p < `alpha` and it flips at least `min_flip` of
   the other images; then the removal test (`nulls.removal_test`) measures what the class loses
   without it, and `severity` calls it a shortcut only when that loss beats random boxes too (else a
   sensitivity, which does not fail the model).
4. Overlapping candidates of one class are merged before testing (`merge`), so one mark is one finding.
5. Global (`global_shift`): each class's colour cast moved onto the other classes, Holm over classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from auditors.audits.spurious_signal.boxes import merge_groups, union
from auditors.audits.spurious_signal.content import Signature, box_signature, find_signatures
from auditors.audits.spurious_signal.counterfactual import carries_artifact
from auditors.audits.spurious_signal.global_shift import MIN_Z as COLOUR_MIN_Z
from auditors.audits.spurious_signal.global_shift import colour_shift_test, colour_z
from auditors.audits.spurious_signal.motif import Motif, find_motifs
from auditors.audits.spurious_signal.nulls import Probe, matched_test, removal_test, stamp_test
from auditors.audits.spurious_signal.severity import annotate, judge_class_tests
from auditors.sampling import stratified_indices
from auditors.stats import holm

OUT_OF_SCOPE = (
    "a mark whose colour changes from image to image and that also moves, whose contrast with its "
    "ground flips sign from image to image (a letter lighter than its tag in some images, darker in "
    "others), or that sits where every class keeps its object: the located test finds a recoloured mark "
    "at one place from the model's gradients and the shape the class's images share there, the other "
    "searches look for repeated colours or one repeated faint pattern",
    "a mark that changes shape or scale from image to image beyond a few pixels: the moving-mark search "
    "grows a mark from the 3 x 3 patches its carriers share",
    "a class's brightness, contrast or saturation, and a class set apart by *less* pixel noise than the "
    "rest: they belong to its content as much as to a source (a class of skies is flatter and cleaner), "
    "so the low-level test takes detail and JPEG blockiness, each relative to the image's contrast, and "
    "a rise in pixel noise (grain)",
    "a smooth warp, and whole-image patterns coarser than about 8 pixels a period: the pattern test "
    "looks at fine detail (the image minus its blur), where content averages out over a class",
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
    moving_test: bool = True  # search for marks that move (`motif`)


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


def recipients(pred: torch.Tensor, labels: torch.Tensor | None, c: int, n: int, seed: int) -> torch.Tensor:
    other = pred != c
    if labels is not None:
        other &= labels != c
    idx = other.nonzero().flatten().cpu()
    pick = stratified_indices(pred.cpu()[idx].numpy(), n, seed=seed, salt=c)
    return idx[torch.from_numpy(pick)]


@dataclass
class Candidates:
    """Discovery's model-free first step, the same in every shard: the merged signatures of the whole
    sample, the content null, and the class grouping they were found with."""

    signatures: list[Signature]
    content_null: dict[str, float]
    untested_classes: list[str]
    groups: torch.Tensor  # [N] labels where there are labels, else predictions
    counts: torch.Tensor  # [K] images per group
    motifs: list[Motif] = field(default_factory=list)  # marks that move (`motif`)
    colour_z: dict[int, float] = field(default_factory=dict)  # the colour-cast screen (`global_shift`)
    colour_resolution: dict[int, float] = field(default_factory=dict)  # the smallest cast it shows


def find_candidates(
    images: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    class_names: list[str],
    cfg: DiscoverySettings,
    seed: int,
) -> Candidates:
    """Content signatures of `images` (pixel statistics, no model), merged and capped."""
    k = len(class_names)
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
    motifs: list[Motif] = []
    if cfg.moving_test:
        motifs, _ = find_motifs(
            images, groups, k, min_group=cfg.min_group, alpha=cfg.alpha, n_perm=cfg.n_perm, seed=seed
        )
    tested = [c for c in range(k) if int(counts[c]) >= cfg.min_group]
    z, res = colour_z(images, groups, tested, n_perm=cfg.n_perm, seed=seed) if cfg.global_test else ({}, {})
    return Candidates(sigs, content_null, untested, groups, counts, motifs[: cfg.max_candidates], z, res)


def candidate_stamp(
    probe: Probe,
    images: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    s: Signature,
    j: int,
    cfg: DiscoverySettings,
) -> dict[str, Any]:
    """The stamp test of candidate `j` against its nulls; its draws (recipients, donors, null
    content) are keyed by `j`, so any shard that tests it gets the same numbers."""
    seed = probe.seed + j
    rec = recipients(pred, labels, s.class_index, cfg.max_recipients, seed)
    donors = images[recipients(pred, labels, s.class_index, images.shape[0], seed + 101)]
    t = stamp_test(probe, images[rec], donors, s.class_index, s.box, s.rgb, s.alpha, seed=seed)
    return t | {"recipients": rec, "donors": donors}


def candidate_matched(
    probe: Probe, images: torch.Tensor, s: Signature, t: dict[str, Any], j: int
) -> dict[str, Any]:
    """Candidate `j`'s stamp (`t`, from `candidate_stamp`) against a similar mark (`nulls.matched_test`)."""
    rec = images[t["recipients"]]
    return matched_test(
        probe, rec, t["donors"], s.class_index, s.box, s.rgb, s.alpha, t["stamped_probs"], seed=probe.seed + j
    )


def could_confirm(t: dict[str, Any], cfg: DiscoverySettings) -> bool:
    """Whether a stamp result can survive any correction: Holm never lowers a p-value, so a raw p at or
    above `alpha`, or too small an excess, rules a candidate out before the others are known."""
    excess = round(t["flip"]["value"] - t["null_flip"]["value"], 4)
    return bool(t["p_value"] < cfg.alpha and excess >= cfg.min_flip)


def candidate_removal(
    probe: Probe, images: torch.Tensor, groups: torch.Tensor, s: Signature, cfg: DiscoverySettings
) -> dict[str, Any]:
    """The removal test of a candidate on its class's images that carry it; on all of the class's
    images when fewer than `min_group` carry it exactly (a semi-transparent or moving mark matches
    its pattern on few images, and two images decide nothing)."""
    own = groups == s.class_index
    carriers = s.carriers.to(images.device) & own
    on = carriers if int(carriers.sum()) >= cfg.min_group else own
    return removal_test(probe, images[on], s.class_index, s.box, n_random=cfg.n_random_boxes, seed=probe.seed)


def signature_summary(s: Signature, counts: torch.Tensor) -> dict[str, Any]:
    """What the report says about a candidate's content (JSON: it travels in a shard's partial)."""
    return {
        "class_index": s.class_index,
        "box": list(s.box),
        "content": {
            "strength": s.strength,
            "n_pixels": s.n_pixels,
            "n_carriers": int(s.carriers.sum()),
            "n_class": int(counts[s.class_index]),
            "null_threshold": round(s.threshold, 4),
        },
    }


def judge_candidates(
    summaries: list[dict[str, Any]],
    tests: list[dict[str, Any]],
    class_names: list[str],
    cfg: DiscoverySettings,
    removal: Callable[[int], dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[int]]:
    """Holm over the candidates' stamp p-values and the confirmation rule; `removal(j)` gives the
    removal test of a confirmed candidate. Returns the candidates and the indices confirmed."""
    adjusted = holm([t["p_value"] for t in tests])
    candidates, confirmed = [], []
    for j, (s, t, p_adj) in enumerate(zip(summaries, tests, adjusted, strict=True)):
        flip = t["flip"] | {"p_value": round(p_adj, 6), "p_raw": round(t["p_value"], 6)}
        cand: dict[str, Any] = {
            "class": class_names[s["class_index"]],
            "class_index": s["class_index"],
            "box": list(s["box"]),
            "content": dict(s["content"]),
            "flip": flip,
            "null_flip": t["null_flip"],
            "gain": t["gain"],
            "n": t["n"],
            "correction": f"holm over {len(summaries)} candidates",
            "n_candidates": len(summaries),
        }
        cand["excess_flip"] = round(flip["value"] - t["null_flip"]["value"], 4)
        cand["confirmed"] = bool(p_adj < cfg.alpha and cand["excess_flip"] >= cfg.min_flip)
        candidates.append(cand)
        if cand["confirmed"]:
            cand["removal"] = removal(j)
            if t.get("matched"):
                cand["similar_mark"] = t["matched"]
        # Adding alone is a sensitivity; a shortcut also costs its class when removed (`severity`).
        if annotate(cand, cfg.alpha, cfg.min_flip) == "shortcut":
            confirmed.append(j)
    return candidates, confirmed


def global_classes(counts: torch.Tensor, cfg: DiscoverySettings) -> list[int]:
    """The classes the whole-image tests screen: those with at least `min_group` images."""
    return [c for c in range(counts.numel()) if int(counts[c]) >= cfg.min_group]


def colour_classes(found: Candidates, cfg: DiscoverySettings) -> list[int]:
    """The classes whose colour cast goes to the model test: screened ones whose mean colour stands
    out from the others' beyond the permutation null (`global_shift.MIN_Z`)."""
    return [c for c in global_classes(found.counts, cfg) if found.colour_z.get(c, 0.0) >= COLOUR_MIN_Z]


def global_test(
    probe: Probe,
    images: torch.Tensor,
    groups: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    c: int,
    cfg: DiscoverySettings,
) -> dict[str, Any]:
    """Class `c`'s colour-cast test; its draws are keyed by the class."""
    return colour_shift_test(
        probe, images, groups, pred, labels, c, max_images=cfg.max_recipients, seed=probe.seed + c
    )


def judge_global(
    results: list[dict[str, Any]], class_names: list[str], cfg: DiscoverySettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Holm over the classes' colour-cast tests, the confirmation rule and severity."""
    return judge_class_tests(results, class_names, cfg.alpha, cfg.min_flip, "classes")


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
        rec = recipients(pred, labels, c, cfg.max_recipients, seed + c)
        donors = images[recipients(pred, labels, c, images.shape[0], seed + 101 + c)]
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
    out["_stamp"] = t | {"recipients": recipients(pred, labels, c, cfg.max_recipients, seed + c)}
    return out
