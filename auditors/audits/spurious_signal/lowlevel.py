"""Low-level global shortcuts: does a class's sharpness, compression or noise alone decide it?

A scanner, camera or pipeline leaves its mark over the whole image: no box holds it, and no colour cast
need come with it. Per class and statistic (`auditors.methods.image_stats`):

1. Data: does the class's distribution of the statistic differ from the other classes'? Each of its
   10/20/50/80/90% quantiles against the same quantile of the other classes' images, in their robust
   standard deviations: a shortcut on the whole class moves its median, one on a fifth of it only its
   top or bottom decile. The largest shift is tested against label permutations: against the largest
   shift any class reaches under the same permutation (Westfall and Young's max-T, which corrects
   for the classes at once and stays exact when a few extreme images make the null heavy-tailed),
   Bonferroni over the statistics; the strongest `max_tests` go on.
2. Add: other classes' images are given the class's level (its quantile of the largest shift); the
   null moves them as far in the opposite direction, so a model that flips on any change of that size
   is not blamed on the class. The paired gain in p(class) gives a one-sided p-value.
3. Remove: the class's own images at that level are given the others' median level, against the same
   move the other way: does the class lose more than under the null? A compression cannot be undone;
   its add test is held against a similar change instead (noise of the same energy per image).

A result is a shortcut only when both hold (`severity`); adding alone is a sensitivity. For a
compression, the data (the class's images carry it) and a model that learned *this* change beyond a
similar one stand for the removal that cannot be run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditors.audits.spurious_signal.nulls import Probe, other_images, similar_change, whole_image_result
from auditors.audits.spurious_signal.severity import judge_class_tests
from auditors.methods.image_stats import measure, set_level

# Colour casts are the colour test's (`global_shift`). These are what a source leaves; detail and
# blockiness are measured relative to the image's own contrast, so that content does not read as a
# source, and noise by a median that edges do not move. Measured on the
# validity bench's 66 clean models' data (crops of real photographs and synthetic shapes, 4 classes,
# 160 images), a class's own content shifts a quantile by up to 1.7 robust standard deviations
# (detail) and 4.6 (blockiness: the top decile of one photograph's crops, whose texture has an 8-px
# period), where a blur on 30% of a class moves detail by 4.3-6.9 and JPEG quality 12 on 17% of one
# moves blockiness by 16. Pixel noise (`image_stats.noise`: per channel, a median, so edges do not
# count) rises by up to 3.6 on a photograph class's own texture (3.7 at 64 px; 1.9 on shapes), where
# grain of 12/255 on 30-100% of a class raises it by 3.8-7.5 (8.6-14 at 64 px). Raw brightness,
# contrast and saturation belong to content as much as to a source (the report's out-of-scope list
# says so).
STATISTICS = ("detail", "blockiness", "noise")
QUANTILES = (0.1, 0.2, 0.5, 0.8, 0.9)
MIN_SHIFT = 4.0  # the smallest standardised shift worth a model test: beyond what content moves
MIN_CONTRAST = 0.03  # flatter images have no detail to lose; the detail screen leaves them out
# (blockiness has a floor of one grey level instead, `image_stats.blockiness`, so flat images keep
# their grid: a JPEG'd flat background is the plainest carrier of all)
NEEDS_TEXTURE = frozenset({"detail"})
# Compression only adds blockiness, and nothing undoes it: a class's compressed images cannot be given
# back their lost detail, so the removal test has nothing to run (`severity.judge`).
RISES_ONLY = frozenset({"blockiness"})
# A class with *less* pixel noise than the rest is a class of flat content (sky) as often as a clean
# source: only a rise in noise is screened (the out-of-scope list says so). A rise is taken off by
# smoothing the carriers to the others' level, against the same amount of noise added. A textured
# class would lose its texture too: hence the screen's threshold beyond the photographs' own texture,
# and taking the level off must cost the class even when adding it turns most other images
# (`severity.NOT_SUFFICIENT_ALONE`). On six clean models of the bench (the photographs' textured
# class, screened down to shifts of 1.5), other images given that class's noise level turned none
# of them into it.
ONE_SIDED = frozenset({"noise"})
N_PERM = 200  # label permutations behind the max-T null (p >= 1/201)
ALPHA = 0.05


MANY_CLASSES = 8  # beyond this, one class moves the pooled quantiles too little to matter


def _class_quantiles(values: np.ndarray, g: np.ndarray, classes: list[int]) -> np.ndarray:
    """[classes, QUANTILES]: each class's quantiles (numpy's linear rule) from one sort of all the
    values by class, not one sort per class (NaN for a class with fewer than 2 values)."""
    order = np.lexsort((values, g))
    v, gs = values[order], g[order]
    wanted = np.asarray(classes)
    start = np.searchsorted(gs, wanted)
    n = np.searchsorted(gs, wanted, side="right") - start
    out = np.full((len(classes), len(QUANTILES)), np.nan)
    ok = n >= 2
    if not ok.any():
        return out
    last = (n[ok] - 1)[:, None]
    h = last * np.asarray(QUANTILES)[None, :]
    lo = np.floor(h).astype(np.int64)
    below, above = v[start[ok, None] + lo], v[start[ok, None] + np.minimum(lo + 1, last)]
    out[ok] = below + (h - lo) * (above - below)
    return out


def _scale(rest: np.ndarray) -> float:
    """The robust standard deviation (IQR / 1.349) shifts are measured in, the SD when that is 0."""
    return max(
        float(np.subtract(*np.quantile(rest, [0.75, 0.25]))) / 1.349 or float(rest.std()) or 1e-6, 1e-6
    )


def _shifts(
    values: np.ndarray, g: np.ndarray, classes: list[int], use: np.ndarray, rise: bool = False
) -> np.ndarray:
    """[classes, QUANTILES]: each class's quantiles minus the other classes' same quantiles, in the
    others' robust standard deviations (NaN for a class with fewer than 2 images or others). With
    more than `MANY_CLASSES` classes, against all the images' quantiles instead: those do not move
    under a label permutation, so the max-T null costs one sort per permutation at 1,000 classes.
    `rise`: falls count as no shift (a one-sided screen)."""
    v, gu = values[use], g[use]
    if len(np.unique(g)) > MANY_CLASSES:
        if v.size < 2:
            return np.full((len(classes), len(QUANTILES)), np.nan)
        out = (_class_quantiles(v, gu, classes) - np.quantile(v, QUANTILES)) / _scale(v)
    else:
        out = np.full((len(classes), len(QUANTILES)), np.nan)
        for i, c in enumerate(classes):
            own, rest = v[gu == c], v[gu != c]
            if own.size < 2 or rest.size < 2:
                continue
            out[i] = (np.quantile(own, QUANTILES) - np.quantile(rest, QUANTILES)) / _scale(rest)
    return np.where(out < 0, 0.0, out) if rise else out


def _largest(shifts: np.ndarray) -> np.ndarray:
    """Per row, the largest absolute shift over the quantiles (NaN rows stay NaN)."""
    a = np.abs(shifts)
    return np.where(np.isnan(a).all(-1), np.nan, np.nan_to_num(a, nan=-1.0).max(-1))


def screen(
    images: torch.Tensor, groups: torch.Tensor, classes: list[int], *, max_tests: int, seed: int = 0
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """Per (class, statistic), the data difference; returns the strongest `max_tests` whose shift is
    at least MIN_SHIFT and whose max-T permutation p-value is below ALPHA, and the measured levels."""
    levels = measure(images, (*STATISTICS, "contrast"))
    if not classes:
        return [], levels
    g = groups.detach().cpu().numpy()
    textured = levels["contrast"].numpy() >= MIN_CONTRAST
    every = np.ones_like(textured)
    values = {s: levels[s].numpy().astype(np.float64) for s in STATISTICS}
    use = {s: textured if s in NEEDS_TEXTURE else every for s in STATISTICS}
    observed = np.stack(
        [_shifts(values[s], g, classes, use[s], s in ONE_SIDED) for s in STATISTICS]
    )  # [S, C, Q]
    rng = np.random.default_rng(seed)
    null = np.stack(
        [
            _largest(
                np.stack([_shifts(values[s], fake, classes, use[s], s in ONE_SIDED) for s in STATISTICS])
            )
            for fake in (rng.permutation(g) for _ in range(N_PERM))
        ]
    )  # [P, S, C]
    # Shifts are in the other classes' robust standard deviations, comparable across classes; within a
    # statistic, each is tested against the largest any class reaches under the same permutation
    # (max-T), and the statistics, whose nulls differ in shape, are Bonferroni-corrected.
    null_max = np.nan_to_num(null, nan=0.0).max(2)  # [P, S]
    t_obs = _largest(observed)  # [S, C]
    rows: list[dict[str, Any]] = []
    for si, s in enumerate(STATISTICS):
        for ci, c in enumerate(classes):
            if np.isnan(t_obs[si, ci]):
                continue
            k = int(np.nanargmax(np.abs(observed[si, ci])))
            own, rest = values[s][use[s] & (g == c)], values[s][use[s] & (g != c)]
            rows.append(
                {
                    "class_index": c,
                    "statistic": s,
                    "shift": round(float(observed[si, ci, k]), 3),
                    "quantile": QUANTILES[k],
                    "class_level": round(float(np.quantile(own, QUANTILES[k])), 5),
                    "others_level": round(float(np.median(rest)), 5),
                    "data_p_value": round(
                        min(
                            1.0,
                            len(STATISTICS) * (1 + (null_max[:, si] >= t_obs[si, ci]).sum()) / (1 + N_PERM),
                        ),
                        6,
                    ),
                    "data_correction": f"max-T over {len(classes)} classes per statistic ({N_PERM} label "
                    f"permutations), Bonferroni over {len(STATISTICS)} statistics",
                }
            )
    kept = [r for r in rows if abs(r["shift"]) >= MIN_SHIFT and r["data_p_value"] < ALPHA]
    kept.sort(key=lambda r: -abs(r["shift"]))
    return kept[:max_tests], levels


def _mirror(x: torch.Tensor, stat: str, level: torch.Tensor, target: float) -> torch.Tensor:
    """The null move: as far from each image's own level as the target, in the other direction."""
    return set_level(x, stat, (2 * level - target).float())


