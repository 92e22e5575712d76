"""Model-side trigger reverse-engineering: the smallest mark that turns other classes into a class.

In the manner of Neural Cleanse (Wang et al. 2019) and K-Arm (Shen et al. 2021): per class k, optimise
a mask m and a pattern p so that x' = (1 - m) x + m p sends images of other classes to k, with a
penalty on |m|. A class the model reaches through a shortcut needs a far smaller mask than the others,
so the robust anomaly index (median absolute deviation) of the mask sizes flags it. Content search finds
a mark only where it sits still and keeps its colour; this asks the model, so a blended or recoloured
mark is found too. Two placements are optimised side by side for each class: `fixed` (the mark stays
where it is) and `moving` (mask and pattern are shifted by up to a quarter of the side at every step, so
only a mark that works wherever it sits nearby survives, as a tag jittered in its corner must). Where a
class's images carry the mark (`match_positions`) then tells a fixed mark from one that moves.

All classes and both placements are optimised in one batch (one forward/backward per step for all of
them). For many classes, `prescreen` first runs a few cheap steps for every class and keeps the ones
whose loss falls fastest (K-Arm's idea of spending the budget on promising arms).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from auditors.engine import model_device, normalize

PLACEMENTS = ("fixed", "moving")


@dataclass
class ReversedTrigger:
    class_index: int
    placement: str  # fixed | moving
    mask: torch.Tensor  # [H, W] in [0, 1]
    pattern: torch.Tensor  # [3, H, W] in [0, 1]
    size: float  # sum of the mask (pixels)
    success: float  # share of held-out other-class images the trigger sends to the class
    n: int  # how many held-out images that share is over

    def box(self, threshold: float = 0.5) -> tuple[int, int, int, int] | None:
        """[x, y, w, h] around the mask's strong pixels (None if no pixel passes the threshold)."""
        on = self.mask >= threshold * float(self.mask.max().clamp_min(1e-6))
        if not bool(on.any()):
            return None
        ys, xs = on.nonzero(as_tuple=True)
        x0, y0 = int(xs.min()), int(ys.min())
        return x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1

    def as_dict(self) -> dict[str, object]:
        return {
            "class_index": self.class_index,
            "placement": self.placement,
            "size": round(self.size, 2),
            "success": round(self.success, 4),
            "n": self.n,
            "box": self.box(),
        }


def anomaly_index(values: Sequence[float]) -> list[float]:
    """How far below the median each value lies, in robust standard deviations (1.4826 x MAD):
    Neural Cleanse flags a class whose index exceeds 2. Values above the median score 0."""
    v = torch.tensor([float(x) for x in values], dtype=torch.float64)
    if v.numel() < 3:
        return [0.0] * v.numel()
    med = v.median()
    mad = (v - med).abs().median() * 1.4826
    scale = float(mad) if float(mad) > 1e-9 else float(med.abs()) * 0.05 + 1e-9
    return [max(0.0, float(med - x) / scale) for x in v]


