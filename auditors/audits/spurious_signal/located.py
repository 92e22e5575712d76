"""Marks no pixel statistic sees: where the model looks on a class's images, at one place.

A tag recoloured in every image, a sticker of any colour, a semi-transparent stamp over a busy
background: the content search needs one colour repeated at one place, the moving-mark search
repeated 3 x 3 patches, the pattern test one repeated faint pattern; none of them sees a mark whose
colours change. The model sees it, and its input gradients say where it looks. Per class:

1. Where (the model's gradients, no edit): each image's input-gradient map for its own class
   (`saliency_maps(..., "gradient")`), scaled to sum 1 so every image weighs alike; the class's mean map
   minus the pixelwise median of the other classes' means (`pattern.class_patterns`: where every class
   looks, at the image's centre or its borders, is no class's mark), smoothed over a window of a
   sixteenth of the side. Its peak is compared with the same peak under label permutations (a z-score).
   A class at `MIN_Z` or beyond gives the box of the connected pixels holding at least half the peak,
   kept when it covers at most a quarter of the image. That box is as coarse as the gradients (a
   network's gradient spreads a pixel or two around what it reads), so the tested and reported box is
   the tight box of the edges the class's images share in and around it (`tighten`).
2. What (the data): a mark keeps its shape where it sits whatever its colours, so each image's pixels
   in the box, standardised per channel (mean 0, unit spread: colour and contrast taken out), are
   averaged over the class, minus the median of the other classes' averages; the norm is compared with
   label permutations (`structure_z`), and a class goes on at `MIN_Z` or beyond. A class's own content
   at a place its crops share (the top of a photograph's crops is its top) looks different in every
   image and averages out; a mark does not (the validity bench's clean models: at most 2.4 where the
   gradients singled a corner out; fixed marks 6.9-34). Classes that pass both, strongest gradient
   first, are tested; the class's *carriers* are the upper group of the share of each image's map
   inside the box when its images split into two groups well apart (`pattern.carrying`), else all.
3. Add (a transplant, so nothing is synthesised): each recipient (an image of another class) receives
   the box's pixels of a random carrier, whatever colour the mark has there. Two nulls on the same
   recipients: the box's pixels of a random other-class image (other content at that place) and a
   carrier's pixels from a random other place of it (the class's content, not at that place). A model
   that learned the mark turns the recipients; one that reads the class's texture moves as much for the
   class's pixels from elsewhere.
4. Remove: the box taken off the carriers (the run's removal strategy) against a random box of its size
   elsewhere on each, judged like a box's removal by the carriers that stop being the class.

A box that holds other classes' own evidence (their predictions change more often with other content
put there than at a random place of its size, p < alpha: aligned objects, the centre of a shape task)
is where every class keeps its object, and a transplant there tests the object, not a mark: it is
reported (`holds_content`) and not judged. `severity.judge_class_tests` then applies the stamp rule
and tells a shortcut from a sensitivity, as for a class pattern kept to a box.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from auditors.audits.spurious_signal.findings import located_example_data
from auditors.audits.spurious_signal.nulls import Probe, other_images, random_boxes, whole_image_result
from auditors.audits.spurious_signal.pattern import LOCAL_AREA, PEAK_SHARE, carrying, class_patterns
from auditors.audits.spurious_signal.severity import ADVICE, judge_class_tests
from auditors.methods.saliency import saliency_maps
from auditors.stats import sign_flip_p_value

MIN_Z = 4.0  # the pattern screen's bar: standard deviations of the permutation null
N_PERM = 100  # label permutations behind the screen's null (its z moves by about 0.3 at z = 4)
LIKE = "other classes' pixels at that place, or the class's own pixels from elsewhere"

Box = tuple[int, int, int, int]


MAP_SIDE = 64  # gradient maps are kept at most about this many cells a side (see `gradient_maps`)
SCREENED = 8  # with many classes, the classes per test kept for the permutation null (see `screen`)


def window(height: int, width: int) -> int:
    """The odd smoothing window of the class maps: a sixteenth of the side, at least 3 cells."""
    return max(3, (min(height, width) // 16) | 1)


def cell(height: int, width: int) -> int:
    """Pixels per side of a map cell: 1 up to 127 px, then enough that the maps stay near `MAP_SIDE`
    cells a side. The smoothing window is a sixteenth of the side, so the coarser grid loses nothing it
    would keep, and 4,000 maps of a 224-px model take 60 MB instead of 800."""
    return max(1, min(height, width) // MAP_SIDE)


def gradient_maps(probe: Probe, images: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """[N, 1, H', W'] input-gradient maps for each image's own class, summed over `cell` x `cell`
    pixels, each summing to 1, on the CPU."""
    maps = saliency_maps(probe.model, images, "gradient", mean=probe.mean, std=probe.std, target=groups)
    k = cell(*images.shape[-2:])
    maps = (
        F.avg_pool2d(maps.detach().float().unsqueeze(1), k).cpu()
        if k > 1
        else maps.detach().float().cpu()[:, None]
    )
    return maps / maps.sum((2, 3), keepdim=True).clamp_min(1e-12)


def _smooth(excess: torch.Tensor, w: int) -> torch.Tensor:
    """[H, W] mean over a w x w window (edges averaged over the pixels inside)."""
    return F.avg_pool2d(excess[None], w, stride=1, padding=w // 2, count_include_pad=False)[0, 0]


def _peaks(maps: torch.Tensor, groups: torch.Tensor, classes: list[int], w: int) -> dict[int, torch.Tensor]:
    """Per class: its smoothed excess map (`class_patterns` of the gradient maps)."""
    return {c: _smooth(e, w) for c, e in class_patterns(maps, groups, classes).items()}


def peak_box(excess: torch.Tensor) -> Box | None:
    """The tight [x, y, w, h] box of the connected pixels holding at least `PEAK_SHARE` of the excess
    map's peak, around it; None when it covers more than `LOCAL_AREA` of the image."""
    peak = float(excess.max())
    if peak <= 0.0:
        return None
    parts, _ = ndimage.label((excess >= PEAK_SHARE * peak).numpy())
    y, x = np.unravel_index(int(excess.argmax()), excess.shape)
    ys, xs = np.nonzero(parts == parts[y, x])
    box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    return box if box[2] * box[3] <= LOCAL_AREA * excess.numel() else None


