"""Content test: where does one class carry a fixed pattern that the other classes do not?

A localized shortcut is a fixed pattern at a fixed place (a watermark, a ruler, a tag), so on the
images of its class the pixels of the mark repeat one colour far more often than the same pixels do on
the other classes. Per class and pixel, the *signature* is

    share of the class's images whose colour there falls in the class's most common colour bin
  − share of the other classes' images in that same bin,

on a coarse colour grid (two grids offset by half a bin, so a colour on a bin edge is not split). A
constant patch on a plain background scores its bias (1.0 when every image carries it, 0.3 when a
third does), an object that moves and changes colour scores near 0, and so does a background that
differs by class only in its spread. Which scores are more than chance is decided against a null
distribution: the same maximum signature with the class labels permuted (max over classes and pixels,
so the family of all pixels is corrected at once). The significant pixels, joined across gaps of one
pixel (a glyph's strokes), form components whose bounding boxes are the candidates, and whose most
common colours are the pattern the stamp test puts on the other classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

BINS = 8  # colour levels per channel: a mark survives resampling noise of ± half a bin


@dataclass
class Signature:
    """A class's fixed pattern: `box` [x, y, w, h], the pattern `rgb` [3,h,w] under `alpha` [h,w],
    its strength (mean signature over its pixels), and the images of the class that carry it."""

    class_index: int
    box: tuple[int, int, int, int]
    rgb: torch.Tensor
    alpha: torch.Tensor
    strength: float
    n_pixels: int
    carriers: torch.Tensor  # [N] bool: images of the class whose box shows the pattern
    threshold: float  # the null's 1 − alpha quantile the pixels passed


def _codes(images: torch.Tensor, offset: float) -> torch.Tensor:
    """[N,H,W] int colour-bin code of each pixel on a grid shifted by `offset` bins."""
    q = (images * BINS + offset).floor().clamp(0, BINS).long()
    return (q[:, 0] * (BINS + 1) + q[:, 1]) * (BINS + 1) + q[:, 2]


def _signature_maps(
    codes: list[torch.Tensor], groups: torch.Tensor, k: int, min_group: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """[K,H,W] best signature over the grids, and [K,H,W] the index of the grid that gave it; classes
    with fewer than `min_group` images stay at -1 (not tested, and not part of the null either)."""
    best = torch.full((k, *codes[0].shape[1:]), -1.0)
    which = torch.zeros(k, *codes[0].shape[1:], dtype=torch.long)
    for g, code in enumerate(codes):
        for c in range(k):
            own, other = code[groups == c], code[groups != c]
            if own.shape[0] < max(2, min_group) or other.shape[0] < 1:
                continue
            mode = own.mode(0).values
            sig = (own == mode).float().mean(0) - (other == mode).float().mean(0)
            better = sig > best[c]
            best[c] = torch.where(better, sig, best[c])
            which[c] = torch.where(better, g, which[c])
    return best, which


def null_threshold(
    codes: list[torch.Tensor],
    groups: torch.Tensor,
    k: int,
    *,
    n_perm: int,
    alpha: float,
    seed: int,
    min_group: int = 2,
) -> float:
    """The 1 − `alpha` quantile of the largest signature over classes and pixels when the class labels
    are permuted: a pixel above it is a class signature at family-wise level `alpha`."""
    gen = torch.Generator().manual_seed(seed)
    maxima = []
    for _ in range(n_perm):
        perm = groups[torch.randperm(groups.numel(), generator=gen)]
        maps, _ = _signature_maps(codes, perm, k, min_group)
        maxima.append(float(maps.max()))
    return float(torch.tensor(maxima).quantile(1 - alpha))


def _components(mask: torch.Tensor) -> list[torch.Tensor]:
    """Connected components of `mask` [H,W] after joining gaps of one pixel (8-connectivity on the
    mask dilated by one); each returned as the bool mask of its *undilated* pixels."""
    h, w = mask.shape
    grown = F.max_pool2d(mask.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0
    labels = torch.where(grown, torch.arange(1, h * w + 1, dtype=torch.float32).view(h, w), 0.0)
    while True:
        spread = F.max_pool2d(labels[None, None], 3, stride=1, padding=1)[0, 0] * grown
        if torch.equal(spread, labels):
            break
        labels = spread
    return [(labels == v) & mask for v in labels[mask].unique().tolist()]


def _bbox(mask: torch.Tensor) -> tuple[int, int, int, int]:
    ys, xs = mask.nonzero(as_tuple=True)
    x0, y0 = int(xs.min()), int(ys.min())
    return (x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1)


def find_signatures(
    images: torch.Tensor,
    groups: torch.Tensor,
    k: int,
    *,
    min_group: int,
    alpha: float = 0.05,
    n_perm: int = 50,
    seed: int = 0,
) -> tuple[list[Signature], dict[str, float]]:
    """The significant class signatures of `images` [N,3,H,W] in [0,1] grouped by `groups` [N].

    Classes with fewer than `min_group` images are not tested. Returns the signatures (strongest
    first) and what the null gave (`threshold`, `observed_max`, `n_perm`).
    """
    images = images.detach().float().cpu()
    groups = groups.detach().cpu()
    codes = [_codes(images, off) for off in (0.0, 0.5)]
    observed, which = _signature_maps(codes, groups, k, min_group)
    threshold = null_threshold(codes, groups, k, n_perm=n_perm, alpha=alpha, seed=seed, min_group=min_group)
    counts = torch.bincount(groups, minlength=k)
    found: list[Signature] = []
    for c in range(k):
        if int(counts[c]) < min_group:
            continue
        significant = observed[c] > threshold
        for comp in _components(significant):
            found.append(_signature(images, codes, groups, c, comp, observed[c], which[c], threshold))
    found.sort(key=lambda s: -s.strength * s.n_pixels)
    return found, {
        "threshold": round(threshold, 4),
        "observed_max": round(float(observed.max()), 4),
        "n_perm": n_perm,
    }


def _signature(
    images: torch.Tensor,
    codes: list[torch.Tensor],
    groups: torch.Tensor,
    c: int,
    comp: torch.Tensor,
    sig: torch.Tensor,
    which: torch.Tensor,
    threshold: float,
) -> Signature:
    """The pattern of one component: per pixel, the median colour of the class's images in the mode
    bin (the exact colour of the mark, not a bin centre); carriers match it on most of its pixels."""
    x, y, w, h = _bbox(comp)
    own = (groups == c).nonzero().flatten()
    alpha = comp[y : y + h, x : x + w]
    rgb = torch.zeros(3, h, w)
    match = torch.zeros(own.numel(), h, w, dtype=torch.bool)
    for g, code in enumerate(codes):
        box_codes = code[own, y : y + h, x : x + w]
        mode = box_codes.mode(0).values
        use = (which[y : y + h, x : x + w] == g) & alpha
        hit = box_codes == mode
        match |= hit & use
        pix = images[own, :, y : y + h, x : x + w]
        med = torch.where(hit[:, None], pix, torch.nan).nanmedian(0).values
        rgb = torch.where(use[None], med, rgb)
    share = match[:, alpha].float().mean(1)
    carriers = torch.zeros(groups.numel(), dtype=torch.bool)
    carriers[own[share >= 0.75]] = True
    return Signature(
        class_index=c,
        box=(x, y, w, h),
        rgb=rgb.nan_to_num(0.5),
        alpha=alpha.clone(),
        strength=round(float(sig[comp].mean()), 4),
        n_pixels=int(comp.sum()),
        carriers=carriers,
        threshold=threshold,
    )


def box_signature(
    images: torch.Tensor, groups: torch.Tensor, k: int, c: int, box: tuple[int, int, int, int]
) -> Signature:
    """Class `c`'s pattern over a whole given `box` (a hinted region with no artifact file): the most
    common colour of the class at each of its pixels, with no significance filter (the stamp test
    against its null decides)."""
    images = images.detach().float().cpu()
    groups = groups.detach().cpu()
    codes = [_codes(images, off) for off in (0.0, 0.5)]
    sig, which = _signature_maps(codes, groups, k)
    x, y, w, h = box
    comp = torch.zeros(images.shape[-2:], dtype=torch.bool)
    comp[y : y + h, x : x + w] = True
    return _signature(images, codes, groups, c, comp, sig[c], which[c], threshold=float("nan"))
