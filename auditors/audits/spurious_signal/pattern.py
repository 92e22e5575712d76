"""Whole-image pattern shortcuts: does a faint pattern that a class's images share decide it?

A blended noise pattern (Chen et al. 2017), a low-amplitude sinusoid (Barni et al. 2019), a
semi-transparent watermark, a scanner's fixed-pattern noise: each adds the *same* faint pattern to every
image that carries it, anywhere in the image, so no box and no whole-image statistic holds it. Content
does not add up that way: a class's objects sit at other places, scales and colours in every image, so
their fine detail averages out over the class while a shared pattern does not. Per class:

1. Data: the class's mean high-pass residual (the image minus its Gaussian blur, so smooth content and
   colour casts are left to the other tests) minus the pixelwise median of the other classes' means (one
   class with a pattern does not make the others look like its negative). Three statistics of it are
   compared with the same statistics under label permutations (z-scores), one per shape a pattern
   takes: its norm (spread over the image: a blend), its largest pixel (in one place: a watermark) and
   its largest Fourier coefficient (one frequency: a sinusoid). A pattern carried by 30% of a class is
   diluted in the class mean; noise spreads its energy over every pixel and frequency while a sparse
   pattern keeps it in a few, so the matching statistic still stands out (a photographs' sinusoid on 30%
   of a class: norm z 2.8, Fourier z 13.6; real content reaches 5.7). Classes whose largest z is
   `MIN_Z` or beyond, strongest first, go on. The pattern is then re-estimated from the class's
   *carriers*: when the class's projections onto it fall into two groups well apart, the upper group,
   so a pattern on 30% of the class is taken at the strength it has in one image, not diluted by the
   rest.
2. Add: the pattern added to other classes' images, against the same pattern's pixels shuffled afresh
   per image (the same values and energy, no structure): a model that reacts to any faint noise moves as
   much under the null. The paired gain in p(class) gives a one-sided p-value.
3. Remove: the pattern subtracted from the carriers, against the shuffled pattern subtracted; judged,
   like a box's removal, by the share of carriers that stop being the class (a clean class's own fine
   detail, taken off, lowers its confidence a little but leaves its images in the class).

A pattern whose detail sits in one small place (a semi-transparent watermark, a blended logo) is a mark
at a fixed box, not a whole-image signal: `extent` gives the tight box of the pixels holding at least
half its peak energy, and when that box covers at most a quarter of the image the pattern is cut to it,
shuffled only within it for the nulls (the same values at the same place, without their structure),
and reported as a region (`placement: fixed`) with that box. Its spectral twin: a pattern whose screen
stood out by one frequency (a sinusoid) is kept to its strongest frequencies (`tones`), since what the
carriers' mean holds beside them is their content. A pattern kept to a box or to its tones (`kept`) is
one definite signal, so its shuffle is a similar mark (`severity`: the same values and energy, no
structure); a pattern kept whole may be the objects' own mean detail, and is not.

`severity.judge_class_tests` then applies the stamp rule and tells a shortcut from a sensitivity, as for
the other whole-image tests.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch

from auditors.audits.spurious_signal.findings import pattern_example_data
from auditors.audits.spurious_signal.nulls import Probe, other_images, whole_image_result
from auditors.audits.spurious_signal.severity import judge_class_tests
from auditors.engine.fills import gaussian_blur

SIGMA = 2.0  # the blur whose residual is "fine detail": it keeps periods below ~8 px at >= 80%
MIN_Z = 4.0  # standard deviations of the permutation null a class's pattern must reach to be tested
N_PERM = 100  # label permutations behind the screen's z (with 30, a class's z moved by 0.5-1 with the draw)
MIN_CARRIERS = 3
SEPARATION = 3.0  # pooled standard deviations between carriers and the rest of their class
PEAK_SHARE = 0.5  # a localized pattern's pixels hold at least half its peak detail energy...
LOCAL_AREA = 0.25  # ...and their box covers at most a quarter of the image

Box = tuple[int, int, int, int]


def extent(pattern: torch.Tensor) -> Box | None:
    """The tight [x, y, w, h] box of a pattern that sits in one small place (see the module doc), or
    None for one spread over the image."""
    energy = pattern.abs().sum(0)
    on = (energy >= PEAK_SHARE * energy.max()).nonzero()
    if on.numel() == 0 or float(energy.max()) <= 0.0:
        return None
    y0, x0 = (int(v) for v in on.min(0).values)
    y1, x1 = (int(v) for v in on.max(0).values)
    box = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
    return box if box[2] * box[3] <= LOCAL_AREA * energy.numel() else None


def _cut(pattern: torch.Tensor, box: Box | None) -> torch.Tensor:
    """The pattern inside `box` only (all of it when None)."""
    if box is None:
        return pattern
    x, y, w, h = box
    out = torch.zeros_like(pattern)
    out[:, y : y + h, x : x + w] = pattern[:, y : y + h, x : x + w]
    return out


def residuals(images: torch.Tensor) -> torch.Tensor:
    """Each image minus its Gaussian blur: the detail a shared faint pattern lives in."""
    x = images.detach().float().cpu()
    return x - gaussian_blur(x, kernel=2 * int(3 * SIGMA) + 1, sigma=SIGMA)


MANY_CLASSES = 8  # beyond this, one class moves the median of all class means too little to matter


def _class_means(r: torch.Tensor, g: torch.Tensor) -> dict[int, torch.Tensor]:
    """Per class present in `g`: the mean of its rows of `r`, as one product with the class indicator
    matrix (indexing each class's rows copies them, which at 224 px costs most of a screen's time)."""
    ks = g.unique()
    flat = r.reshape(r.shape[0], -1)
    onehot = (g[None, :] == ks[:, None]).to(flat.dtype)
    means = (onehot @ flat) / onehot.sum(1, keepdim=True)
    return {int(k): m.view(r.shape[1:]) for k, m in zip(ks.tolist(), means, strict=True)}


def _references(means: dict[int, torch.Tensor], classes: list[int]) -> dict[int, torch.Tensor]:
    """Per class: the pixelwise median of the other classes' mean residuals (what the class's images
    would average to without a pattern of their own); with many classes, of all of them (one median
    instead of one per class, the same rule under permutation)."""
    if len(means) > MANY_CLASSES:
        shared = torch.stack(list(means.values())).median(0).values
        return {c: shared for c in classes if c in means}
    return {
        c: torch.stack([m for k, m in means.items() if k != c]).median(0).values
        for c in classes
        if c in means and len(means) > 1
    }


def class_patterns(r: torch.Tensor, g: torch.Tensor, classes: list[int]) -> dict[int, torch.Tensor]:
    """Per class: its mean residual minus its reference."""
    means = _class_means(r, g)
    return {c: means[c] - ref for c, ref in _references(means, classes).items()}


def carrying(projection: torch.Tensor) -> torch.Tensor:
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


SHAPES = ("spread", "local", "periodic")


def tones(pattern: torch.Tensor) -> torch.Tensor:
    """The pattern kept to its strongest frequencies (those with at least `PEAK_SHARE` of its peak
    power, the constant excluded): the spectral twin of `extent`'s box, for a pattern whose screen
    stood out by one frequency. What the carriers' mean holds beside it is their content, which would
    otherwise be added and taken off with the pattern and feed its shuffled null."""
    spectrum, power = _spectrum(pattern)
    keep = power >= PEAK_SHARE * power.max()
    return torch.fft.irfft2(spectrum * keep, s=pattern.shape[-2:])


def _spectrum(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A pattern's 2-D Fourier coefficients per channel and their power summed over channels, the
    constant's set to 0 (a mean offset is not a pattern)."""
    spectrum = torch.fft.rfft2(p)
    power = spectrum.abs().pow(2).sum(0)
    power[0, 0] = 0.0
    return spectrum, power


