"""LIME for images on the missingness engine (Ribeiro et al. 2016, as audited by Jain et al. 2022 §4).

docs/audits.md, "LIME consistency" fixes every choice: F features (grid patches or superpixels), `n_samples` perturbations
z ~ Bernoulli(0.5)^F with row 0 all ones, evaluated through the engine with one missingness strategy;
target = probability of the clean predicted class; weight w = sqrt(exp(-d^2 / 0.25^2)) with d the
cosine distance from z to all-ones; weighted ridge (alpha=1, unpenalised intercept). Unlike the
reference `lime` package (one scikit-learn fit per image on the host), every image's ridge is solved in
one batched `torch.linalg.solve` on the model's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from auditors.engine import Strategy, masked_logits, model_device, parse_strategy, plain_logits
from auditors.engine.fills import sample_generator
from auditors.methods.catalog import FeatureKind

KERNEL_WIDTH = 0.25
RIDGE_ALPHA = 1.0
# Images are evaluated in groups of at most this many bytes of image copies; past it, one image at a
# time, so the engine shares the single image row across all its masks without copying it.
_GROUP_BYTES = 256 * 2**20


def grid_segments(height: int, width: int, patch_size: int, n_images: int = 1) -> torch.Tensor:
    """Segment ids [B,H,W] of a P x P patch grid, row-major (feature i = patch i)."""
    if height % patch_size or width % patch_size:
        raise ValueError(f"patch_size {patch_size} does not tile a {height}x{width} image")
    gh, gw = height // patch_size, width // patch_size
    ids = torch.arange(gh * gw).view(gh, gw)
    ids = ids.repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)
    return ids.unsqueeze(0).expand(n_images, -1, -1).clone()


def superpixel_segments(images: torch.Tensor, kind: Literal["slic", "quickshift"]) -> torch.Tensor:
    """Superpixel ids [B,H,W] with the parameters of docs/audits.md, "Conventions" (scikit-image)."""
    from skimage.segmentation import quickshift, slic

    out = []
    for img in images.detach().float().cpu().permute(0, 2, 3, 1).numpy().astype(np.float64):
        if kind == "slic":
            seg = slic(img, n_segments=150, compactness=10, sigma=1, start_label=0, channel_axis=-1)
        else:
            seg = quickshift(img, kernel_size=4, max_dist=200, ratio=0.2)
        # Relabel densely so ids are 0..F_b-1 whatever the segmenter returned.
        _, dense = np.unique(seg, return_inverse=True)
        out.append(torch.from_numpy(dense.reshape(seg.shape).astype(np.int64)))
    return torch.stack(out)


def segments_for(
    images: torch.Tensor, features: FeatureKind, patch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(segments [B,H,W], n_features [B]) for the chosen feature kind."""
    b, _, h, w = images.shape
    seg = grid_segments(h, w, patch_size, b) if features == "grid" else superpixel_segments(images, features)
    return seg, seg.flatten(1).amax(1) + 1


def sample_perturbations(counts: torch.Tensor, n_samples: int, seed: int, *, offset: int = 0) -> torch.Tensor:
    """z [B,S,F] bool ~ Bernoulli(0.5) over each image's own `counts[i]` features, row 0 all ones (the
    clean image); features past an image's count are always on (a constant column, coefficient 0).

    Image i's draws depend only on (seed, offset + i), `offset` being the index of images[0] in the
    dataset, so an image's explanation does not depend on the batch or shard it was computed in.
    """
    f_max = int(counts.max())
    z = torch.ones(len(counts), n_samples, f_max, dtype=torch.bool)
    for i, f in enumerate(counts.tolist()):
        gen = sample_generator(torch.device("cpu"), seed, offset + i)
        z[i, 1:, :f] = torch.rand(n_samples - 1, f, generator=gen) < 0.5
    return z


