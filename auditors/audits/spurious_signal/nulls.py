"""Counterfactual tests judged against null distributions drawn on the same images.

A fixed flip-rate threshold mistakes a shortcut used by a third of a class for no shortcut, and a model
that flips on anything pasted anywhere for a shortcut. Each test here pairs every image with a null
twin that differs only in *what* is put at the box (or *which* box is removed), so the effect is the
paired difference and its p-value comes from random sign flips of those differences
(`auditors.stats.sign_flip_p_value`):

- stamp: the class's pattern at its box vs the same pixels copied from a random image of another class;
- removal: the box removed (engine strategy) vs random boxes of the same size, on the class's images
  that carry the pattern; its paired differences are taken in log-odds of p(class) (`log_odds`), where
  a confident image's lost evidence shows, and reported in p(class);
- similar: the mark vs a similar mark (`matched_test`), a whole-image change vs noise of the same
  energy (`similar_change`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from auditors.engine import masked_logits, plain_logits
from auditors.stats import mean_estimate, proportion, sign_flip_p_value

Box = tuple[int, int, int, int]


@dataclass
class Probe:
    """The model as the tests see it: probabilities of clean, edited and partly removed images."""

    model: nn.Module
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    strategy: str
    seed: int

    def probs(self, images: torch.Tensor) -> torch.Tensor:
        return plain_logits(self.model, images, mean=self.mean, std=self.std).softmax(1)

    def removed_probs(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        out = masked_logits(
            self.model, images, keep, self.strategy, mean=self.mean, std=self.std, seed=self.seed
        )
        return out.softmax(1)


def paste(images: torch.Tensor, box: Box, rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """A copy of `images` [N,3,H,W] with `rgb` ([3,h,w], or [N,3,h,w] one per image) under `alpha`."""
    x, y, w, h = box
    out = images.clone()
    region = out[:, :, y : y + h, x : x + w]
    src = rgb.to(images.device)
    if src.dim() == 3:
        src = src.unsqueeze(0)
    region.copy_(torch.where(alpha.to(images.device).view(1, 1, h, w), src, region))
    return out


def paste_each(
    images: torch.Tensor, boxes: Sequence[Box], rgb: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """`paste` with a box per image (a mark that moves); `rgb` [3,h,w] or one per image [N,3,h,w]."""
    out = images.clone()
    for b in dict.fromkeys(boxes):
        idx = [i for i, other in enumerate(boxes) if other == b]
        out[idx] = paste(images[idx], b, rgb if rgb.dim() == 3 else rgb[idx], alpha)
    return out


def _per_image(box: Box | Sequence[Box], n: int) -> list[Box]:
    """One box per image: `box` itself for each, or the given list (a moving mark)."""
    if isinstance(box[0], int):
        return [cast(Box, tuple(cast(Box, box)))] * n
    return [cast(Box, tuple(b)) for b in cast(Sequence[Box], box)]


def stamp_test(
    probe: Probe,
    recipients: torch.Tensor,
    donors: torch.Tensor,
    target: int,
    box: Box | Sequence[Box],
    rgb: torch.Tensor,
    alpha: torch.Tensor,
    *,
    seed: int,
) -> dict[str, Any]:
    """Does the pattern at `box` move `recipients` (images of other classes) toward `target` more than
    either null does: the same pixels copied from random `donors` (other-class content at that place),
    and a solid patch of a random colour in the pattern's shape (any mark there)?

    The second null separates a model that learned *this* mark from one that reacts to any patch at
    that place: a model trained without the mark moves toward a class about as much for a patch of any
    colour as for the mark itself, and must not be flagged for it.

    Returns `flip` (share predicted `target` once stamped, Wilson interval, the larger one-sided p of
    the paired gains in p(target) against the two nulls), `null_flip` (the null that moved recipients
    more), `gain` (mean paired gain over that null, with its interval), `nulls` (both), and the stamped
    probabilities for the examples.
    """
    n = int(recipients.shape[0])
    boxes = _per_image(box, n)
    _, _, w, h = boxes[0] if boxes else (0, 0, 0, 0)
    gen = torch.Generator().manual_seed(seed)
    null_content = _other_content(donors, boxes, gen)
    solid = torch.rand(n, 3, 1, 1, generator=gen).expand(-1, -1, h, w)
    stamped = probe.probs(paste_each(recipients, boxes, rgb, alpha))
    tested: dict[str, dict[str, Any]] = {}
    for name, content in (("other_content", null_content), ("solid_colour", solid)):
        null = probe.probs(paste_each(recipients, boxes, content, alpha))
        gain = (stamped[:, target] - null[:, target]).cpu().numpy().astype(np.float64)
        tested[name] = {
            "gain": gain,
            "p": sign_flip_p_value(gain, seed=seed),
            "flip": proportion(int((null.argmax(1) == target).sum()), n),
        }
    strongest = max(tested.values(), key=lambda t: (t["flip"].value, -float(np.mean(t["gain"]))))
    p = max(t["p"] for t in tested.values())
    flip = proportion(int((stamped.argmax(1) == target).sum()), n)
    null_flip = strongest["flip"]
    return {
        "flip": {**flip.as_dict(), "p_value": p, "null_mean": round(null_flip.value, 6)},
        "null_flip": null_flip.as_dict(),
        "gain": mean_estimate(strongest["gain"], seed=seed).as_dict(),
        "nulls": {name: {"flip": t["flip"].as_dict(), "p_value": t["p"]} for name, t in tested.items()},
        "p_value": p,
        "n": n,
        "stamped_probs": stamped.detach().cpu(),
    }


def _other_content(donors: torch.Tensor, boxes: list[Box], gen: torch.Generator) -> torch.Tensor:
    """[N,3,h,w]: for each box, the pixels a random donor has there (other-class content)."""
    _, _, w, h = boxes[0] if boxes else (0, 0, 0, 0)
    pick = torch.randint(0, donors.shape[0], (len(boxes),), generator=gen)
    if not boxes:
        return donors[:0, :, :h, :w]
    return torch.stack(
        [donors[int(pick[i]), :, y : y + h, x : x + w] for i, (x, y, _, _) in enumerate(boxes)]
    )


def _moments(x: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel, the mean and standard deviation of `x` [N,3,h,w] over the mark's shape."""
    m = alpha.to(x.dtype).view(1, 1, *alpha.shape)
    k = m.sum().clamp_min(1.0)
    mean = (x * m).sum((-2, -1), keepdim=True) / k
    sd = (((x - mean) ** 2 * m).sum((-2, -1), keepdim=True) / k).sqrt()
    return mean, sd