def _statistics(p: torch.Tensor) -> list[float]:
    """A class pattern's norm, largest pixel and largest non-constant Fourier coefficient (`SHAPES`)."""
    power = _spectrum(p)[1]
    return [float(p.norm()), float(p.pow(2).sum(0).max().sqrt()), float(power.max().sqrt())]


def screen(
    images: torch.Tensor, groups: torch.Tensor, classes: list[int], *, max_tests: int, seed: int
) -> tuple[list[dict[str, Any]], dict[int, torch.Tensor]]:
    """Per class, the data evidence for a shared pattern (the largest of its `SHAPES` z-scores against
    label permutations); the strongest `max_tests` at MIN_Z or beyond, and their carrier-estimated
    patterns."""
    r = residuals(images)
    g = groups.detach().cpu()
    observed = class_patterns(r, g, classes)
    gen = torch.Generator().manual_seed(seed)
    null: dict[int, list[list[float]]] = {c: [] for c in observed}
    for _ in range(N_PERM):
        fake = g[torch.randperm(g.numel(), generator=gen)]
        for c, p in class_patterns(r, fake, list(observed)).items():
            null[c].append(_statistics(p))
    rows: list[dict[str, Any]] = []
    patterns: dict[int, torch.Tensor] = {}
    refs = _references(_class_means(r, g), list(observed))
    for c, p in observed.items():
        stats = np.asarray(null[c])
        zs = (np.asarray(_statistics(p)) - stats.mean(0)) / np.maximum(stats.std(0), 1e-9)
        z = float(zs.max())
        if z < MIN_Z:
            continue
        own = (g == c).nonzero().flatten()
        ref = refs[c]
        unit = p / p.norm().clamp_min(1e-12)
        carriers = own[carrying(((r[own] - ref) * unit).sum((1, 2, 3)))]
        estimate = r[carriers].mean(0) - ref
        box = extent(estimate)
        periodic = box is None and SHAPES[int(zs.argmax())] == "periodic"
        patterns[c] = tones(estimate) if periodic else _cut(estimate, box)
        rows.append(
            {
                "class_index": c,
                "statistic": "pattern",
                "placement": "global" if box is None else "fixed",
                "box": None if box is None else list(box),
                "z": round(z, 3),
                "z_by_shape": {k: round(float(v), 3) for k, v in zip(SHAPES, zs, strict=True)},
                "kept": "box" if box is not None else "tones" if periodic else "whole",
                "norm": round(float(patterns[c].norm()), 5),
                "carriers": int(carriers.numel()),
                "class_images": int(own.numel()),
                "_carriers": carriers,
            }
        )
    rows.sort(key=lambda row: -row["z"])
    return rows[:max_tests], patterns


