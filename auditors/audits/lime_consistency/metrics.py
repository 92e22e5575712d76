"""Agreement statistics and artifacts of the LIME consistency audit (docs/audits.md, "LIME consistency").

Rankings are [B,F] feature orders (best first); every statistic is averaged over images so it lands in
the report as plain floats and lists.
"""

from __future__ import annotations

from itertools import combinations

import torch

from auditors.methods.per_image_random import per_image_uniform

_RANDOM_ORDER_SALT = 0x0DE7


def curve_at(ks: list[int], values: list[float], k: int) -> float:
    """The curve's value at k, or at its last k when the image has fewer features than k."""
    return float(values[min(k, ks[-1]) - ks[0]])


def random_rankings(n_features: torch.Tensor, seed: int, positions: range | None = None) -> torch.Tensor:
    """A uniform random order of each image's present features, padding features last: [B,F]. Image
    i's order depends only on (seed, positions[i]), its place in the audit's pick, so a shard draws
    the same orders as a single run."""
    f_max = int(n_features.max())
    rows = positions if positions is not None else range(len(n_features))
    keys = torch.from_numpy(per_image_uniform(rows, f_max, seed=seed, salt=_RANDOM_ORDER_SALT))
    keys[torch.arange(f_max).unsqueeze(0) >= n_features.cpu().unsqueeze(1)] = 2.0
    return torch.argsort(keys, dim=1, stable=True)


def _positions(order: torch.Tensor) -> torch.Tensor:
    """Inverse permutation: pos[b, f] = rank of feature f in image b's order."""
    pos = torch.empty_like(order)
    pos.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order).contiguous())
    return pos


def topk_jaccard_curve(orders: list[torch.Tensor], ks: list[int], *, per_image: bool = False) -> list[float]:
    """Mean pairwise Jaccard of the top-K sets of several rankings, for each K in `ks`.

    With `per_image`, `ks` must hold one K and the result is one value per image (mean over pairs).
    """
    pos = torch.stack([_positions(o.cpu()) for o in orders])  # [C,B,F]
    k_t = torch.tensor(ks).view(-1, 1, 1, 1)
    member = pos.unsqueeze(0) < k_t  # [K,C,B,F]
    vals = []
    for a, b in combinations(range(len(orders)), 2):
        inter = (member[:, a] & member[:, b]).sum(-1).float()
        union = (member[:, a] | member[:, b]).sum(-1).float().clamp_min(1)
        vals.append(inter / union)  # [K,B]
    jac = torch.stack(vals).mean(0)
    if per_image:
        return [float(v) for v in jac[0]]
    return [float(v) for v in jac.mean(1)]


def spearman(a: torch.Tensor, b: torch.Tensor, n_features: torch.Tensor) -> list[float]:
    """Spearman rank correlation of two coefficient vectors per image, over its present features."""
    out = []
    for ca, cb, n in zip(a.cpu(), b.cpu(), n_features.tolist(), strict=True):
        ra = torch.argsort(torch.argsort(ca[:n])).double()
        rb = torch.argsort(torch.argsort(cb[:n])).double()
        ra, rb = ra - ra.mean(), rb - rb.mean()
        den = float(ra.norm() * rb.norm())
        out.append(float((ra * rb).sum()) / den if den > 0 else 0.0)
    return out