def _shift(t: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Roll each trigger [K, C, H, W] by its own (dy, dx): the mark moves as a whole."""
    return torch.stack([torch.roll(t[i], (int(dy[i]), int(dx[i])), dims=(-2, -1)) for i in range(t.shape[0])])


def _jitter(side: int, count: int, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to a quarter of the side either way: a moving arm's mark must work over a
    neighbourhood, not at one pixel (shifts over the whole image ask more than any real tag gives)."""
    r = max(1, side // 4)
    return torch.randint(-r, r + 1, (count,), generator=gen)


def _recipients(groups: torch.Tensor, k: int) -> torch.Tensor:
    return (groups != k).nonzero().flatten()


def _optimise(
    model: nn.Module,
    images: torch.Tensor,
    groups: torch.Tensor,
    arms: list[tuple[int, str]],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    steps: int,
    batch: int,
    cost: float,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Optimise every (class, placement) arm at once; returns masks [K,H,W], patterns [K,3,H,W] and
    each arm's last loss relative to its first [K] (how fast the arm is reached)."""
    device = model_device(model)
    gen = torch.Generator().manual_seed(seed)
    k_arms = len(arms)
    _, _, h, w = images.shape
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device)
    mask_logit = torch.full((k_arms, 1, h, w), -3.0, device=device, requires_grad=True)
    pattern_logit = (torch.randn(k_arms, 3, h, w, generator=gen) * 0.1).to(device).requires_grad_(True)
    opt = torch.optim.Adam([mask_logit, pattern_logit], lr=0.1)
    lam = torch.full((k_arms,), cost, device=device)
    pools = [_recipients(groups, k) for k, _ in arms]
    moving = torch.tensor([p == "moving" for _, p in arms])
    targets = torch.tensor([k for k, _ in arms], device=device).repeat_interleave(batch)
    images = images.to(device)
    loss_arm = torch.zeros(k_arms, device=device)
    first = torch.ones(k_arms)
    for step in range(steps):
        idx = torch.stack([pool[torch.randint(len(pool), (batch,), generator=gen)] for pool in pools])
        x = images[idx.flatten()].view(k_arms, batch, 3, h, w)
        m, p = torch.sigmoid(mask_logit), torch.sigmoid(pattern_logit)
        dy = _jitter(h, k_arms, gen) * moving
        dx = _jitter(w, k_arms, gen) * moving
        m, p = _shift(m, dy, dx), _shift(p, dy, dx)
        adv = (1 - m.unsqueeze(1)) * x + (m * p).unsqueeze(1)
        logits = model(normalize(adv.flatten(0, 1), mean_t, std_t))
        ce = F.cross_entropy(logits, targets, reduction="none").view(k_arms, batch)
        hit = (logits.argmax(1) == targets).float().view(k_arms, batch).mean(1)
        size = torch.sigmoid(mask_logit).flatten(1).sum(1)
        loss_arm = ce.mean(1) + lam * size / (h * w) * 100
        opt.zero_grad(set_to_none=True)
        loss_arm.sum().backward()
        if step == 0:
            first = loss_arm.detach().cpu().clamp_min(1e-6)
        opt.step()
        if step >= steps // 5:  # Neural Cleanse's schedule: tighten the mask while the attack holds
            lam = torch.where(hit.detach() >= 0.9, lam * 1.15, lam / 1.15).clamp(1e-4, 10.0)
    with torch.no_grad():
        ratio = loss_arm.detach().cpu() / first
        return torch.sigmoid(mask_logit)[:, 0].cpu(), torch.sigmoid(pattern_logit).cpu(), ratio


@torch.no_grad()
def _success(
    model: nn.Module,
    images: torch.Tensor,
    groups: torch.Tensor,
    k: int,
    mask: torch.Tensor,
    pattern: torch.Tensor,
    moving: bool,
    mean: Sequence[float],
    std: Sequence[float],
    seed: int,
) -> tuple[float, int]:
    """Share of other-class images sent to k by the trigger (at a random place per image if moving)."""
    device = model_device(model)
    rec = _recipients(groups, k)
    if rec.numel() == 0:
        return 0.0, 0
    x = images[rec].to(device)
    _, _, h, w = x.shape
    m, p = mask.to(device).expand(x.shape[0], 1, h, w), pattern.to(device).expand(x.shape[0], 3, h, w)
    if moving:
        gen = torch.Generator().manual_seed(seed + 1)
        dy, dx = _jitter(h, x.shape[0], gen), _jitter(w, x.shape[0], gen)
        m, p = _shift(m.contiguous(), dy, dx), _shift(p.contiguous(), dy, dx)
    adv = (1 - m) * x + m * p
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device)
    pred = model(normalize(adv, mean_t, std_t)).argmax(1)
    return float((pred == k).float().mean()), int(rec.numel())


def prescreen(
    model: nn.Module,
    images: torch.Tensor,
    groups: torch.Tensor,
    classes: Sequence[int],
    *,
    keep: int,
    mean: Sequence[float],
    std: Sequence[float],
    steps: int = 40,
    batch: int = 8,
    seed: int = 0,
) -> list[int]:
    """The `keep` classes whose trigger loss falls furthest (relative to where it started) in a few
    cheap steps (K-Arm's pre-screen): a class reached through a shortcut is reached early."""
    cls = [int(c) for c in classes]
    if len(cls) <= keep:
        return cls
    arms = [(c, "fixed") for c in cls]
    _, _, loss = _optimise(
        model, images, groups, arms, mean=mean, std=std, steps=steps, batch=batch, cost=1e-3, seed=seed
    )
    order = torch.argsort(loss)[:keep].tolist()
    return sorted(cls[i] for i in order)


def reverse_engineer(
    model: nn.Module,
    images: torch.Tensor,
    groups: torch.Tensor,
    classes: Sequence[int],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    steps: int = 120,
    batch: int = 16,
    cost: float = 1e-2,
    placements: Sequence[str] = PLACEMENTS,
    seed: int = 0,
) -> list[ReversedTrigger]:
    """Per class in `classes` and placement, the smallest mask + pattern that sends images of the other
    groups (`groups`: labels or predictions) to it; success is measured on all other-class images."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N,3,H,W]; got {tuple(images.shape)}")
    bad = [p for p in placements if p not in PLACEMENTS]
    if bad:
        raise ValueError(f"unknown placement(s) {bad}; available: {', '.join(PLACEMENTS)}")
    arms = [(int(k), p) for k in classes for p in placements if _recipients(groups, int(k)).numel()]
    if not arms:
        return []
    was_training = model.training
    model.eval()
    params = [q for q in model.parameters() if q.requires_grad]
    for q in params:
        q.requires_grad_(False)
    try:
        masks, patterns, _ = _optimise(
            model, images, groups, arms, mean=mean, std=std, steps=steps, batch=batch, cost=cost, seed=seed
        )
        out = []
        for i, (k, p) in enumerate(arms):
            ok, n = _success(model, images, groups, k, masks[i], patterns[i], p == "moving", mean, std, seed)
            out.append(ReversedTrigger(k, p, masks[i], patterns[i], float(masks[i].sum()), ok, n))
        return out
    finally:
        for q in params:
            q.requires_grad_(True)
        model.train(was_training)


def match_positions(images: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Per image, how well the masked pattern matches at every place ([N, H, W], higher = closer; the
    pattern's strong part is cropped and slid over the image): where a class's images carry the mark,
    for a heat map of its positions and the zone a moving mark occupies."""
    on = mask >= 0.5 * float(mask.max().clamp_min(1e-6))
    if not bool(on.any()):
        return torch.zeros(images.shape[0], *images.shape[-2:])
    ys, xs = on.nonzero(as_tuple=True)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    m = mask[y0:y1, x0:x1].float()
    p = pattern[:, y0:y1, x0:x1].float()
    kh, kw = m.shape
    x = images.float().cpu()
    # weighted SSD = sum m (x - p)^2 = sum m x^2 - 2 sum m p x + sum m p^2, as three convolutions
    w_m = m.expand(3, 1, kh, kw).contiguous()
    xx = F.conv2d(x * x, w_m, groups=3).sum(1)
    xp = F.conv2d(x, (m * p).unsqueeze(1), groups=3).sum(1)
    pp = float((m * p * p).sum())
    ssd = (xx - 2 * xp + pp) / float(m.sum() * 3)
    score = -ssd
    out = torch.full((x.shape[0], x.shape[-2], x.shape[-1]), float(score.min()) if score.numel() else 0.0)
    out[:, : score.shape[-2], : score.shape[-1]] = score  # top-left corner of the match
    return out