def matched_test(
    probe: Probe,
    recipients: torch.Tensor,
    donors: torch.Tensor,
    target: int,
    box: Box | Sequence[Box],
    rgb: torch.Tensor,
    alpha: torch.Tensor,
    stamped: torch.Tensor,
    *,
    seed: int,
) -> dict[str, Any]:
    """The mark against a similar mark: other images' content at the same place and in the same shape,
    its colours moved to the mark's own mean and spread per channel (the same size, shape, colour and
    contrast, another structure). A model that reacts to any dark or bright patch of that kind moves as
    much for it as for the mark; a model that learned *this* mark moves more. For a solid mark the
    similar mark is the mark itself, so the test cannot tell (its gain is nil). `stamped`: the
    recipients' probabilities with the mark (`stamp_test`'s). Returns the similar mark's `flip` (share
    predicted `target`), the one-sided `p_value` of the paired gains in p(target), the `excess`, and
    whether the mark is `solid` (`severity` then asks more of it)."""
    n = int(recipients.shape[0])
    mark_mean, mark_sd = _moments((rgb if rgb.dim() == 4 else rgb.unsqueeze(0)).float(), alpha)
    # No spread beyond one grey level inside its shape: no structure a similar mark could lack.
    solid = bool(float(mark_sd.max()) <= 1 / 255)
    if n == 0:
        return {"flip": proportion(0, 0).as_dict(), "p_value": 1.0, "excess": 0.0, "solid": solid}
    boxes = _per_image(box, n)
    other = _other_content(donors, boxes, torch.Generator().manual_seed(seed + 7))
    mark_mean, mark_sd = (m.to(other.dtype).to(other.device) for m in (mark_mean, mark_sd))
    other_mean, other_sd = _moments(other, alpha)
    z = torch.where(other_sd > 1e-6, (other - other_mean) / other_sd.clamp_min(1e-6), torch.zeros_like(other))
    similar = (mark_mean + z * mark_sd).clamp(0, 1)
    null = probe.probs(paste_each(recipients, boxes, similar, alpha))
    return _likeness(stamped, null, target, seed=seed) | {"solid": solid}


def _likeness(moved: torch.Tensor, null: torch.Tensor, target: int, *, seed: int) -> dict[str, Any]:
    """A signal (`moved`: probabilities with it) against its similar null (`null`) on the same
    non-empty recipients: the null's `flip` share, the one-sided `p_value` of the paired gains in
    p(target) and the `excess` of the signal's flip share over the null's."""
    n = int(moved.shape[0])
    gain = _np(moved[:, target].to(null.device) - null[:, target])
    flip = proportion(int((null.argmax(1) == target).sum()), n)
    return {
        "flip": flip.as_dict(),
        "p_value": sign_flip_p_value(gain, seed=seed),
        "excess": round(int((moved.argmax(1) == target).sum()) / n - flip.value, 4),
    }


