"""Marks that move: a small pattern a class's images carry *somewhere*, at a different place in each.

A hospital token in another corner of every X-ray, a tag jittered by a few pixels, a ruler of changing
start: the content search (`content`) asks whether a class repeats one colour *at a pixel*, which a mark
that moves does not. Here each image is a bag of its 3 x 3 patches, each coded on a coarse colour grid
(`LEVELS` per channel), and the question is which codes a class's images contain anywhere far more often
than the other classes' images do:

    share of the class's images containing the code  -  share of the other classes' images,

judged against the largest such difference over classes and codes when the class labels are permuted
(family-wise, like the content null). A significant code with some structure (two colour levels at
least: a flat patch is a colour, the colour tests' business) is grown into the mark around it: the
class's images that contain it are aligned on it, and the pixels around it that keep one colour across
most of them form the mark (its pattern and shape). Its positions in those images give the zone it
occupies and a heat map of where it sits; a mark that always sits at one place is the content search's
and is left to it. Each moving mark is then a candidate for the stamp test (put on other classes'
images at the places the class carries it) and the removal test (taken off the class's images where
they carry it), against the same nulls as a fixed mark.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

LEVELS = 4  # colour levels per channel of a code: coarse, so resampling noise keeps a mark's code
CODE = 3  # the code's side in pixels
GROW = 4  # how far (pixels) the mark may extend beyond its code on each side
MAX_SIDE = 96  # larger images are searched at this side (positions are scaled back)
KEEP = 0.75  # share of aligned images that must agree on a pixel's colour bin for it to be the mark's
MIN_SPREAD = 3  # positions further apart than this (pixels, either axis) make a mark that moves


@dataclass
class Motif:
    """A class's moving mark: `rgb` [3,h,w] under `alpha` [h,w]; `positions` its top-left corner in each
    carrier (model-input pixels); `carriers` [N] the images that carry it; `spans` per carrier the box
    over every place its code occurs there (a ruler's ticks repeat along it: the span is the whole
    ruler, where the mark is one stretch of it)."""

    class_index: int
    rgb: torch.Tensor
    alpha: torch.Tensor
    positions: list[tuple[int, int]]
    carriers: torch.Tensor
    share: float = 0.0  # of the class's images containing its code
    others_share: float = 0.0
    threshold: float = 0.0
    spans: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.alpha.shape[1]), int(self.alpha.shape[0])

    def boxes(self) -> list[tuple[int, int, int, int]]:
        w, h = self.size
        return [(x, y, w, h) for x, y in self.positions]

    @property
    def zone(self) -> tuple[int, int, int, int]:
        """The union of the mark's boxes: the zone it occupies."""
        w, h = self.size
        xs, ys = [p[0] for p in self.positions], [p[1] for p in self.positions]
        return (min(xs), min(ys), max(xs) + w - min(xs), max(ys) + h - min(ys))


def _scaled(images: torch.Tensor) -> tuple[torch.Tensor, float]:
    side = max(images.shape[-2:])
    if side <= MAX_SIDE:
        return images, 1.0
    f = MAX_SIDE / side
    size = (max(CODE, round(images.shape[-2] * f)), max(CODE, round(images.shape[-1] * f)))
    return F.interpolate(images, size=size, mode="area"), f


def _codes(images: torch.Tensor) -> torch.Tensor:
    """[N, L] the code of every 3 x 3 patch (row-major positions), and -1 for flat patches."""
    q = (images * LEVELS).floor().clamp(0, LEVELS - 1)
    patches = F.unfold(q, CODE)  # [N, 3*CODE*CODE, L]
    base = (LEVELS ** torch.arange(patches.shape[1], dtype=torch.float64)).view(1, -1, 1)
    codes = (patches.double() * base).sum(1).long()
    flat = patches.amax(1) == patches.amin(1)
    return torch.where(flat, torch.full_like(codes, -1), codes)


