"""Non-local shortcuts: does a class's colour cast alone decide it?

A tint, a colour balance or an exposure shared by one class's images is a shortcut no box can hold, so
the box tests pass it by construction. The global counterfactual moves the class's mean colour (per
channel, over its images and pixels, minus the median of the other classes' means) onto the other classes' images and asks
how many turn into the class; and it takes the same shift away from the class's own images and asks
how much p(class) they lose. The null shift has the same size in a random colour direction, drawn
afresh for every image, so a model that flips on any colour change of that size is not blamed on one
class. Only classes whose mean colour differs beyond what label permutations give (`colour_z` >=
`MIN_Z`) are tested. Texture and frequency statistics
spread over the whole image are not tested (the report says so).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditors.audits.spurious_signal.nulls import Probe
from auditors.stats import mean_estimate, proportion, sign_flip_p_value

MIN_Z = 3.0  # standard deviations of the label-permutation null a class's mean colour must differ by


def _shift_norm(means: torch.Tensor, groups: torch.Tensor, c: int) -> float:
    others = [means[groups == o].mean(0) for o in groups.unique().tolist() if o != c]
    return float((means[groups == c].mean(0) - torch.stack(others).median(0).values).norm())


def colour_z(
    images: torch.Tensor, groups: torch.Tensor, classes: list[int], *, n_perm: int, seed: int
) -> tuple[dict[int, float], dict[int, float]]:
    """Per class: how far its mean colour stands from the other classes' (the size of the shift the
    model test moves), in standard deviations of the same size under label permutations. A class
    whose images are no more tinted than a random draw of as many images is not tested: on a weak model
    a chance drift of a class's mean colour moves predictions as a cast would (the data screen the
    low-level and pattern tests have too). Also per class, the screen's resolution: the mean colour
    shift (RGB norm, [0, 1] units) a cast must give the class to reach `MIN_Z` at this sample; a cast
    on a fraction f of the class must be 1/f times as strong on its images, and the resolution
    shrinks as one over the square root of the images per class."""
    means = images.detach().float().mean((2, 3)).cpu()
    g = groups.detach().cpu()
    if len(g.unique()) < 2:
        return {c: 0.0 for c in classes}, {}
    gen = torch.Generator().manual_seed(seed)
    perms = [g[torch.randperm(g.numel(), generator=gen)] for _ in range(n_perm)]
    z, resolution = {}, {}
    for c in classes:
        null = np.asarray([_shift_norm(means, p, c) for p in perms])
        sd = max(float(null.std()), 1e-9)
        z[c] = round((_shift_norm(means, g, c) - float(null.mean())) / sd, 3)
        resolution[c] = round(float(null.mean()) + MIN_Z * sd, 4)
    return z, resolution


def _null_shifts(shift: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """[count, 3] colour shifts as large as `shift` in random directions: a model that flips on any
    colour change of that size flips on these as often as on the class's own cast."""
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn(count, 3, generator=gen)
    return d / d.norm(dim=1, keepdim=True).clamp_min(1e-12) * shift.norm()


def _shifted(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    s = shift.to(images.device)
    s = s.view(1, 3, 1, 1) if s.dim() == 1 else s.view(-1, 3, 1, 1)
    return (images + s).clamp(0, 1)


def colour_shift_test(
    probe: Probe,
    images: torch.Tensor,
    groups: torch.Tensor,
    pred: torch.Tensor,
    labels: torch.Tensor | None,
    c: int,
    *,
    max_images: int,
    seed: int,
) -> dict[str, Any]:
    """Stamp and removal of class `c`'s colour cast (class = `groups`: labels, or predictions without
    them), each paired with a null shift per image."""
    means = images.detach().float().mean((2, 3)).cpu()
    own = (groups == c).cpu()
    g = groups.cpu()
    # Against the median of the other classes' means, so one tinted class does not make every other
    # class look like the opposite tint.
    others = [means[g == o].mean(0) for o in g.unique().tolist() if o != c]
    shift = means[own].mean(0) - torch.stack(others).median(0).values
    other = ~own & (pred.cpu() != c)
    if labels is not None:
        other &= labels.cpu() != c
    rec = other.nonzero().flatten()[:max_images]
    mine = own.nonzero().flatten()[:max_images]
    nulls = _null_shifts(shift, rec.numel() + mine.numel(), seed)
    x = images[rec.to(images.device)]
    moved_probs = probe.probs(_shifted(x, shift))
    moved, moved_pred = moved_probs[:, c], moved_probs.argmax(1)
    null = probe.probs(_shifted(x, nulls[: rec.numel()]))
    gain = (moved - null[:, c]).cpu().numpy().astype(np.float64)
    p = sign_flip_p_value(gain, seed=seed)
    flips = int((moved_pred == c).sum())
    null_flips = int((null.argmax(1) == c).sum())
    flip = proportion(flips, int(rec.numel()))
    y = images[mine.to(images.device)]
    clean = probe.probs(y)[:, c]
    drop = clean - probe.probs(_shifted(y, -shift))[:, c]
    null_drop = clean - probe.probs(_shifted(y, -nulls[rec.numel() :]))[:, c]
    d = drop.cpu().numpy().astype(np.float64)
    nd = null_drop.cpu().numpy().astype(np.float64)
    removal = mean_estimate(d, seed=seed)
    return {
        "class_index": c,
        "shift": [round(float(v), 4) for v in shift],
        "flip": {
            **flip.as_dict(),
            "p_value": p,
            "null_mean": round(null_flips / max(1, rec.numel()), 6),
        },
        "gain": mean_estimate(gain, seed=seed).as_dict(),
        "removal": {
            **removal.as_dict(),
            "p_value": sign_flip_p_value(d - nd, seed=seed),
            "null_mean": round(float(nd.mean()), 6) if nd.size else None,
        },
        "p_value": p,
        "n": int(rec.numel()),
    }
