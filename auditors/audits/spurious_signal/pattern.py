"""Whole-image pattern shortcuts: does a faint pattern that a class's images share decide it?

A blended noise pattern (Chen et al. 2017), a low-amplitude sinusoid (Barni et al. 2019), a
semi-transparent watermark, a scanner's fixed-pattern noise: each adds the *same* faint pattern to every
image that carries it, anywhere in the image, so no box and no whole-image statistic holds it. Content
does not add up that way: a class's objects sit at other places, scales and colours in every image, so
their fine detail averages out over the class while a shared pattern does not. Per class:

1. Data: the class's mean high-pass residual (the image minus its Gaussian blur, so smooth content and
   colour casts are left to the other tests) minus the pixelwise median of the other classes' means (one
   class with a pattern does not make the others look like its negative). Its norm is compared with the
   same statistic under label permutations (a z-score); classes at `MIN_Z` or beyond, strongest first,
   go on. The pattern is then re-estimated from the class's *carriers*: when the class's projections
   onto it fall into two groups well apart, the upper group, so a pattern on 30% of the class is taken
   at the strength it has in one image, not diluted by the rest.
2. Add: the pattern added to other classes' images, against the same pattern's pixels shuffled afresh
   per image (the same values and energy, no structure): a model that reacts to any faint noise moves as
   much under the null. The paired gain in p(class) gives a one-sided p-value.
3. Remove: the pattern subtracted from the carriers, against the shuffled pattern subtracted; judged,
   like a box's removal, by the share of carriers that stop being the class (a clean class's own fine
   detail, taken off, lowers its confidence a little but leaves its images in the class).

`severity.judge_class_tests` then applies the stamp rule and tells a shortcut from a sensitivity, as for
the other whole-image tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditors.audits.spurious_signal.findings import pattern_example_data
from auditors.audits.spurious_signal.nulls import Probe, other_images, whole_image_result
from auditors.audits.spurious_signal.severity import judge_class_tests
from auditors.engine.fills import gaussian_blur

SIGMA = 2.0  # the blur whose residual is "fine detail": it keeps periods below ~8 px at >= 80%
MIN_Z = 4.0  # standard deviations of the permutation null a class's pattern must reach to be tested
N_PERM = 30
MIN_CARRIERS = 3
SEPARATION = 3.0  # pooled standard deviations between carriers and the rest of their class


def residuals(images: torch.Tensor) -> torch.Tensor:
    """Each image minus its Gaussian blur: the detail a shared faint pattern lives in."""
    x = images.detach().float().cpu()
    return x - gaussian_blur(x, kernel=2 * int(3 * SIGMA) + 1, sigma=SIGMA)


MANY_CLASSES = 8  # beyond this, one class moves the median of all class means too little to matter


def _references(r: torch.Tensor, g: torch.Tensor, classes: list[int]) -> dict[int, torch.Tensor]:
    """Per class: the pixelwise median of the other classes' mean residuals (what the class's images
    would average to without a pattern of their own); with many classes, of all of them (one median
    instead of one per class, the same rule under permutation)."""
    means = {k: r[g == k].mean(0) for k in g.unique().tolist()}
    if len(means) > MANY_CLASSES:
        shared = torch.stack(list(means.values())).median(0).values
        return {c: shared for c in classes if c in means}
    return {
        c: torch.stack([m for k, m in means.items() if k != c]).median(0).values
        for c in classes
        if c in means and len(means) > 1
    }


def _class_patterns(r: torch.Tensor, g: torch.Tensor, classes: list[int]) -> dict[int, torch.Tensor]:
    """Per class: its mean residual minus its reference."""
    return {c: r[g == c].mean(0) - ref for c, ref in _references(r, g, classes).items()}


def _carrying(projection: torch.Tensor) -> torch.Tensor:
    """Which of a class's images carry its pattern, from their projections onto it: the upper group of
    the best two-group split (Otsu's threshold) when the groups stand `SEPARATION` pooled standard
    deviations apart, else all of them (a pattern on the whole class, or none)."""
    v, _ = projection.sort()
    n = v.numel()
    keep = torch.ones(n, dtype=torch.bool)
    if n < 2 * MIN_CARRIERS:
        return keep
    best, cut = -1.0, 0
    for k in range(MIN_CARRIERS, n - MIN_CARRIERS + 1):
        lo, hi = v[:k], v[k:]
        between = k * (n - k) * float(hi.mean() - lo.mean()) ** 2
        if between > best:
            best, cut = between, k
    lo, hi = v[:cut], v[cut:]
    pooled = float(torch.cat([lo - lo.mean(), hi - hi.mean()]).std())
    if float(hi.mean() - lo.mean()) < SEPARATION * max(pooled, 1e-12):
        return keep
    return projection >= float(v[cut])


def screen(
    images: torch.Tensor, groups: torch.Tensor, classes: list[int], *, max_tests: int, seed: int
) -> tuple[list[dict[str, Any]], dict[int, torch.Tensor]]:
    """Per class, the data evidence for a shared pattern (a z-score against label permutations); the
    strongest `max_tests` at MIN_Z or beyond, and their carrier-estimated patterns."""
    r = residuals(images)
    g = groups.detach().cpu()
    observed = _class_patterns(r, g, classes)
    gen = torch.Generator().manual_seed(seed)
    null: dict[int, list[float]] = {c: [] for c in observed}
    for _ in range(N_PERM):
        fake = g[torch.randperm(g.numel(), generator=gen)]
        for c, p in _class_patterns(r, fake, list(observed)).items():
            null[c].append(float(p.norm()))
    rows: list[dict[str, Any]] = []
    patterns: dict[int, torch.Tensor] = {}
    for c, p in observed.items():
        norms = np.asarray(null[c])
        z = (float(p.norm()) - float(norms.mean())) / max(float(norms.std()), 1e-9)
        if z < MIN_Z:
            continue
        own = (g == c).nonzero().flatten()
        ref = _references(r, g, [c])[c]
        unit = p / p.norm().clamp_min(1e-12)
        carriers = own[_carrying(((r[own] - ref) * unit).sum((1, 2, 3)))]
        patterns[c] = r[carriers].mean(0) - ref
        rows.append(
            {
                "class_index": c,
                "statistic": "pattern",
                "z": round(z, 3),
                "norm": round(float(patterns[c].norm()), 5),
                "carriers": int(carriers.numel()),
                "class_images": int(own.numel()),
                "_carriers": carriers,
            }
        )
    rows.sort(key=lambda row: -row["z"])
    return rows[:max_tests], patterns


def _shuffled(pattern: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """[count, 3, H, W]: the pattern's pixels (all channels together) in a fresh random order each."""
    c, h, w = pattern.shape
    flat = pattern.reshape(c, h * w)
    gen = torch.Generator().manual_seed(seed)
    out = torch.stack([flat[:, torch.randperm(h * w, generator=gen)] for _ in range(count)])
    return out.view(count, c, h, w)


def model_test(
    probe: Probe,
    images: torch.Tensor,
    groups: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    row: dict[str, Any],
    pattern: torch.Tensor,
    *,
    max_images: int,
    seed: int,
    class_names: list[str],
    min_flip: float,
) -> dict[str, Any]:
    """The add and remove counterfactuals of one screened class pattern, each against its shuffle;
    with example images when its flips exceed the null's by `min_flip` (it may be confirmed)."""
    c = int(row["class_index"])
    rec = other_images(groups, pred, labels, c, max_images)
    dev = images.device
    p = pattern.to(dev)
    x = images[rec.to(dev)]
    carriers = row["_carriers"][:max_images]
    y = images[carriers.to(dev)]
    out = whole_image_result(
        c,
        probe.probs((x + p).clamp(0, 1)),
        probe.probs((x + _shuffled(pattern, rec.numel(), seed).to(dev)).clamp(0, 1)),
        probe.probs(y),
        probe.probs((y - p).clamp(0, 1)),
        probe.probs((y - _shuffled(pattern, carriers.numel(), seed + 1).to(dev)).clamp(0, 1)),
        seed=seed,
        count_lost=True,  # like a box's removal (`severity`): the carriers the class loses
    )
    examples = None
    if out["flip"]["value"] - out["flip"]["null_mean"] >= min_flip:
        examples = pattern_example_data(
            probe, images, labels, pattern, carriers.tolist(), rec.tolist(), class_names
        )
    return {
        **{k: v for k, v in row.items() if not k.startswith("_")},
        **out,
        "pattern_abs_max": round(float(pattern.abs().max()), 5),
        "examples": examples,
    }


def pattern_tests(
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
) -> dict[str, Any]:
    """Screen the classes for a shared faint pattern, then test the strongest on the model."""
    rows, patterns = screen(images, groups, classes, max_tests=max_tests, seed=probe.seed)
    results = [
        model_test(
            probe,
            images,
            groups,
            pred,
            labels,
            row,
            patterns[int(row["class_index"])],
            max_images=max_images,
            seed=probe.seed + 11 * i,
            class_names=class_names,
            min_flip=min_flip,
        )
        for i, row in enumerate(rows)
    ]
    return {"screened": len(classes), "results": results}


def judge_patterns(
    results: list[dict[str, Any]], class_names: list[str], alpha: float, min_flip: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Holm over the class patterns tested, the stamp rule, then severity."""
    return judge_class_tests(results, class_names, alpha, min_flip, "class patterns")
