"""Removal-side helpers of the spurious-signal audit (docs/audits.md, "Spurious signals").

Which missingness strategy removes a box with the least bias, whether an image already shows a given
artifact, and whether a pixel fill leaks the class through the shape of a removed object. The stamp
and removal tests themselves, judged against their nulls, are in `nulls`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from auditors.engine import NATIVE, applicable_strategies, masked_logits, model_device, plain_logits
from auditors.methods.class_entropy import class_entropy
from auditors.methods.removal import REMEDY_FILLS, distribution_change, rank_strategies, recommend
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


def carries_artifact(
    images: torch.Tensor, box: Box, rgb: torch.Tensor, alpha: torch.Tensor | None
) -> torch.Tensor:
    """Bool [N]: images whose box already shows the artifact (mean abs difference under alpha < 0.1)."""
    x, y, w, h = box
    region = images[:, :, y : y + h, x : x + w]
    a = torch.ones(h, w, dtype=torch.bool) if alpha is None else alpha.bool()
    diff = (region - rgb.to(images.device).unsqueeze(0)).abs().mean(1)[:, a.to(images.device)]
    return diff.mean(1) < 0.1


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