def kernel_weights(
    z: torch.Tensor, present: torch.Tensor | None = None, kernel_width: float = KERNEL_WIDTH
) -> torch.Tensor:
    """w = sqrt(exp(-d^2/width^2)), d = cosine distance of each row of z [B,S,F] to all-ones.

    For binary z, cos(z, 1) = |z| / sqrt(|z| F); an all-zero row has distance 1, as in scikit-learn.
    `present` [B,F] restricts the distance to an image's real features (superpixel padding excluded).
    """
    if present is None:
        present = torch.ones(z.shape[0], z.shape[-1], dtype=torch.bool, device=z.device)
    n_on = (z & present.unsqueeze(1)).to(torch.float64).sum(-1)
    n_feat = present.to(torch.float64).sum(-1, keepdim=True)
    d = 1.0 - torch.sqrt(n_on / n_feat)
    return torch.sqrt(torch.exp(-(d**2) / kernel_width**2))


def weighted_ridge(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float = RIDGE_ALPHA
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched weighted ridge with an unpenalised intercept: x [B,S,F], y [B,S], w [B,S].

    Same estimator as scikit-learn's `Ridge(alpha, fit_intercept=True).fit(x, y, sample_weight=w)`:
    centre x and y on their weighted means, solve (Xc^T W Xc + alpha I) beta = Xc^T W yc, then
    intercept = ybar - xbar . beta. Returns (coef [B,F], intercept [B]). A feature column that is
    constant (e.g. padding for an image with fewer superpixels) gets coefficient 0.
    """
    dt = torch.float32 if x.device.type == "mps" else torch.float64
    x, y, w = x.to(dt), y.to(dt), w.to(dt)
    wsum = w.sum(1, keepdim=True)
    xbar = (w.unsqueeze(-1) * x).sum(1, keepdim=True) / wsum.unsqueeze(-1)
    ybar = (w * y).sum(1, keepdim=True) / wsum
    xc, yc = x - xbar, y - ybar
    # A constant column centres to exactly 0; rounding in xbar would otherwise leave ~1e-31 noise.
    xc = xc.masked_fill((x == x[:, :1]).all(1, keepdim=True), 0.0)
    xw = xc * w.unsqueeze(-1)
    gram = xw.transpose(1, 2) @ xc + alpha * torch.eye(x.shape[-1], dtype=dt, device=x.device)
    rhs = (xw * yc.unsqueeze(-1)).sum(1)
    coef = torch.linalg.solve(gram, rhs)
    intercept = ybar.squeeze(1) - (xbar.squeeze(1) * coef).sum(-1)
    return coef, intercept


def feature_keep(z: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Pixel keep masks [S,H,W] for one image: pixel p is kept when z[segment(p)] is on."""
    return z[:, segments.to(z.device)]


def grid_keep(z: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Patch-grid keep masks [S,gh,gw] (the engine expands them to pixels itself)."""
    return z.view(z.shape[0], *grid)


def patch_grid(segments: torch.Tensor, patch_size: int) -> tuple[int, int] | None:
    """The patch grid when `segments` is exactly the P x P grid (the engine then expands it itself)."""
    b, h, w = segments.shape
    if h % patch_size or w % patch_size:
        return None
    return (
        (h // patch_size, w // patch_size)
        if torch.equal(segments, grid_segments(h, w, patch_size, b))
        else None
    )


def feature_logits(
    model: nn.Module,
    images: torch.Tensor,
    z: torch.Tensor,
    segments: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    strategy: str | Strategy,
    grid: tuple[int, int] | None = None,
    seed: int = 0,
    chunk_size: int | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Logits [B,M,K] of each image seen with the features switched on in z [B,M,F].

    Images are grouped so one engine call covers several of them (shared forward passes); a group of
    one passes the single image row, which the engine broadcasts over its masks without copying.
    """
    b, m, _ = z.shape
    per_image_bytes = m * images[0].numel() * 4
    group = max(1, _GROUP_BYTES // max(per_image_bytes, 1))
    out: list[torch.Tensor] = []
    for start in range(0, b, group):
        idx = list(range(start, min(b, start + group)))
        if grid is not None:
            keep = torch.cat([grid_keep(z[i], grid) for i in idx])
        else:
            keep = torch.cat([feature_keep(z[i], segments[i]) for i in idx])
        imgs = images[idx[0] : idx[0] + 1] if len(idx) == 1 else images[idx].repeat_interleave(m, 0)
        # Random fills are keyed by (image index in the dataset) * M + row, whatever the grouping.
        logits = masked_logits(
            model,
            imgs,
            keep,
            strategy,
            mean=mean,
            std=std,
            seed=seed,
            chunk_size=chunk_size,
            offset=(offset + idx[0]) * m,
        )
        out.append(logits.view(len(idx), m, -1))
    return torch.cat(out)


def _target_probs(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)


@dataclass
class LimeFit:
    """Everything one batched LIME run produced, so callers (and tests) can inspect or refit it."""

    coef: torch.Tensor  # [B,F] float32
    intercept: torch.Tensor  # [B]
    z: torch.Tensor  # [B,S,F] bool perturbations
    weights: torch.Tensor  # [B,S] kernel weights
    y: torch.Tensor  # [B,S] probability of the target class under each perturbation
    target: torch.Tensor  # [B]
    segments: torch.Tensor  # [B,H,W] feature ids
    n_features: torch.Tensor  # [B]


def lime_fit(
    model: nn.Module,
    images: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    strategy: str | Strategy = "black",
    target: torch.Tensor | None = None,
    features: FeatureKind = "grid",
    patch_size: int = 4,
    segments: torch.Tensor | None = None,
    n_samples: int = 1000,
    seed: int = 0,
    chunk_size: int | None = None,
    offset: int = 0,
) -> LimeFit:
    """Batched LIME for `images` [B,3,H,W] in [0,1]; `target` defaults to the clean predicted class.
    `offset` is the index of images[0] in the dataset: an image's perturbations follow its index.

    F is the largest feature count in the batch; an image's absent features (fewer superpixels) are a
    constant column, so their coefficient is exactly 0, and `ranking` puts them last.
    """
    device = model_device(model)
    strat = strategy if isinstance(strategy, Strategy) else parse_strategy(strategy)
    if segments is None:
        segments, n_feat = segments_for(images, features, patch_size)
    else:
        n_feat = segments.flatten(1).amax(1) + 1
    grid = patch_grid(segments, patch_size)
    f_max = int(n_feat.max())
    if target is None:
        target = plain_logits(model, images, mean=mean, std=std, chunk_size=chunk_size).argmax(1)
    target = target.to(device)
    z = sample_perturbations(n_feat, n_samples, seed, offset=offset)
    present = torch.arange(f_max).unsqueeze(0) < n_feat.unsqueeze(1)  # [B,F]
    logits = feature_logits(
        model,
        images,
        z,
        segments,
        mean=mean,
        std=std,
        strategy=strat,
        grid=grid,
        seed=seed,
        chunk_size=chunk_size,
        offset=offset,
    )
    y = _target_probs(logits, target.view(-1, 1).expand(-1, n_samples))
    zd = z.to(device)
    weights = kernel_weights(zd, present.to(device))
    coef, intercept = weighted_ridge(zd.to(torch.float64), y, weights)
    return LimeFit(coef.float(), intercept, zd, weights, y, target, segments, n_feat)


def ranking(coef: torch.Tensor, n_features: torch.Tensor | None = None) -> torch.Tensor:
    """Feature order [B,F] by coefficient, descending; absent (padding) features last."""
    c = coef.clone()
    if n_features is not None:
        absent = torch.arange(c.shape[1], device=c.device).unsqueeze(0) >= n_features.to(c.device).unsqueeze(
            1
        )
        c[absent] = -torch.inf
    return torch.argsort(c, dim=1, descending=True, stable=True)


def coefficient_map(coef: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Paint each feature's coefficient onto its pixels: [B,F] + [B,H,W] -> [B,H,W]."""
    return torch.stack([c[s.to(c.device)] for c, s in zip(coef, segments, strict=True)])