def model_test(
    probe: Probe,
    images: torch.Tensor,
    groups: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    row: dict[str, Any],
    levels: dict[str, torch.Tensor],
    *,
    max_images: int,
    seed: int,
) -> dict[str, Any]:
    """The add and remove counterfactuals of one screened (class, statistic), each against its null.
    A statistic that only rises (`RISES_ONLY`) cannot be taken off the class's images; its add test is
    also held against noise of the same energy (`nulls.similar_change`)."""
    c, s = int(row["class_index"]), str(row["statistic"])
    g, level = groups.cpu(), levels[s]
    rec = other_images(groups, pred, labels, c, max_images)
    target, back = float(row["class_level"]), float(row["others_level"])
    x = images[rec.to(images.device)]
    changed = set_level(x, s, target)
    moved = probe.probs(changed)
    null = probe.probs(_mirror(x, s, level[rec], target))
    if s in RISES_ONLY and row["shift"] > 0:
        similar = similar_change(probe, x, changed, moved, c, seed=seed)
        return (
            row
            | whole_image_result(c, moved, null, None, None, None, seed=seed)
            | {"similar_mark": similar, "removable": False}
        )
    # Removal on the class's images that sit at its level (the carriers, when the shortcut is partial).
    own = (g == c).nonzero().flatten()
    side = np.sign(row["shift"]) or 1.0
    at_level = own[(level[own] - back) * side >= abs(target - back) * 0.5][:max_images]
    if at_level.numel() == 0:
        at_level = own[:max_images]
    y = images[at_level.to(images.device)]
    return row | whole_image_result(
        c,
        moved,
        null,
        probe.probs(y),
        probe.probs(set_level(y, s, back)),
        probe.probs(_mirror(y, s, level[at_level], back)),
        seed=seed,
    )


def lowlevel_tests(
    probe: Probe,
    images: torch.Tensor,
    groups: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    classes: list[int],
    *,
    max_tests: int,
    max_images: int,
) -> dict[str, Any]:
    """Screen the data, then test the strongest (class, statistic) pairs on the model."""
    rows, levels = screen(images, groups, classes, max_tests=max_tests, seed=probe.seed)
    results = [
        model_test(
            probe, images, groups, pred, labels, r, levels, max_images=max_images, seed=probe.seed + 7 * i
        )
        for i, r in enumerate(rows)
    ]
    return {"screened": len(classes) * len(STATISTICS), "results": results}


def judge_lowlevel(
    results: list[dict[str, Any]], class_names: list[str], alpha: float, min_flip: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Holm over the model tests, the stamp rule, then severity; returns all results and the
    shortcuts among them."""
    return judge_class_tests(results, class_names, alpha, min_flip, "class statistics")