def _differences(
    img: torch.Tensor, inv: torch.Tensor, n_codes: int, groups: torch.Tensor, k: int, min_group: int
) -> torch.Tensor:
    """[K, codes]: per class, the share of its images containing each code minus the others' share."""
    out = torch.full((k, n_codes), -1.0)
    for c in range(k):
        own_images = int((groups == c).sum())
        others = groups.numel() - own_images
        if own_images < min_group or others < 1:
            continue
        own = (groups[img] == c).float()
        mine = torch.zeros(n_codes).index_add_(0, inv, own) / own_images
        theirs = torch.zeros(n_codes).index_add_(0, inv, 1 - own) / others
        out[c] = mine - theirs
    return out


def find_motifs(
    images: torch.Tensor,
    groups: torch.Tensor,
    k: int,
    *,
    min_group: int,
    alpha: float,
    n_perm: int,
    seed: int,
    max_per_class: int = 2,
) -> tuple[list[Motif], dict[str, float]]:
    """The significant moving marks of `images` [N,3,H,W] in [0,1] grouped by `groups` [N], strongest
    first, and what the null gave."""
    images = images.detach().float().cpu()
    groups = groups.detach().cpu()
    small, f = _scaled(images)
    codes = _codes(small)
    width = small.shape[-1] - CODE + 1
    present = [torch.unique(row[row >= 0]) for row in codes]
    img = torch.cat([torch.full((p.numel(),), i, dtype=torch.long) for i, p in enumerate(present)])
    values, inv, seen = torch.unique(torch.cat(present), return_inverse=True, return_counts=True)
    # A code in one image only is no mark (and on large textured images most codes are): dropping them
    # whatever the labels keeps the permutation test exact and the search fast.
    shared = seen[inv] >= 2
    img, values = img[shared], values[seen >= 2]
    inv = torch.cumsum(seen >= 2, 0)[inv[shared]] - 1
    if values.numel() == 0:  # no code repeats in two images: nothing can be a mark
        return [], {"threshold": 1.0, "observed_max": 0.0, "n_perm": n_perm}
    observed = _differences(img, inv, values.numel(), groups, k, min_group)
    gen = torch.Generator().manual_seed(seed)
    maxima = [
        float(
            _differences(
                img, inv, values.numel(), groups[torch.randperm(groups.numel(), generator=gen)], k, min_group
            ).max()
        )
        for _ in range(n_perm)
    ]
    threshold = float(torch.tensor(maxima).quantile(1 - alpha)) if maxima else 1.0
    found: list[Motif] = []
    for c in range(k):
        order = observed[c].argsort(descending=True)
        used = torch.zeros(groups.numel(), dtype=torch.bool)
        kept = 0
        for j in order.tolist():
            if kept >= max_per_class or float(observed[c, j]) <= threshold:
                break
            code = int(values[j])
            own = (groups == c) & (codes == code).any(1)
            if int((own & used).sum()) >= 0.5 * int(own.sum()):
                continue  # the same mark as one already grown (another of its codes)
            motif = _grow(images, small, codes, code, own, c, f, width)
            used |= own
            if motif is None:
                continue
            kept += 1
            others = (groups != c) & (codes == code).any(1)
            motif.share = round(float(own.sum()) / max(1, int((groups == c).sum())), 4)
            motif.others_share = round(float(others.sum()) / max(1, int((groups != c).sum())), 4)
            motif.threshold = round(threshold, 4)
            found.append(motif)
    found.sort(key=lambda m: -(m.share - m.others_share))
    return found, {
        "threshold": round(threshold, 4),
        "observed_max": round(float(observed.max()), 4),
        "n_perm": n_perm,
    }


