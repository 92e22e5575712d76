"""Per-image low-level statistics a source or scanner leaves, and transforms that set each one.

A class whose images come from one scanner, camera or pipeline can be told apart by how sharp, noisy,
compressed, bright, contrasty or colour-balanced its images are, with no object involved (Adebayo et al.
2022: a background blur no attribution method revealed; cleanlab's Datalab scores such properties
against labels). `measure` gives each image's statistics; `set_level` gives images a target level of
one statistic, so a counterfactual can ask whether other classes' images, given the class's level, turn
into the class (and a null: the same size of change in the opposite direction or on another statistic).

Every statistic is computed on [N,3,H,W] float images in [0,1] and returned as a [N] tensor.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

STATS = (
    "sharpness",
    "detail",
    "blockiness",
    "noise",
    "grain",
    "contrast",
    "brightness",
    "warmth",
    "tint",
    "saturation",
    "hue",
)
_LUMA = (0.299, 0.587, 0.114)
GREY_LEVEL = 1 / 255  # one step of an 8-bit image


def _grey(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _conv(g: torch.Tensor, k: list[list[float]]) -> torch.Tensor:
    kt = torch.tensor(k, dtype=g.dtype, device=g.device).view(1, 1, len(k), len(k[0]))
    return F.conv2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), kt)


def sharpness(x: torch.Tensor) -> torch.Tensor:
    """Log variance of the Laplacian of the grey image: low for blurred images."""
    lap = _conv(_grey(x), [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    return torch.log(lap.flatten(1).var(1) + 1e-6)


def detail(x: torch.Tensor) -> torch.Tensor:
    """Sharpness relative to contrast: log of the Laplacian's variance over the grey image's. A flat
    sky and a busy street differ in sharpness by their content; a blurred copy of either loses detail
    relative to its own contrast, which is what a source's blur changes."""
    g = _grey(x)
    lap = _conv(g, [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    return torch.log(lap.flatten(1).var(1) + 1e-6) - torch.log(g.flatten(1).var(1) + 1e-6)


def grain(x: torch.Tensor) -> torch.Tensor:
    """Noise relative to contrast (`noise` over the grey image's standard deviation), in logs."""
    return torch.log(noise(x) + 1e-5) - torch.log(_grey(x).flatten(1).std(1) + 1e-5)


_IMMERKAER = [[1, -2, 1], [-2, 4, -2], [1, -2, 1]]
_MAD = 0.6745  # the median absolute value of a standard normal


def noise(x: torch.Tensor) -> torch.Tensor:
    """The pixel noise sigma: per channel, the median absolute response to Immerkaer's (1996) kernel
    (blind to planes and to edges' first order; its response to white noise of sigma s has standard
    deviation 6s), averaged over the channels. The median, not Immerkaer's mean, so that the edges and
    texture of a minority of pixels do not read as noise (Donoho's MAD estimate); per channel, because
    a sensor's noise is drawn per colour site and a grey image averages a third of it away. Borders
    are left out (no padding to read as a flat edge)."""
    n, c, h, w = x.shape
    if h < 3 or w < 3:
        return torch.zeros(n, device=x.device)
    k = torch.tensor(_IMMERKAER, dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    r = F.conv2d(x.reshape(n * c, 1, h, w), k).abs().flatten(1)
    return (r.median(1).values / (6 * _MAD)).view(n, c).mean(1)


def blockiness(x: torch.Tensor, block: int = 8) -> torch.Tensor:
    """How much larger steps are across 8-px block borders than inside blocks (JPEG's grid): about 1
    for an uncompressed image, rising as quality falls. Both mean steps get a floor of one 8-bit grey
    level: below it a step is quantisation, and the ratio of two such steps on a nearly flat image
    (a sky crop) would swing from 0.4 to 3 with no compression at all."""
    g = _grey(x)[:, 0]
    dx = (g[:, :, 1:] - g[:, :, :-1]).abs()
    dy = (g[:, 1:, :] - g[:, :-1, :]).abs()
    bx = torch.zeros(dx.shape[-1], dtype=torch.bool, device=x.device)
    bx[block - 1 :: block] = True
    by = torch.zeros(dy.shape[-2], dtype=torch.bool, device=x.device)
    by[block - 1 :: block] = True
    across = torch.cat([dx[:, :, bx].flatten(1), dy[:, by, :].flatten(1)], 1).mean(1)
    inside = torch.cat([dx[:, :, ~bx].flatten(1), dy[:, ~by, :].flatten(1)], 1).mean(1)
    return (across + GREY_LEVEL) / (inside + GREY_LEVEL)


def contrast(x: torch.Tensor) -> torch.Tensor:
    return _grey(x).flatten(1).std(1)


def brightness(x: torch.Tensor) -> torch.Tensor:
    return _grey(x).flatten(1).mean(1)


def warmth(x: torch.Tensor) -> torch.Tensor:
    """Mean red minus mean blue: a warm or cold colour balance."""
    return (x[:, 0] - x[:, 2]).flatten(1).mean(1)


def tint(x: torch.Tensor) -> torch.Tensor:
    """Mean green minus the mean of red and blue: a green or magenta cast."""
    return (x[:, 1] - (x[:, 0] + x[:, 2]) / 2).flatten(1).mean(1)


def saturation(x: torch.Tensor) -> torch.Tensor:
    mx, mn = x.max(1).values, x.min(1).values
    return ((mx - mn) / (mx + 1e-6)).flatten(1).mean(1)


def _iq(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    i = 0.596 * x[:, 0] - 0.274 * x[:, 1] - 0.322 * x[:, 2]
    q = 0.211 * x[:, 0] - 0.523 * x[:, 1] + 0.312 * x[:, 2]
    return i, q


def hue(x: torch.Tensor) -> torch.Tensor:
    """The angle (radians) of the mean chroma in YIQ: which way the image's colours lean."""
    i, q = _iq(x)
    return torch.atan2(q.flatten(1).mean(1), i.flatten(1).mean(1))


MEASURES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sharpness": sharpness,
    "detail": detail,
    "blockiness": blockiness,
    "noise": noise,
    "grain": grain,
    "contrast": contrast,
    "brightness": brightness,
    "warmth": warmth,
    "tint": tint,
    "saturation": saturation,
    "hue": hue,
}


def measure(images: torch.Tensor, stats: tuple[str, ...] = STATS) -> dict[str, torch.Tensor]:
    """Each statistic of each image, {name: [N]}; images [N,3,H,W] in [0,1]."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images [N,3,H,W]; got {tuple(images.shape)}")
    unknown = [s for s in stats if s not in MEASURES]
    if unknown:
        raise ValueError(f"unknown statistic(s) {unknown}; available: {', '.join(STATS)}")
    x = images.detach().float()
    return {s: MEASURES[s](x).cpu() for s in stats}


def blur_each(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur with a sigma per image ([N]; 0 leaves the image as it is)."""
    n, c, _, _ = x.shape
    sig = sigma.to(x.device, x.dtype).clamp_min(1e-3)
    radius = max(1, int(3 * float(sig.max()) + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t.view(1, -1) ** 2) / (2 * sig.view(-1, 1) ** 2))
    k = k / k.sum(1, keepdim=True)
    k = k.repeat_interleave(c, 0)  # [n*c, taps]
    y = x.reshape(1, n * c, *x.shape[-2:])
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view_as(x)


def _jpeg_one(a: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255


_QUALITIES = (95, 80, 60, 45, 35, 25, 18, 12, 8, 5)


def _set_blockiness(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per image, the JPEG quality whose blockiness comes closest to the target (compression can
    only add blockiness; an image already above its target is left as it is)."""
    arr = (x.detach().clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    out = x.detach().clone()
    for i, a in enumerate(arr):
        if float(blockiness(x[i : i + 1])) >= float(target[i]):
            continue
        best, gap = None, math.inf
        for q in _QUALITIES:
            y = torch.from_numpy(_jpeg_one(a, q)).permute(2, 0, 1).unsqueeze(0).to(x.device)
            d = abs(float(blockiness(y)) - float(target[i]))
            if d < gap:
                best, gap = y, d
        assert best is not None
        out[i] = best[0]
    return out


def _sharpen(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """t < 0: blur with sigma -t; t > 0: unsharp mask of amount t (a one-parameter sharpness knob)."""
    blur = blur_each(x, (-t).clamp_min(0))
    soft = blur_each(x, torch.ones_like(t))
    amount = t.clamp_min(0).view(-1, 1, 1, 1).to(x.dtype)
    sharp = x + amount * (x - soft)
    return torch.where((t < 0).view(-1, 1, 1, 1).to(x.device), blur, sharp).clamp(0, 1)


def _grainy(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """t < 0: smooth with sigma -t; t > 0: add Gaussian noise of sigma t (fixed draw, so the knob is
    monotone); a one-parameter grain knob."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    smooth = blur_each(x, (-t).clamp_min(0))
    noisy = x + t.clamp_min(0).view(-1, 1, 1, 1).to(x.device, x.dtype) * z
    return torch.where((t < 0).view(-1, 1, 1, 1).to(x.device), smooth, noisy).clamp(0, 1)


def _bisect(
    x: torch.Tensor,
    target: torch.Tensor,
    f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    stat: Callable[[torch.Tensor], torch.Tensor],
    lo: float,
    hi: float,
    steps: int = 14,
) -> torch.Tensor:
    """Per image, the knob value t in [lo, hi] at which stat(f(x, t)) meets the target (stat rising
    with t), by bisection on the whole batch at once."""
    a = torch.full((x.shape[0],), lo)
    b = torch.full((x.shape[0],), hi)
    tgt = target.cpu()
    for _ in range(steps):
        mid = (a + b) / 2
        above = stat(f(x, mid)).cpu() > tgt
        b = torch.where(above, mid, b)
        a = torch.where(above, a, mid)
    return f(x, (a + b) / 2)


def set_level(images: torch.Tensor, stat: str, target: torch.Tensor | float) -> torch.Tensor:
    """`images` changed so that `stat` reaches `target` (a scalar or one per image) as nearly as the
    statistic's transform allows: blur/unsharp (sharpness), JPEG (blockiness), Gaussian noise or
    smoothing (noise), scaling about the mean (contrast), an offset (brightness), channel offsets
    (warmth, tint), a blend with grey (saturation), a chroma rotation (hue). Results stay in [0,1]."""
    if stat not in MEASURES:
        raise ValueError(f"unknown statistic {stat!r}; available: {', '.join(STATS)}")
    x = images.detach().float()
    n = x.shape[0]
    tgt = torch.as_tensor(target, dtype=torch.float32).expand(n).clone() if n else torch.zeros(0)
    if n == 0:
        return x.clone()
    cur = MEASURES[stat](x).cpu()
    d = lambda v: v.to(x.device).view(-1, 1, 1, 1)  # noqa: E731
    if stat in ("sharpness", "detail"):
        return _bisect(x, tgt, _sharpen, MEASURES[stat], -4.0, 6.0)
    if stat == "grain":
        return _bisect(x, tgt, _grainy, grain, -3.0, 0.3)
    if stat == "blockiness":
        return _set_blockiness(x, tgt)
    if stat == "noise":
        add = (tgt**2 - cur**2).clamp_min(0).sqrt()
        gen = torch.Generator().manual_seed(0)
        noisy = x + d(add) * torch.randn(x.shape, generator=gen).to(x.device)
        smooth = _bisect(x, tgt, lambda y, t: blur_each(y, -t), noise, -3.0, 0.0)
        return torch.where(d((tgt > cur).float()) > 0, noisy, smooth).clamp(0, 1)
    if stat == "contrast":
        mean = _grey(x).mean((2, 3), keepdim=True)
        return (mean + (x - mean) * d(tgt / cur.clamp_min(1e-4))).clamp(0, 1)
    if stat == "brightness":
        return (x + d(tgt - cur)).clamp(0, 1)
    if stat == "warmth":
        half = d((tgt - cur) / 2)
        return torch.cat([x[:, :1] + half, x[:, 1:2], x[:, 2:] - half], 1).clamp(0, 1)
    if stat == "tint":
        delta = d(tgt - cur)
        return torch.cat([x[:, :1] - delta / 3, x[:, 1:2] + 2 * delta / 3, x[:, 2:] - delta / 3], 1).clamp(
            0, 1
        )
    if stat == "saturation":
        grey = _grey(x)
        return _bisect(x, tgt, lambda y, t: (grey + (y - grey) * d(t)).clamp(0, 1), saturation, 0.0, 3.0)
    return _rotate_hue(x, tgt - cur)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate each image's chroma (YIQ's I-Q plane) by `angle` radians, keeping its luma."""
    y = _grey(x)[:, 0]
    i, q = _iq(x)
    c, s = angle.cos().to(x.device).view(-1, 1, 1), angle.sin().to(x.device).view(-1, 1, 1)
    i2, q2 = i * c - q * s, i * s + q * c
    r = y + 0.956 * i2 + 0.621 * q2
    g = y - 0.272 * i2 - 0.647 * q2
    b = y - 1.106 * i2 + 1.703 * q2
    return torch.stack([r, g, b], 1).clamp(0, 1)