def _shuffled(pattern: torch.Tensor, count: int, seed: int, box: Box | None = None) -> torch.Tensor:
    """[count, 3, H, W]: the pattern's pixels (all channels together) in a fresh random order each;
    only those inside `box`, among themselves, when the pattern is cut to one."""
    x, y, w, h = box or (0, 0, pattern.shape[2], pattern.shape[1])
    inner = pattern[:, y : y + h, x : x + w]
    flat = inner.reshape(pattern.shape[0], h * w)
    gen = torch.Generator().manual_seed(seed)
    out = torch.zeros(count, *pattern.shape, dtype=pattern.dtype)
    for i in range(count):
        out[i, :, y : y + h, x : x + w] = flat[:, torch.randperm(h * w, generator=gen)].view_as(inner)
    return out


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
    box = cast(Box, tuple(row["box"])) if row.get("box") else None
    rec = other_images(groups, pred, labels, c, max_images)
    dev = images.device
    p = pattern.to(dev)
    x = images[rec.to(dev)]
    carriers = row["_carriers"][:max_images]
    y = images[carriers.to(dev)]
    out = whole_image_result(
        c,
        probe.probs((x + p).clamp(0, 1)),
        probe.probs((x + _shuffled(pattern, rec.numel(), seed, box).to(dev)).clamp(0, 1)),
        probe.probs(y),
        probe.probs((y - p).clamp(0, 1)),
        probe.probs((y - _shuffled(pattern, carriers.numel(), seed + 1, box).to(dev)).clamp(0, 1)),
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