def _pixels(cells: Box, k: int, height: int, width: int) -> Box:
    """A box of `k` x `k` map cells in image pixels (clipped to the image)."""
    x, y, w, h = (v * k for v in cells)
    return (x, y, min(w, width - x), min(h, height - y))


def _permuted(
    values: torch.Tensor, groups: torch.Tensor, c: int, seed: int, statistic: Callable[[torch.Tensor], float]
) -> list[float]:
    """`statistic` of class `c`'s excess (`class_patterns`) of `values` under `N_PERM` label
    permutations: the null both data screens of a box (`tighten`, `structure_z`) are held to."""
    gen = torch.Generator().manual_seed(seed)
    return [
        statistic(class_patterns(values, groups[torch.randperm(groups.numel(), generator=gen)], [c])[c])
        for _ in range(N_PERM)
    ]


def _edges(images: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] each pixel's step to its right and lower neighbours (largest over the channels,
    summed): where an image has edges, whatever their colours."""
    x = images.detach().float().cpu()
    e = torch.zeros(x.shape[0], 1, *x.shape[-2:])
    e[:, 0, :, :-1] += (x[..., :, 1:] - x[..., :, :-1]).abs().amax(1)
    e[:, 0, :-1, :] += (x[..., 1:, :] - x[..., :-1, :]).abs().amax(1)
    return e


def tighten(images: torch.Tensor, groups: torch.Tensor, c: int, box: Box, grow: int, seed: int) -> Box:
    """The tight box of the edges class `c`'s images share in and around `box` (grown by `grow`
    pixels): the pixels whose class-mean edge strength, minus the other classes' median, exceeds the
    95% quantile of the largest such excess over the region under label permutations (family-wise
    5%). A mark's outline sits at the same pixels in every carrier whatever its colours, a class's
    content does not; `box` itself when no pixel passes. The gradients' box is a pixel or two wider
    than what the model reads; this one is the mark's."""
    x, y, w, h = box
    height, width = images.shape[-2:]
    x0, y0 = max(0, x - grow), max(0, y - grow)
    x1, y1 = min(width, x + w + grow), min(height, y + h + grow)
    e = _edges(images[:, :, y0:y1, x0:x1])
    g = groups.detach().cpu()
    excess = class_patterns(e, g, [c])[c][0]
    null = _permuted(e, g, c, seed, lambda p: float(p.max()))
    ys, xs = np.nonzero((excess > float(np.quantile(null, 0.95))).numpy())
    if xs.size == 0:
        return box
    return (
        x0 + int(xs.min()),
        y0 + int(ys.min()),
        int(xs.max() - xs.min() + 1),
        int(ys.max() - ys.min() + 1),
    )


def _standardised(images: torch.Tensor, box: Box) -> torch.Tensor:
    """[N, 3, h, w]: each image's pixels in `box`, per channel minus their mean over their spread (a
    floor of 1/255 keeps a flat patch flat instead of amplifying its rounding)."""
    x, y, w, h = box
    p = images[:, :, y : y + h, x : x + w].detach().float().cpu()
    p = p - p.mean((2, 3), keepdim=True)
    return p / p.pow(2).mean((2, 3), keepdim=True).sqrt().clamp_min(1 / 255)


