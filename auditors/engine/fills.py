"""Pixel-space fills: what replaces a removed region before the model's normalisation.

docs/audits.md, "Missingness strategies": images live in [0,1]; the fill is applied in pixel space and the
model's own mean/std normalisation comes after, so `black` is 0 in pixel space (about -2.1 once
normalised) and `mean` is the model's mean colour (0 once normalised).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from auditors.engine.errors import EngineError

PIXEL_FILLS = ("black", "mean", "grey", "random_color", "noise", "blur")
NATIVE = ("token_drop", "layer_mask")
BLUR_KERNEL = 21
BLUR_SIGMA = 10.0


@dataclass(frozen=True)
class Strategy:
    """A parsed strategy name. `color` is set for `color:R,G,B`."""

    name: str
    color: tuple[float, float, float] | None = None

    @property
    def is_pixel_fill(self) -> bool:
        return self.name not in NATIVE

    def __str__(self) -> str:
        if self.color is not None:
            return "color:" + ",".join(f"{c:g}" for c in self.color)
        return self.name


def parse_strategy(spec: str) -> Strategy:
    """Parse `black`, `color:255,0,0` (0-255) or `color:1,0,0` (0-1), `token_drop`, ..."""
    spec = spec.strip()
    if spec.startswith("color:"):
        parts = spec[len("color:") :].split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 3 or any(v < 0 for v in values):
            raise EngineError(f"bad colour {spec!r}: write color:R,G,B with three numbers in 0-255 or 0-1")
        if any(v > 1 for v in values):
            if any(v > 255 for v in values):
                raise EngineError(f"bad colour {spec!r}: channel values go up to 255")
            values = [v / 255.0 for v in values]
        return Strategy("color", (values[0], values[1], values[2]))
    if spec in PIXEL_FILLS or spec in NATIVE:
        return Strategy(spec)
    known = ", ".join((*PIXEL_FILLS, "color:R,G,B", *NATIVE))
    raise EngineError(f"unknown missingness strategy {spec!r}; known: {known}")


def gaussian_blur(images: torch.Tensor, kernel: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding, on the images' device (no host round trip)."""
    half = kernel // 2
    x = torch.arange(kernel, device=images.device, dtype=images.dtype) - half
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    c = images.shape[1]
    pad_mode = "reflect" if min(images.shape[-2:]) > half else "replicate"
    out = F.pad(images, (half, half, 0, 0), mode=pad_mode)
    out = F.conv2d(out, g.view(1, 1, 1, kernel).expand(c, 1, 1, kernel).contiguous(), groups=c)
    out = F.pad(out, (0, 0, half, half), mode=pad_mode)
    return F.conv2d(out, g.view(1, 1, kernel, 1).expand(c, 1, kernel, 1).contiguous(), groups=c)


def sample_generator(device: torch.device, seed: int, index: int) -> torch.Generator:
    """One generator per (seed, sample index): a sample's random draws do not depend on how the work
    was chunked or batched, so results are the same on any machine and in any shard."""
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + index) % (2**63 - 1))
    return gen


def fill_values(
    strategy: Strategy,
    images: torch.Tensor,
    *,
    mean: torch.Tensor,
    seed: int,
    offset: int = 0,
) -> torch.Tensor:
    """What the removed pixels become: a tensor broadcastable to `images` ([B,3,H,W]).

    `offset` is the index of `images[0]` in the whole request, so random fills are per-sample stable.
    """
    b = images.shape[0]
    dev, dt = images.device, images.dtype
    name = strategy.name
    if name == "black":
        return torch.zeros(1, 3, 1, 1, device=dev, dtype=dt)
    if name == "grey":
        return torch.full((1, 3, 1, 1), 0.5, device=dev, dtype=dt)
    if name == "mean":
        return mean.to(dev, dt).view(1, 3, 1, 1)
    if name == "color":
        assert strategy.color is not None
        return torch.tensor(strategy.color, device=dev, dtype=dt).view(1, 3, 1, 1)
    if name == "blur":
        return gaussian_blur(images)
    if name == "random_color":
        cols = [
            torch.rand(3, generator=sample_generator(dev, seed, offset + i), device=dev) for i in range(b)
        ]
        return torch.stack(cols).to(dt).view(b, 3, 1, 1)
    if name == "noise":
        shape = images.shape[1:]
        noise = [
            torch.rand(shape, generator=sample_generator(dev, seed, offset + i), device=dev) for i in range(b)
        ]
        return torch.stack(noise).to(dt)
    raise EngineError(f"{strategy} is not a pixel fill")


def apply_pixel_fill(
    strategy: Strategy,
    images: torch.Tensor,
    keep: torch.Tensor,
    *,
    mean: torch.Tensor,
    seed: int = 0,
    offset: int = 0,
) -> torch.Tensor:
    """Blend `images` [B,3,H,W] with the fill where `keep` [B,1,H,W] (bool or soft in [0,1]) is 0.

    A soft `keep` is allowed so gradient methods (SIS gradient BackSelect) can differentiate through it.
    """
    fill = fill_values(strategy, images, mean=mean, seed=seed, offset=offset)
    k = keep.to(images.dtype)
    return images * k + fill * (1 - k)