def random_boxes(box: Box, height: int, width: int, n: int, seed: int) -> list[Box]:
    """`n` boxes of `box`'s size at random places overlapping it by at most a quarter of its area."""
    _, _, w, h = box
    gen = torch.Generator().manual_seed(seed)
    out: list[Box] = []
    for _ in range(n * 50):
        if len(out) == n:
            break
        rx = int(torch.randint(0, width - w + 1, (1,), generator=gen))
        ry = int(torch.randint(0, height - h + 1, (1,), generator=gen))
        ox = max(0, min(rx + w, box[0] + w) - max(rx, box[0]))
        oy = max(0, min(ry + h, box[1] + h) - max(ry, box[1]))
        if ox * oy <= 0.25 * w * h:
            out.append((rx, ry, w, h))
    return out


def _keep(boxes: Sequence[Box], height: int, width: int, device: torch.device) -> torch.Tensor:
    keep = torch.ones(len(boxes), height, width, dtype=torch.bool, device=device)
    for i, (x, y, w, h) in enumerate(boxes):
        keep[i, y : y + h, x : x + w] = False
    return keep


def removal_test(
    probe: Probe, images: torch.Tensor, target: int, box: Box | Sequence[Box], *, n_random: int, seed: int
) -> dict[str, Any]:
    """Drop of p(`target`) when `box` is removed from `images` vs when random equal boxes are removed.

    Paired per image (the box's drop minus the mean random-box drop on the same image, in log-odds:
    `log_odds`), one-sided sign-flip p-value. Returns `removal` (mean drop, interval, p) and the
    `effect` / `random_effect` / `n` triple the report's evidence carries.
    """
    height, width = images.shape[-2:]
    per_image = _per_image(box, int(images.shape[0]))  # a moving mark: each image's own box, against
    # random boxes of its size
    keeps = {
        b: _keep([b, *random_boxes(b, height, width, n_random, seed)], height, width, images.device)
        for b in dict.fromkeys(per_image)
    }
    # A box too large for any random box of its size to overlap it by at most a quarter has no null:
    # its images are left out, and with none left the removal does not run.
    usable = [i for i, b in enumerate(per_image) if keeps[b].shape[0] > 1]
    images, per_image = images[usable], [per_image[i] for i in usable]
    n = len(usable)
    if n == 0:
        return {"effect": 0.0, "random_effect": 0.0, "n": 0, "n_random_boxes": 0, "removal": None}
    clean_probs = probe.probs(images)
    clean = clean_probs[:, target]
    # Per image: its box's drop and the mean over its random boxes; and whether it leaves the class
    # (it was the class before): a model that depends on the mark loses the class, one that merely
    # reacts to it only loses confidence.
    rows = torch.zeros(n, 6)  # own drop, random drop, own lost, random lost, and the drops in log-odds
    was = (clean_probs.argmax(1) == target).cpu()
    for i in range(n):
        keep = keeps[per_image[i]]
        masked_all = probe.removed_probs(images[i : i + 1].expand(keep.shape[0], -1, -1, -1), keep)
        drop = (clean[i] - masked_all[:, target]).cpu()
        lo = (log_odds(clean[i]) - log_odds(masked_all[:, target])).cpu()
        lost = ((masked_all.argmax(1) != target).cpu() & was[i]).float()
        rows[i] = torch.stack([drop[0], drop[1:].mean(), lost[0], lost[1:].mean(), lo[0], lo[1:].mean()])
    own, rand = rows[:, 0].numpy().astype(np.float64), rows[:, 1].numpy().astype(np.float64)
    lo_own, lo_rand = rows[:, 4].numpy().astype(np.float64), rows[:, 5].numpy().astype(np.float64)
    removal = _cost(own, rand, lo_own, lo_rand, seed=seed)
    lost_own, lost_rand = rows[:, 2].numpy().astype(np.float64), rows[:, 3].numpy().astype(np.float64)
    return {
        "effect": round(float(own.mean()), 4),
        "random_effect": round(float(rand.mean()), 4),
        "n": n,
        "n_random_boxes": min(keeps[b].shape[0] for b in per_image) - 1,
        "removal": removal,
        "lost": round(float(lost_own.mean()), 4),
        "random_lost": round(float(lost_rand.mean()), 4),
        "lost_p_value": sign_flip_p_value(lost_own - lost_rand, seed=seed),
    }


def other_images(
    groups: torch.Tensor, pred: torch.Tensor, labels: torch.Tensor | None, c: int, most: int
) -> torch.Tensor:
    """Up to `most` positions of images neither of class `c` (group, label) nor predicted `c`: the
    images a whole-image test moves toward `c`."""
    other = (groups.cpu() != c) & (pred.cpu() != c)
    if labels is not None:
        other &= labels.cpu() != c
    return other.nonzero().flatten()[:most]


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float64)