def structure_z(images: torch.Tensor, groups: torch.Tensor, c: int, box: Box, seed: int) -> float:
    """How far class `c`'s images share one shape in `box`, whatever its colours: the norm of their
    mean standardised pixels there minus the other classes' median (`class_patterns`), in standard
    deviations of the same norm under label permutations."""
    d = _standardised(images, box)
    g = groups.detach().cpu()
    observed = float(class_patterns(d, g, [c])[c].norm())
    null = _permuted(d, g, c, seed, lambda p: float(p.norm()))
    return (observed - float(np.mean(null))) / max(float(np.std(null)), 1e-12)


def screen(
    images: torch.Tensor,
    maps: torch.Tensor,
    groups: torch.Tensor,
    classes: list[int],
    *,
    max_tests: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Per class, the gradient maps' evidence for one place (the peak's z against label permutations)
    and the data's for one shape there (`structure_z`); the strongest `max_tests` at MIN_Z or beyond on
    both whose box is local, with their carriers."""
    g = groups.detach().cpu()
    w = window(*maps.shape[-2:])
    k = cell(*images.shape[-2:])
    observed = _peaks(maps, g, classes, w)
    # With many classes only the highest peaks can be among the strongest `max_tests`; their nulls
    # alone are drawn (a thousand classes' would cost a thousand smoothings per permutation).
    kept = sorted(observed, key=lambda c: -float(observed[c].max()))[: SCREENED * max_tests]
    observed = {c: observed[c] for c in kept}
    gen = torch.Generator().manual_seed(seed)
    null: dict[int, list[float]] = {c: [] for c in observed}
    for _ in range(N_PERM):
        fake = g[torch.randperm(g.numel(), generator=gen)]
        for c, e in _peaks(maps, fake, list(observed), w).items():
            null[c].append(float(e.max()))
    rows: list[dict[str, Any]] = []
    for c, e in observed.items():
        z = (float(e.max()) - float(np.mean(null[c]))) / max(float(np.std(null[c])), 1e-12)
        cells = peak_box(e) if z >= MIN_Z else None
        if cells is None:
            continue
        x, y, bw, bh = cells
        box = _pixels(cells, k, *images.shape[-2:])
        shape_z = structure_z(images, g, c, box, seed + c)
        if shape_z < MIN_Z:
            continue
        own = (g == c).nonzero().flatten()
        share = maps[own, 0, y : y + bh, x : x + bw].sum((1, 2))
        carriers = own[carrying(share)]
        rows.append(
            {
                "class_index": c,
                "placement": "fixed",
                "box": list(tighten(images, g, c, box, w * k, seed + c)),
                "gradient_box": list(box),
                "z": round(z, 3),
                "structure_z": round(shape_z, 3),
                "carriers": int(carriers.numel()),
                "class_images": int(own.numel()),
                "_carriers": carriers,
            }
        )
    rows.sort(key=lambda row: -row["z"])
    return rows[:max_tests]


def _transplant(
    recipients: torch.Tensor, sources: torch.Tensor, box: Box, places: list[tuple[int, int]]
) -> torch.Tensor:
    """The recipients with the box filled by each source's pixels at its own place (x, y)."""
    x, y, w, h = box
    out = recipients.clone()
    for i, (sx, sy) in enumerate(places):
        out[i, :, y : y + h, x : x + w] = sources[i, :, sy : sy + h, sx : sx + w]
    return out


