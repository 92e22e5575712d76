"""The SIS audit's secondary signals (Carter et al., NeurIPS 2021 §4-5; docs/audits.md, "SIS and overinterpretation").

Kept apart from `shard.py` and `merge.py` so the audit reads as the paper's procedure and this file as its evidence:
random-pixel controls, SIS size as a predictor of mistakes, retraining on 5% subsets.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from auditors.audits.context import AuditContext
from auditors.engine import apply_pixel_fill, parse_strategy, plain_logits
from auditors.methods.backselect import backselect_subset, gradient_backselect, subset_keep
from auditors.methods.per_image_random import per_image_uniform
from auditors.sampling import stratified_indices
from auditors.zoo.training import train_classifier

_RETRAIN_SALT = 0x5E8  # the random 5% subsets of the retraining control


def random_subsets(
    positions: Sequence[int] | range, n_pixels: int, size: int, *, seed: int, salt: int
) -> list[torch.Tensor]:
    """One uniformly random set of `size` pixel indices per image (the control for 5% subsets). Image
    p's set depends only on (seed, salt, p), so it is the same in a single run and in any shard."""
    return [
        torch.from_numpy(
            per_image_uniform([p], n_pixels, seed=seed, salt=salt)[0].argsort(kind="stable")[:size]
        )
        for p in positions
    ]


def _auc(pos: list[float], neg: list[float]) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U / |pos||neg|)."""
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def size_vs_correctness(
    pct: list[float | None], clean: torch.Tensor, labels: torch.Tensor | None
) -> dict[str, Any]:
    """Does a small SIS predict a mistake? Mean SIS size of correct vs wrong predictions and the AUC of
    (smaller SIS -> misclassified) over images that have an SIS."""
    if labels is None:
        return {"available": False, "reason": "the dataset has no labels"}
    correct = (clean.cpu() == labels.cpu()).tolist()
    ok = [p for p, c in zip(pct, correct, strict=True) if p is not None and c]
    bad = [p for p, c in zip(pct, correct, strict=True) if p is not None and not c]
    out: dict[str, Any] = {
        "available": bool(ok and bad),
        "n_correct": len(ok),
        "n_incorrect": len(bad),
        "mean_pct_correct": float(np.mean(ok)) if ok else None,
        "mean_pct_incorrect": float(np.mean(bad)) if bad else None,
        "auc_small_sis_predicts_error": _auc([-p for p in bad], [-p for p in ok]) if ok and bad else None,
    }
    if not (ok and bad):
        out["reason"] = "needs both correct and misclassified images with an SIS"
    return out


def fresh_copy(model: nn.Module, seed: int) -> nn.Module:
    """Same architecture, newly initialised weights (every submodule's own `reset_parameters`)."""
    torch.manual_seed(seed)
    new = copy.deepcopy(model)
    for module in new.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return new


def retrain_on_subsets(
    ctx: AuditContext, n_images: int, k: int, strategy: str, fraction: float, epochs: int, seed: int
) -> dict[str, Any]:
    """NeurIPS 2021 §5: train a fresh model on the 5% backselect subsets (true labels) and compare its
    held-out accuracy with the original model's and with a fresh model trained on random 5% subsets."""
    if ctx.labels is None:
        return {"available": False, "reason": "retraining needs labels"}
    # A class-stratified draw, not the first images of a possibly class-sorted sample.
    chosen = torch.from_numpy(stratified_indices(ctx.labels.cpu().numpy(), n_images, seed=seed, salt=0x5E7))
    images, labels = ctx.images[chosen], ctx.labels[chosen].cpu()
    n, (h, w) = images.shape[0], ctx.image_size
    res = gradient_backselect(ctx.model, images, mean=ctx.mean, std=ctx.std, strategy=strategy, k=k)
    bs = subset_keep(backselect_subset(res, fraction), h, w)
    rnd = subset_keep(random_subsets(range(n), h * w, int(bs[0].sum()), seed=seed, salt=_RETRAIN_SALT), h, w)
    strat = parse_strategy(strategy)
    mean_t = torch.as_tensor(ctx.mean, dtype=torch.float32)

    def masked(keep: torch.Tensor) -> torch.Tensor:
        return apply_pixel_fill(strat, images.cpu(), keep.unsqueeze(1), mean=mean_t, seed=seed)

    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = max(1, int(0.8 * n))
    tr, te = perm[:cut], perm[cut:]
    out: dict[str, Any] = {"available": True, "n_train": len(tr), "n_test": len(te), "epochs": epochs}
    orig = plain_logits(ctx.model, images[te], mean=ctx.mean, std=ctx.std).argmax(1).cpu()
    out["original_accuracy"] = float((orig == labels[te]).float().mean())
    for name, keep in (("backselect", bs), ("random", rnd)):
        x = masked(keep)
        model = fresh_copy(ctx.model, seed).to(ctx.device)
        train_classifier(model, x[tr], labels[tr], mean=ctx.mean, std=ctx.std, epochs=epochs, seed=seed)
        pred = plain_logits(model, x[te], mean=ctx.mean, std=ctx.std).argmax(1).cpu()
        out[f"{name}_subset_model_accuracy"] = float((pred == labels[te]).float().mean())
    return out