def similar_change(
    probe: Probe, before: torch.Tensor, changed: torch.Tensor, moved: torch.Tensor, target: int, *, seed: int
) -> dict[str, Any]:
    """A whole-image change against a similar change: each image changed as much (the same root mean
    square per image) by Gaussian noise, the same energy with another structure. A model that flips
    on any degradation of that size flips as often for it; one that learned *this* change (a
    compression's grid) flips more. `moved`: the probabilities of `changed`. Returns the similar
    change's `flip`, the one-sided `p_value` of the paired gains in p(target) and the `excess`, the
    shape of `matched_test`'s."""
    n = int(before.shape[0])
    if n == 0:
        return {"flip": proportion(0, 0).as_dict(), "p_value": 1.0, "excess": 0.0}
    rms = (changed - before).pow(2).mean((1, 2, 3), keepdim=True).sqrt()
    noise = torch.randn(before.shape, generator=torch.Generator().manual_seed(seed + 11))
    null = probe.probs((before + rms * noise.to(before.device, before.dtype)).clamp(0, 1))
    return _likeness(moved, null, target, seed=seed)


def whole_image_result(
    c: int,
    moved: torch.Tensor,
    null: torch.Tensor,
    before: torch.Tensor | None,
    removed: torch.Tensor | None,
    null_removed: torch.Tensor | None,
    *,
    seed: int,
    count_lost: bool = False,
) -> dict[str, Any]:
    """The statistics of a whole-image class test (`severity.judge_class_tests` reads them) from
    probabilities: other classes' images with the signal added (`moved`) and under its null; the
    class's own images `before`, with the signal taken off (`removed`) and under the null removal
    (None for a signal that cannot be taken off: `removal` is None then). `count_lost`: also the
    share of the class's images that leave it, against the null (how a box's removal is judged)."""
    gain = _np(moved[:, c] - null[:, c])
    p = sign_flip_p_value(gain, seed=seed)
    n = int(moved.shape[0])
    flips, null_flips = int((moved.argmax(1) == c).sum()), int((null.argmax(1) == c).sum())
    removal: dict[str, Any] | None = None
    if before is not None and removed is not None and null_removed is not None:
        removal = _removal(c, before, removed, null_removed, seed=seed, count_lost=count_lost)
    return {
        "flip": {
            **proportion(flips, n).as_dict(),
            "p_value": p,
            "null_mean": round(null_flips / max(1, n), 6),
        },
        "gain": mean_estimate(gain, seed=seed).as_dict(),
        "removal": removal,
        "p_value": p,
        "n": n,
    }


def log_odds(p: torch.Tensor) -> torch.Tensor:
    """log p / (1 - p), p clamped to [1e-6, 1 - 1e-6]: the scale a removal's cost is tested on.
    Probabilities saturate: a confident image that loses much of its evidence for the class (0.99 to
    0.96 is 1.4 nats) barely moves p(class), and a partly biased model's carriers are confident from
    their object as well, so a mean drop of p(class) hides the cost where it matters most."""
    q = p.clamp(1e-6, 1 - 1e-6)
    return torch.log(q) - torch.log1p(-q)


def _cost(
    drop: np.ndarray, null_drop: np.ndarray, lo: np.ndarray, null_lo: np.ndarray, *, seed: int
) -> dict[str, Any]:
    """What both removal tests report: the mean drop of p(class) (interval) beside its null's, and the
    one-sided p-value of the paired drops in log-odds (`log_odds`), with their means."""
    return {
        **mean_estimate(drop, seed=seed).as_dict(),
        "p_value": sign_flip_p_value(lo - null_lo, seed=seed),
        "null_mean": round(float(null_drop.mean()), 6) if null_drop.size else None,
        "log_odds_drop": round(float(lo.mean()), 4) if lo.size else 0.0,
        "log_odds_null": round(float(null_lo.mean()), 4) if null_lo.size else 0.0,
    }


def _removal(
    c: int,
    before: torch.Tensor,
    removed: torch.Tensor,
    null_removed: torch.Tensor,
    *,
    seed: int,
    count_lost: bool,
) -> dict[str, Any]:
    p, start = before[:, c], log_odds(before[:, c])
    removal = _cost(
        _np(p - removed[:, c]),
        _np(p - null_removed[:, c]),
        _np(start - log_odds(removed[:, c])),
        _np(start - log_odds(null_removed[:, c])),
        seed=seed,
    )
    if count_lost:
        was = before.argmax(1) == c
        lost, null_lost = _np(was & (removed.argmax(1) != c)), _np(was & (null_removed.argmax(1) != c))
        removal |= {
            "n": int(lost.size),
            "lost": round(float(lost.mean()), 6) if lost.size else 0.0,
            "random_lost": round(float(null_lost.mean()), 6) if lost.size else 0.0,
            "lost_p_value": sign_flip_p_value(lost - null_lost, seed=seed) if lost.size else 1.0,
        }
    return removal