def model_test(
    probe: Probe,
    images: torch.Tensor,
    groups: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    row: dict[str, Any],
    *,
    max_images: int,
    seed: int,
    class_names: list[str],
    min_flip: float,
    alpha: float,
) -> dict[str, Any]:
    """The transplant and removal tests of one screened class box, each against its nulls (the
    module doc)."""
    c = int(row["class_index"])
    box: Box = (int(row["box"][0]), int(row["box"][1]), int(row["box"][2]), int(row["box"][3]))
    x, y, w, h = box
    height, width = images.shape[-2:]
    rec = other_images(groups, pred, labels, c, max_images)
    carriers = row["_carriers"][:max_images]
    others = (groups.cpu() != c).nonzero().flatten()
    gen = torch.Generator().manual_seed(seed)
    n = int(rec.numel())
    dev = images.device
    donors = images[carriers[torch.randint(carriers.numel(), (n,), generator=gen)].to(dev)]
    strangers = images[others[torch.randint(others.numel(), (n,), generator=gen)].to(dev)]
    xs = torch.randint(0, width - w + 1, (n,), generator=gen).tolist()
    ys = torch.randint(0, height - h + 1, (n,), generator=gen).tolist()
    here = [(x, y)] * n
    target = images[rec.to(dev)]
    before = probe.probs(target)
    moved = probe.probs(_transplant(target, donors, box, here))
    other_content = probe.probs(_transplant(target, strangers, box, here))
    elsewhere = probe.probs(_transplant(target, donors, box, list(zip(xs, ys, strict=True))))
    # The same other-class pixels at a random place of the box's size: what any place holds for them.
    spots = random_boxes(box, height, width, n, seed + 1)
    anywhere = before
    if n and len(spots) == n:
        anywhere = probe.probs(
            torch.cat(
                [
                    _transplant(target[i : i + 1], strangers[i : i + 1], b, [b[:2]])
                    for i, b in enumerate(spots)
                ]
            )
        )
    mine = images[carriers.to(dev)]
    keep = torch.ones(int(carriers.numel()), height, width, dtype=torch.bool, device=dev)
    null_keep = keep.clone()
    keep[:, y : y + h, x : x + w] = False
    for i, (rx, ry, _, _) in enumerate(random_boxes(box, height, width, int(carriers.numel()), seed)):
        null_keep[i, ry : ry + h, rx : rx + w] = False
    own, removed, null_removed = (
        probe.probs(mine),
        probe.removed_probs(mine, keep),
        probe.removed_probs(mine, null_keep),
    )
    tested = {
        name: whole_image_result(c, moved, null, own, removed, null_removed, seed=seed, count_lost=True)
        for name, null in (("other_content", other_content), ("elsewhere", elsewhere))
    }
    # The null that moved the recipients more is the one the stamp rule is held to; p is the larger.
    out = max(tested.values(), key=lambda t: t["flip"]["null_mean"])
    p = max(t["p_value"] for t in tested.values())
    changed = (other_content.argmax(1) != before.argmax(1)).cpu().numpy().astype(np.float64)
    changed_anywhere = (anywhere.argmax(1) != before.argmax(1)).cpu().numpy().astype(np.float64)
    holds_p = sign_flip_p_value(changed - changed_anywhere, seed=seed) if n else 1.0
    result = {
        **{k: v for k, v in row.items() if not k.startswith("_")},
        **out,
        "flip": out["flip"] | {"p_value": p},
        "p_value": p,
        "nulls": {k: {"flip": t["flip"]["null_mean"], "p_value": t["p_value"]} for k, t in tested.items()},
        "holds_content": {
            "changed": round(float(changed.mean()) if n else 0.0, 4),
            "changed_at_random_places": round(float(changed_anywhere.mean()) if n else 0.0, 4),
            "p_value": holds_p,
        },
        "like": LIKE,
    }
    if holds_p >= alpha and out["flip"]["value"] - out["flip"]["null_mean"] >= min_flip:
        result["examples"] = located_example_data(
            probe, images, labels, box, carriers.tolist(), rec.tolist(), class_names, seed=seed
        )
    return result


def located_tests(
    probe: Probe,
    images: torch.Tensor,
    groups: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    classes: list[int],
    *,
    max_tests: int,
    max_images: int,
    class_names: list[str],
    min_flip: float,
    alpha: float,
) -> dict[str, Any]:
    """Screen the classes' gradient maps for one place, then test the strongest boxes on the model."""
    maps = gradient_maps(probe, images, groups)
    rows = screen(images, maps, groups, classes, max_tests=max_tests, seed=probe.seed)
    results = [
        model_test(
            probe,
            images,
            groups,
            pred,
            labels,
            row,
            max_images=max_images,
            seed=probe.seed + 13 * i,
            class_names=class_names,
            min_flip=min_flip,
            alpha=alpha,
        )
        for i, row in enumerate(rows)
    ]
    return {"screened": len(classes), "results": results}


def judge_located(
    results: list[dict[str, Any]], class_names: list[str], alpha: float, min_flip: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Holm over the boxes that hold no other class's own evidence, the stamp rule, then severity; a
    box that holds it is reported with `severity: none` and why (the module doc)."""
    judged = [r for r in results if r["holds_content"]["p_value"] >= alpha]
    for r in results:
        held = r["holds_content"]
        if held["p_value"] < alpha:
            r["class"] = class_names[r["class_index"]]
            r["confirmed"] = r["stamp_confirmed"] = False
            r["severity"], r["advice"] = "none", ADVICE["none"]
            r["why"] = (
                f"other classes' own pixels put in the box change {held['changed']:.0%} of their "
                f"predictions, against {held['changed_at_random_places']:.0%} at random places of its size "
                f"(p = {held['p_value']:.3g}): it holds the objects, not a mark"
            )
            r.pop("examples", None)
    _, shortcuts = judge_class_tests(judged, class_names, alpha, min_flip, "located marks")
    return results, shortcuts
