"""Timing helpers and the Captum baselines shared by every benchmark script.

Every comparison is measured side by side in one run, on one device, with the same model, fill and
sample counts; only ratios and the targets they are checked against are meant to carry over.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from auditors.engine import normalize, plain_logits
from auditors.methods.lime import grid_segments


def sync(device: torch.device | str) -> None:
    """Wait for queued CUDA work, so a wall-clock reading covers it."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device | str, repeat: int, warmup: int = 1) -> float:
    """Best wall time of `repeat` runs after `warmup` runs (which also size chunks and compile)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def device_label(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()})"


class ClosedFormRidge:
    """Captum `Model` interface: weighted ridge (alpha=1, unpenalised intercept) solved with numpy."""

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha
        self.coef = torch.zeros(0)

    def fit(self, train_data: DataLoader, **kwargs: object) -> None:
        xs, ys, ws = [], [], []
        for x, y, w in train_data:
            xs.append(x.double().cpu().numpy())
            ys.append(y.double().cpu().numpy().reshape(-1))
            ws.append(w.double().cpu().numpy().reshape(-1))
        x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
        xa = np.hstack([x, np.ones((len(x), 1))])
        pen = self.alpha * np.eye(xa.shape[1])
        pen[-1, -1] = 0
        beta = np.linalg.solve(xa.T @ (w[:, None] * xa) + pen, xa.T @ (w * y))
        self.coef = torch.from_numpy(beta[:-1]).float().view(1, -1)

    def representation(self) -> torch.Tensor:
        return self.coef

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.coef.T.to(x.device)


def _probability_forward(
    model: nn.Module, mean: Sequence[float], std: Sequence[float]
) -> Callable[[torch.Tensor], torch.Tensor]:
    device = next(model.parameters()).device
    mean_t, std_t = torch.tensor(mean, device=device), torch.tensor(std, device=device)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.softmax(model(normalize(x, mean_t, std_t)).float(), 1)

    return forward


def captum_lime_seconds(
    model: nn.Module,
    images: torch.Tensor,
    patch: int,
    n_samples: int,
    per_eval: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
) -> float:
    """Seconds per image of Captum's `Lime` with our features, fill, kernel and ridge (fit included)."""
    from captum.attr import Lime
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    device = next(model.parameters()).device
    forward = _probability_forward(model, mean, std)
    lime = Lime(
        forward,
        interpretable_model=ClosedFormRidge(1.0),  # type: ignore[arg-type]
        similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width=0.25),
    )
    h, w = images.shape[-2:]
    mask = grid_segments(h, w, patch)[0].to(device).view(1, 1, h, w)
    target = plain_logits(model, images, mean=mean, std=std).argmax(1)
    sync(device)
    t0 = time.perf_counter()
    for i in range(images.shape[0]):
        lime.attribute(
            images[i : i + 1].to(device),
            baselines=0.0,
            target=int(target[i]),
            feature_mask=mask,
            n_samples=n_samples,
            perturbations_per_eval=per_eval,
        )
    sync(device)
    return (time.perf_counter() - t0) / images.shape[0]


def captum_occlusion_seconds(
    model: nn.Module,
    images: torch.Tensor,
    patch: int,
    per_eval: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
) -> float:
    """Seconds per image of Captum's `Occlusion` over the P x P grid (stride P, black baseline)."""
    from captum.attr import Occlusion

    device = next(model.parameters()).device
    occlusion = Occlusion(_probability_forward(model, mean, std))
    target = plain_logits(model, images, mean=mean, std=std).argmax(1)
    sync(device)
    t0 = time.perf_counter()
    for i in range(images.shape[0]):
        occlusion.attribute(
            images[i : i + 1].to(device),
            sliding_window_shapes=(3, patch, patch),
            strides=(3, patch, patch),
            baselines=0.0,
            target=int(target[i]),
            perturbations_per_eval=per_eval,
        )
    sync(device)
    return (time.perf_counter() - t0) / images.shape[0]
