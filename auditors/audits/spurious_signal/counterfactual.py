"""Counterfactual tests for the spurious-signal audit (docs/audits.md, "Spurious signals"; PAIR explorable 2022).

Saliency only shows where a model looks on the images it is given, so it misses a shortcut that is
*absent* from an image (PAIR: a 50%-watermarked model has p = 0.08 on clean cats). These tests ask the
model directly: does *adding* the suspected content to other classes' images flip them toward the
suspected class, and does *removing* the box hurt that class more than removing a random box of the
same size? Removal goes through the missingness engine with the model's native missingness, else blur.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from auditors.engine import NATIVE, applicable_strategies, masked_logits, model_device, plain_logits
from auditors.methods.class_entropy import class_entropy
from auditors.methods.removal import REMEDY_FILLS, distribution_change, rank_strategies, recommend
from auditors.methods.saliency import box_keep
from auditors.sampling import stratified_indices

Box = tuple[int, int, int, int]


def choose_removal_strategy(
    model: nn.Module,
    images: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    patch_size: int,
    seed: int,
    n_images: int = 32,
    groups: torch.Tensor | None = None,
) -> tuple[str, dict[str, dict[str, float]]]:
    """The strategy that removes a box without adding evidence of its own, and what was measured.

    One rule for every audit (`auditors.methods.removal`): the model's native missingness when it has
    one, else the non-constant fill (blur) that changes the class distribution least; never a constant
    fill or noise. Each candidate is measured as in Jain et al. (2022) section 3 on a class-stratified
    sample (by `groups`, else the clean predictions) with a random half of the patches removed: the
    absolute change of the class distribution (total variation distance), the changed-prediction share,
    and, for the record, the entropy drop.
    """
    names = [s for s in (*NATIVE, *REMEDY_FILLS) if s in applicable_strategies(model)]
    logits = plain_logits(model, images, mean=mean, std=std)
    k = int(logits.shape[1])
    clean_all = logits.argmax(1).cpu()
    strata = clean_all if groups is None else groups.cpu()
    index = torch.from_numpy(stratified_indices(strata.numpy(), n_images, seed=seed, salt=0xC405))
    x = images[index.to(images.device)]
    clean = clean_all[index]
    height, width = x.shape[-2:]
    gh, gw = height // patch_size, width // patch_size
    gen = torch.Generator().manual_seed(seed)
    keep = torch.rand(x.shape[0], gh, gw, generator=gen) >= 0.5
    keep_px = keep.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)
    pad = torch.ones(x.shape[0], height, width, dtype=torch.bool)
    pad[:, : gh * patch_size, : gw * patch_size] = keep_px
    h_clean = class_entropy(clean, k)[0]
    measured: dict[str, dict[str, float]] = {}
    for name in names:
        pred = masked_logits(model, x, pad, name, mean=mean, std=std, seed=seed).argmax(1).cpu()
        measured[name] = {
            "distribution_change": round(distribution_change(clean.numpy(), pred.numpy(), k), 4),
            "changed_share": round(float((pred != clean).float().mean()), 4),
            "entropy_drop": round(h_clean - class_entropy(pred, k)[0] + 0.0, 4),
            "n": int(x.shape[0]),
        }
    changes = {s: m["distribution_change"] for s, m in measured.items()}
    best = recommend(changes) or rank_strategies(changes)[0]
    return best, measured


def stamp_artifact(
    images: torch.Tensor, box: Box, rgb: torch.Tensor, alpha: torch.Tensor | None
) -> torch.Tensor:
    """A copy of `images` with `rgb` [3,h,w] drawn into `box` where `alpha` [h,w] is set (all if None)."""
    x, y, w, h = box
    out = images.clone()
    region = out[:, :, y : y + h, x : x + w]
    a = torch.ones(h, w, dtype=torch.bool) if alpha is None else alpha.bool()
    region.copy_(
        torch.where(a.to(images.device).view(1, 1, h, w), rgb.to(images.device).unsqueeze(0), region)
    )
    return out


def paste_from_donors(images: torch.Tensor, donors: torch.Tensor, box: Box, seed: int) -> torch.Tensor:
    """A copy of `images` whose `box` holds the same box of a random donor image (one per image).

    The stamp test of discovery mode: with no artifact file, the candidate content is whatever the
    suspected class's images carry at that place.
    """
    x, y, w, h = box
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, donors.shape[0], (images.shape[0],), generator=gen)
    out = images.clone()
    out[:, :, y : y + h, x : x + w] = donors[pick][:, :, y : y + h, x : x + w].to(out.device)
    return out


def carries_artifact(
    images: torch.Tensor, box: Box, rgb: torch.Tensor, alpha: torch.Tensor | None
) -> torch.Tensor:
    """Bool [N]: images whose box already shows the artifact (mean abs difference under alpha < 0.1)."""
    x, y, w, h = box
    region = images[:, :, y : y + h, x : x + w]
    a = torch.ones(h, w, dtype=torch.bool) if alpha is None else alpha.bool()
    diff = (region - rgb.to(images.device).unsqueeze(0)).abs().mean(1)[:, a.to(images.device)]
    return diff.mean(1) < 0.1


def flip_rates(
    clean_pred: torch.Tensor, stamped_pred: torch.Tensor, labels: torch.Tensor | None, num_classes: int
) -> list[float | None]:
    """Per class c: among images neither predicted nor (if labelled) labelled c, the share predicted c
    after stamping. None where no image qualifies."""
    rates: list[float | None] = []
    for c in range(num_classes):
        other = clean_pred != c
        if labels is not None:
            other &= labels.to(other.device) != c
        n = int(other.sum())
        rates.append(float((stamped_pred[other] == c).float().mean()) if n else None)
    return rates


def random_boxes(box: Box, height: int, width: int, n: int, seed: int) -> list[Box]:
    """`n` boxes of `box`'s size at random places that overlap it by at most a quarter of its area."""
    _, _, w, h = box
    gen = torch.Generator().manual_seed(seed)
    out: list[Box] = []
    for _ in range(n * 50):
        if len(out) == n:
            break
        rx = int(torch.randint(0, width - w + 1, (1,), generator=gen))
        ry = int(torch.randint(0, height - h + 1, (1,), generator=gen))
        ox = max(0, min(rx + w, box[0] + w) - max(rx, box[0]))
        oy = max(0, min(ry + h, box[1] + h) - max(ry, box[1]))
        if ox * oy <= 0.25 * w * h:
            out.append((rx, ry, w, h))
    return out


