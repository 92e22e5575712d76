"""The class distribution of a set of predictions and its entropy: how spread the predicted classes
are (one definition, for the missingness audit, its verdict rules and the removal-strategy rule)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def class_shares(preds: np.ndarray, k: int) -> np.ndarray:
    """The share of images predicted as each of the k classes."""
    p = np.asarray(preds, dtype=np.int64).reshape(-1)
    return np.bincount(p, minlength=k)[:k].astype(np.float64) / max(1, p.size)


def entropy(shares: np.ndarray) -> float:
    """H = -sum_c p_c ln p_c; max(0, .) because a single class gives -0.0, which prints "-0.00 nats"."""
    nz = shares[shares > 0]
    return max(0.0, float(-(nz * np.log(nz)).sum()))


def class_entropy(preds: torch.Tensor, k: int) -> tuple[float, np.ndarray]:
    """H over the share of images predicted as class c; also the shares."""
    shares = class_shares(preds.cpu().numpy(), k)
    return entropy(shares), shares