def _grow(
    images: torch.Tensor,
    small: torch.Tensor,
    codes: torch.Tensor,
    code: int,
    carriers: torch.Tensor,
    c: int,
    f: float,
    width: int,
) -> Motif | None:
    """The mark around `code` in its carriers (aligned on the code's first place in each), or None when
    it does not move (the content search's) or nothing around it agrees."""
    idx = carriers.nonzero().flatten()
    places = [int((codes[i] == code).nonzero()[0]) for i in idx.tolist()]
    ys, xs = [p // width for p in places], [p % width for p in places]
    if max(xs) - min(xs) <= MIN_SPREAD and max(ys) - min(ys) <= MIN_SPREAD:
        return None
    h, w = small.shape[-2:]
    side = CODE + 2 * GROW
    crops = torch.full((idx.numel(), 3, side, side), float("nan"))
    for n, (i, x, y) in enumerate(zip(idx.tolist(), xs, ys, strict=True)):
        x0, y0 = x - GROW, y - GROW
        sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
        crops[n, :, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = small[i, :, sy0:sy1, sx0:sx1]
    q = (crops * LEVELS).floor().clamp(0, LEVELS - 1)
    key = (q[:, 0] * LEVELS + q[:, 1]) * LEVELS + q[:, 2]  # [n, side, side], nan outside the image
    valid = ~key.isnan()
    mode = torch.where(valid, key, -1.0).mode(0).values
    agree = ((key == mode) & valid).float().sum(0) / idx.numel()
    mask = agree >= KEEP
    mask[GROW : GROW + CODE, GROW : GROW + CODE] = True
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    top, left = int(rows.min()), int(cols.min())
    mask = mask[top : int(rows.max()) + 1, left : int(cols.max()) + 1]
    hit = (key == mode) & valid
    rgb = torch.where(hit[:, None], crops, torch.nan).nanmedian(0).values[:, top:, left:]
    rgb = rgb[:, : mask.shape[0], : mask.shape[1]].nan_to_num(0.5)
    positions = [(x - GROW + left, y - GROW + top) for x, y in zip(xs, ys, strict=True)]
    spans = [
        _span(codes[i], code, width, (left - GROW, top - GROW), mask.shape, (h, w)) for i in idx.tolist()
    ]
    if f != 1.0:  # back to model-input pixels
        big_h, big_w = images.shape[-2:]
        rgb = F.interpolate(rgb[None], scale_factor=1 / f, mode="nearest")[0]
        mask = F.interpolate(mask[None, None].float(), scale_factor=1 / f, mode="nearest")[0, 0] > 0
        positions = [(round(x / f), round(y / f)) for x, y in positions]
        spans = [
            _clip((round(x / f), round(y / f), round(bw / f), round(bh / f)), big_h, big_w)
            for x, y, bw, bh in spans
        ]
        h, w = big_h, big_w
    positions = [(min(max(0, x), w - mask.shape[1]), min(max(0, y), h - mask.shape[0])) for x, y in positions]
    full = torch.zeros(carriers.numel(), dtype=torch.bool)
    full[idx] = True
    return Motif(c, rgb, mask, positions, full, spans=spans)


def _clip(box: tuple[int, int, int, int], height: int, width: int) -> tuple[int, int, int, int]:
    x, y, bw, bh = box
    x0, y0 = min(max(0, x), width - 1), min(max(0, y), height - 1)
    return (x0, y0, max(1, min(width, x + bw) - x0), max(1, min(height, y + bh) - y0))


def _span(
    codes: torch.Tensor,
    code: int,
    width: int,
    offset: tuple[int, int],
    shape: tuple[int, ...],
    size: tuple[int, int],
) -> tuple[int, int, int, int]:
    """The box over the mark (of `shape`, at `offset` from its code) at every place `code` occurs in one
    image's `codes`, clipped to the image (`size`: height, width)."""
    places = (codes == code).nonzero().flatten()
    xs, ys = places % width + offset[0], places // width + offset[1]
    x0, y0 = int(xs.min()), int(ys.min())
    x1, y1 = int(xs.max()) + shape[1], int(ys.max()) + shape[0]
    return _clip((x0, y0, x1 - x0, y1 - y0), *size)


def heat_map(motif: Motif, height: int, width: int, cells: int = 8) -> list[list[int]]:
    """How many carriers hold the mark in each cell of a `cells` x `cells` grid (by its centre)."""
    grid = [[0] * cells for _ in range(cells)]
    w, h = motif.size
    for x, y in motif.positions:
        cx, cy = min(cells - 1, (x + w // 2) * cells // width), min(cells - 1, (y + h // 2) * cells // height)
        grid[cy][cx] += 1
    return grid
