"""Low-level global shortcuts: does a class's sharpness, compression or noise alone decide it?

A scanner, camera or pipeline leaves its mark over the whole image: no box holds it, and no colour cast
need come with it. Per class and statistic (`auditors.methods.image_stats`):

1. Data: does the class's distribution of the statistic differ from the other classes'? The largest
   standardised shift among the 20/50/80% quantiles (a shortcut on 30% of the class moves only its
   tail) with a rank test; the classes x statistics screened are corrected together (Holm) and the
   strongest `max_tests` go on.
2. Add: other classes' images are given the class's level (its quantile of the largest shift); the
   null moves them as far in the opposite direction, so a model that flips on any change of that size
   is not blamed on the class. The paired gain in p(class) gives a one-sided p-value.
3. Remove: the class's own images at that level are given the others' median level, against the same
   move the other way: does the class lose more than under the null?

A result is a shortcut only when both hold (`severity`); adding alone is a sensitivity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditors.audits.spurious_signal.nulls import Probe, other_images, whole_image_result
from auditors.audits.spurious_signal.severity import judge_class_tests
from auditors.methods.image_stats import measure, set_level

# Colour casts are the colour test's (`global_shift`). These are what a source leaves, each measured
# relative to the image's own contrast, so that content does not read as a source. Measured on crops of
# real photographs (400 per task, 4 classes), a class's own content shifts them by up to 1.5 robust
# standard deviations (detail) and 3.2 (blockiness of nearly flat sky crops), where a blur moves
# detail by 4.7-5.0 and JPEG quality 12 moves blockiness by 4.6-25. Grain (noise over contrast) is left
# out: flat sky crops alone shift it by 3.5. Raw brightness, contrast and saturation belong to content
# as much as to a source (the report's out-of-scope list says so).
STATISTICS = ("detail", "blockiness")
QUANTILES = (0.2, 0.5, 0.8)
MIN_SHIFT = 4.0  # the smallest standardised shift worth a model test: beyond what content moves
MIN_CONTRAST = 0.03  # flatter images have no detail or grid to measure; the screen leaves them out


def screen(
    images: torch.Tensor, groups: torch.Tensor, classes: list[int], *, max_tests: int
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """Per (class, statistic), the data difference; returns the strongest `max_tests` whose shift is
    at least MIN_SHIFT and whose rank test survives Holm over all pairs, and the measured levels."""
    from scipy.stats import mannwhitneyu

    from auditors.stats import holm

    levels = measure(images, (*STATISTICS, "contrast"))
    g = groups.cpu()
    textured = levels["contrast"] >= MIN_CONTRAST
    rows: list[dict[str, Any]] = []
    for c in classes:
        own_mask = g == c
        for s in STATISTICS:
            own, rest = levels[s][own_mask & textured].numpy(), levels[s][~own_mask & textured].numpy()
            if own.size < 2 or rest.size < 2:
                continue
            scale = float(np.subtract(*np.quantile(rest, [0.75, 0.25]))) / 1.349 or float(rest.std()) or 1e-6
            shifts = [
                (float(np.quantile(own, q)) - float(np.median(rest))) / max(scale, 1e-6) for q in QUANTILES
            ]
            k = int(np.argmax(np.abs(shifts)))
            p = float(mannwhitneyu(own, rest, alternative="two-sided").pvalue)
            rows.append(
                {
                    "class_index": c,
                    "statistic": s,
                    "shift": round(shifts[k], 3),
                    "quantile": QUANTILES[k],
                    "class_level": round(float(np.quantile(own, QUANTILES[k])), 5),
                    "others_level": round(float(np.median(rest)), 5),
                    "data_p_value": p,
                }
            )
    adjusted = holm([r["data_p_value"] for r in rows])
    for r, p_adj in zip(rows, adjusted, strict=True):
        r["data_p_adjusted"] = round(p_adj, 6)
    kept = [r for r in rows if abs(r["shift"]) >= MIN_SHIFT and r["data_p_adjusted"] < 0.05]
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
    """The add and remove counterfactuals of one screened (class, statistic), each against its null."""
    c, s = int(row["class_index"]), str(row["statistic"])
    g, level = groups.cpu(), levels[s]
    rec = other_images(groups, pred, labels, c, max_images)
    target, back = float(row["class_level"]), float(row["others_level"])
    x = images[rec.to(images.device)]
    # Removal on the class's images that sit at its level (the carriers, when the shortcut is partial).
    own = (g == c).nonzero().flatten()
    side = np.sign(row["shift"]) or 1.0
    at_level = own[(level[own] - back) * side >= abs(target - back) * 0.5][:max_images]
    if at_level.numel() == 0:
        at_level = own[:max_images]
    y = images[at_level.to(images.device)]
    return row | whole_image_result(
        c,
        probe.probs(set_level(x, s, target)),
        probe.probs(_mirror(x, s, level[rec], target)),
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
    rows, levels = screen(images, groups, classes, max_tests=max_tests)
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