def removal_vs_random(
    model: nn.Module,
    images: torch.Tensor,
    target: int,
    box: Box,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    strategy: str,
    n_random: int,
    seed: int,
) -> dict[str, float]:
    """Mean drop of p(target) when `box` is removed vs when random equal-size boxes are removed.

    `images` are the images the model assigns to `target`. The random boxes are shared by all images,
    so the comparison is paired; `random_box_effect_p90` is the 90th percentile over random boxes.
    """
    height, width = images.shape[-2:]
    boxes = [box, *random_boxes(box, height, width, n_random, seed)]
    keep = box_keep(boxes, height, width, model_device(model))
    n, b = images.shape[0], len(boxes)
    clean = plain_logits(model, images, mean=mean, std=std).softmax(1)[:, target]
    flat_keep = keep.repeat(n, 1, 1)
    flat_img = images.repeat_interleave(b, 0)
    probs = masked_logits(model, flat_img, flat_keep, strategy, mean=mean, std=std, seed=seed).softmax(1)
    drop = (clean.repeat_interleave(b) - probs[:, target]).view(n, b)
    per_box = drop[:, 1:].mean(0)
    p90 = float(per_box.quantile(0.9)) if per_box.numel() else math.nan
    return {
        "removal_effect": round(float(drop[:, 0].mean()), 4),
        "random_box_effect": round(float(per_box.mean()), 4) if per_box.numel() else math.nan,
        "random_box_effect_p90": round(p90, 4),
        "removal_flip_rate": round(float((probs.view(n, b, -1)[:, 0].argmax(1) != target).float().mean()), 4),
        "n_images": n,
        "n_random_boxes": b - 1,
    }


def mask_shape_leakage(
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    reference: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    strategies: Sequence[str],
    seed: int,
) -> dict[str, dict[str, float]]:
    """Per strategy, accuracy vs `reference` after removing the object, and after removing the same
    mask shifted by half the image (Balasubramanian & Feizi, 2023, §analysis).

    A pixel fill that keeps much more accuracy than native masking with the object removed leaks the
    class through the hole's shape; `leak_vs_native` is that gap (absent without a native strategy).
    """
    height, width = images.shape[-2:]
    keep_obj = ~masks.bool()
    keep_shift = ~torch.roll(masks.bool(), shifts=(height // 2, width // 2), dims=(1, 2))
    ref = reference.to(model_device(model))
    out: dict[str, dict[str, float]] = {}
    for name in strategies:
        acc = []
        for keep in (keep_obj, keep_shift):
            pred = masked_logits(model, images, keep, name, mean=mean, std=std, seed=seed).argmax(1)
            acc.append(float((pred == ref).float().mean()))
        out[name] = {"object_removed": round(acc[0], 4), "shifted_removed": round(acc[1], 4)}
    native = next((s for s in strategies if s in ("token_drop", "layer_mask")), None)
    if native is not None:
        for name in strategies:
            out[name]["leak_vs_native"] = round(
                out[name]["object_removed"] - out[native]["object_removed"], 4
            )
    return out
