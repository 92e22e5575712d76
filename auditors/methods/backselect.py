"""BackSelect and sufficient input subsets (Carter et al., AISTATS 2019 §3; NeurIPS 2021 §3).

f = softmax probability of the clean predicted class; a feature is one pixel with all its channels;
a removed pixel takes the mask value of a pixel fill (default `mean`, 0 after normalisation).

- `backselect`: exact BackSelect. Each step removes the remaining pixel whose removal leaves f highest;
  every candidate of a step (for every image) goes through the engine in one batched call, so 32x32
  costs 1024 steps of shrinking batches (sum k = 524,800 forward passes per image).
- `gradient_backselect`: Batched Gradient BackSelect (NeurIPS 2021 §3) for large images: take df/dm of
  a soft mask and remove the remaining pixels with the smallest gradient, a step at a time. f is only
  measured between steps, so an SIS size is known to within one step: `step_sizes` keeps every step at
  most 1% of the pixels and shrinks the steps with the subset (a tenth of what is left), so small SIS,
  the ones that matter, are measured almost pixel by pixel.
- `sis_from_order`: walk the removal order backwards until f >= tau; what is left is the SIS.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from auditors.engine import (
    EngineError,
    Strategy,
    apply_pixel_fill,
    autocast,
    masked_logits,
    model_device,
    normalize,
    parse_strategy,
    plain_logits,
)

Progress = Callable[[int, int], None]
# Candidate batches of several images are built by copying the images; above this many bytes the
# step runs image by image so the engine shares each image row without copying.
_COPY_BYTES = 64 * 2**20


@dataclass
class BackSelectResult:
    """order[b, i]: the i-th pixel removed (flat index y*W+x; the last one removed matters most).
    f_after[b, i]: f once order[b, :i+1] are removed; -inf where a batched step did not measure it."""

    order: torch.Tensor  # [B,n] int64
    f_after: torch.Tensor  # [B,n] float32
    f_full: torch.Tensor  # [B] f on the clean image
    target: torch.Tensor  # [B] the class f refers to
    method: str

    @property
    def f_masked(self) -> torch.Tensor:
        """f with every pixel removed (the check docs/audits.md, "SIS and overinterpretation" asks for before trusting an SIS)."""
        return self.f_after[:, -1]


def _probs(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), -1).gather(-1, target.view(-1, 1)).squeeze(-1)


def _targets(
    model: nn.Module, images: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    return plain_logits(model, images, mean=mean, std=std).argmax(1)


def backselect(
    model: nn.Module,
    images: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    strategy: str | Strategy = "mean",
    target: torch.Tensor | None = None,
    chunk_size: int | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    offset: int = 0,
) -> BackSelectResult:
    """Exact BackSelect for `images` [B,3,H,W] in [0,1], all B images advanced one pixel per step.

    A random fill (noise, random_color) draws candidate j of image `offset + i` at a step with r
    candidates from key (offset + i) * r + j: the same whether the image runs alone or in a batch."""
    device = model_device(model)
    b, _, h, w = images.shape
    n = h * w
    target = (_targets(model, images, mean, std) if target is None else target).to(device)
    f_full = _probs(plain_logits(model, images, mean=mean, std=std), target)
    remaining = torch.ones(b, n, dtype=torch.bool, device=device)
    order = torch.empty(b, n, dtype=torch.long, device=device)
    f_after = torch.empty(b, n, device=device)
    rows = torch.arange(b, device=device)
    imgs_dev = images.to(device)
    for step in range(n):
        r = n - step
        cand = remaining.nonzero()[:, 1].view(b, r)  # row-major: each image's remaining pixels
        keep = remaining.unsqueeze(1).expand(b, r, n).clone()
        keep.scatter_(2, cand.unsqueeze(-1), False)  # candidate j of image i: remove one more pixel
        keep = keep.view(b, r, h, w)
        kw: dict[str, Any] = dict(mean=mean, std=std, chunk_size=chunk_size, seed=seed)
        if b == 1 or b * r * images[0].numel() * 4 > _COPY_BYTES:
            f = torch.stack(
                [
                    _probs(
                        masked_logits(
                            model, imgs_dev[i : i + 1], keep[i], strategy, offset=(offset + i) * r, **kw
                        ),
                        target[i].expand(r),
                    )
                    for i in range(b)
                ]
            )
        else:
            logits = masked_logits(
                model,
                imgs_dev.repeat_interleave(r, 0),
                keep.view(b * r, h, w),
                strategy,
                offset=offset * r,
                **kw,
            )
            f = _probs(logits, target.repeat_interleave(r)).view(b, r)
        best = f.argmax(1)
        chosen = cand[rows, best]
        remaining[rows, chosen] = False
        order[:, step] = chosen
        f_after[:, step] = f[rows, best]
        if progress is not None:
            progress(step + 1, n)
    return BackSelectResult(order, f_after, f_full, target, "exact")


# The largest step, as a share of all pixels: the accuracy of a reported SIS size.
RESOLUTION = 0.01
# The largest step, as a share of the pixels still present: finer steps as the subset shrinks.
SHRINK = 0.1


def step_sizes(n: int, k: int, *, resolution: float = RESOLUTION, shrink: float = SHRINK) -> list[int]:
    """How many pixels each gradient step removes, in order; they sum to `n`.

    A step removes at most `k` pixels, at most `resolution` of all `n` pixels (so the SIS size, read off
    between steps, is accurate to that share) and at most `shrink` of those still present (so an SIS of
    a few pixels is resolved to a pixel or two): ~ n/min(k, resolution n) + ln(n)/shrink steps.
    """
    cap = max(1, min(k, math.floor(resolution * n)))
    out: list[int] = []
    remaining = n
    while remaining > 0:
        step = max(1, min(cap, math.ceil(shrink * remaining)))
        out.append(step)
        remaining -= step
    return out


def gradient_backselect(
    model: nn.Module,
    images: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    strategy: str | Strategy = "mean",
    target: torch.Tensor | None = None,
    k: int = 100,
    resolution: float = RESOLUTION,
    batch_size: int = 64,
    progress: Progress | None = None,
    seed: int = 0,
    offset: int = 0,
) -> BackSelectResult:
    """Batched Gradient BackSelect: per step remove the remaining pixels with the smallest df/dm
    (first order: removing pixel i changes f by about -df/dm_i, so those leave f highest), at most `k`
    per step and fewer as the subset shrinks (`step_sizes`). A random fill of image i is keyed by
    (seed, offset + i), whatever the batch."""
    strat = strategy if isinstance(strategy, Strategy) else parse_strategy(strategy)
    if not strat.is_pixel_fill:
        raise EngineError(f"gradient BackSelect needs a pixel fill (a soft mask); got {strat}")
    device = model_device(model)
    target = (_targets(model, images, mean, std) if target is None else target).to(device)
    outs = [
        _gradient_batch(
            model,
            images[s : s + batch_size].to(device),
            target[s : s + batch_size],
            mean,
            std,
            strat,
            step_sizes(images.shape[-2] * images.shape[-1], k, resolution=resolution),
            seed,
            offset + s,
        )
        for s in range(0, images.shape[0], batch_size)
    ]
    if progress is not None:
        progress(1, 1)
    f_full = _probs(plain_logits(model, images, mean=mean, std=std), target)
    return BackSelectResult(
        torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs]), f_full, target, "gradient"
    )


def _gradient_batch(
    model: nn.Module,
    images: torch.Tensor,
    target: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    strat: Strategy,
    steps: list[int],
    seed: int,
    offset: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    device = images.device
    b, _, h, w = images.shape
    n = h * w
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device)
    remaining = torch.ones(b, n, dtype=torch.bool, device=device)
    order = torch.empty(b, n, dtype=torch.long, device=device)
    f_after = torch.full((b, n), -torch.inf, device=device)
    rows = torch.arange(b, device=device).unsqueeze(1)

    def f_of(m: torch.Tensor) -> torch.Tensor:
        x = apply_pixel_fill(strat, images, m.view(b, 1, h, w), mean=mean_t, seed=seed, offset=offset)
        with autocast(device):
            return _probs(model(normalize(x, mean_t, std_t)), target)

    done = 0
    for kk in steps:
        m = remaining.float().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(f_of(m).sum(), m)
        g = grad.float().masked_fill(~remaining, torch.inf)
        idx = torch.topk(g, kk, dim=1, largest=False, sorted=True).indices
        order[:, done : done + kk] = idx
        remaining[rows, idx] = False
        done += kk
        with torch.no_grad():
            f_after[:, done - 1] = f_of(remaining.float())
    return order, f_after


def sis_from_order(result: BackSelectResult, tau: float = 0.99) -> list[torch.Tensor | None]:
    """The SIS of each image: the shortest tail of the removal order that keeps f >= tau.

    Walks backwards from "everything removed"; the first i with f_after[i] >= tau leaves
    order[i+1:] as the SIS (empty when even the fully masked input is confident). None when
    f(x) < tau: the image has no SIS at this threshold.
    """
    out: list[torch.Tensor | None] = []
    for order, f_after, f_full in zip(result.order, result.f_after, result.f_full, strict=True):
        if float(f_full) < tau:
            out.append(None)
            continue
        ok = (f_after >= tau).nonzero()
        start = int(ok[-1]) + 1 if len(ok) else 0
        out.append(order[start:].clone())
    return out


def subset_keep(indices: Sequence[torch.Tensor], height: int, width: int) -> torch.Tensor:
    """Pixel keep masks [B,H,W] that keep only the given flat pixel indices of each image."""
    keep = torch.zeros(len(indices), height * width, dtype=torch.bool)
    for i, idx in enumerate(indices):
        keep[i, idx.cpu()] = True
    return keep.view(-1, height, width)


def subset_size(n: int, fraction: float) -> int:
    """How many of `n` pixels a `fraction` subset keeps: ceil(fraction * n), at least one."""
    return max(1, math.ceil(fraction * n - 1e-9))


def backselect_subset(result: BackSelectResult, fraction: float) -> list[torch.Tensor]:
    """The last ceil(fraction * n) pixels of each removal order: the 5% subsets of NeurIPS 2021 §4."""
    keep_n = subset_size(result.order.shape[1], fraction)
    return [o[-keep_n:].clone() for o in result.order]
