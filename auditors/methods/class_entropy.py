"""The entropy of a set of predictions: how spread the predicted classes are (one definition)."""

from __future__ import annotations

import numpy as np
import torch


def class_entropy(preds: torch.Tensor, k: int) -> tuple[float, np.ndarray]:
    """H = -sum_c p_c ln p_c over the share of images predicted as class c; also the shares."""
    shares = torch.bincount(preds.cpu(), minlength=k).double() / max(1, preds.numel())
    nz = shares[shares > 0]
    # max(0, .): a single class gives -0.0, which would print as "-0.00 nats".
    return max(0.0, float(-(nz * nz.log()).sum())), shares.numpy()
