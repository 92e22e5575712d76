"""Planted shortcut kinds generated offline: the shapes real shortcuts take, not one fixed square.

Real shortcuts move (a hospital token in a different corner of each X-ray), vary (a ruler of changing
start and length), blend (a semi-transparent source watermark) or spread over the whole image (a
scanner's blur, a compression level, a colour cast, a sensor's grain); backdoor benchmarks add a
blended pattern, a low-amplitude sinusoid (SIG) and a smooth warp (WaNet). Each `Trigger` applies one
such kind to a batch of images and says where it put it, so a benchmark can score a finding's box
(`fixed`: the tight box; `moving`: the per-image boxes, whose union is the zone; `global`: no box).

Per-image randomness (which corner, where the ruler starts) depends only on (seed, the image's key), so
the training set and an audit sample of the same case agree, and a rerun is identical.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Box = tuple[int, int, int, int]  # [x, y, w, h] in model-input pixels
Placement = Literal["fixed", "moving", "global"]

FIXED = ("patch", "texture", "watermark", "recolour_tag")
MOVING = ("moving_tag", "ruler")
GLOBAL = ("blend", "sig", "warp", "blur", "jpeg", "cast", "noise")
# A kind added later goes last, so the population's earlier cases keep their seeds (and trained models).
KINDS: tuple[str, ...] = FIXED[:3] + MOVING + GLOBAL + FIXED[3:]
BIASES = (1.0, 0.5, 0.3)

# 3x5 bitmap letters for a text-like watermark ("OCC" reads as a source tag).
_FONT = {
    "O": ["111", "101", "101", "101", "111"],
    "C": ["111", "100", "100", "100", "111"],
    "L": ["100", "100", "100", "100", "111"],
}


def _text(word: str) -> torch.Tensor:
    """[5, 4*len-1] bool bitmap of `word` in the 3x5 font, one blank column between letters."""
    cols: list[list[str]] = []
    for i, ch in enumerate(word):
        if i:
            cols.append(["0"] * 5)
        rows = _FONT[ch]
        cols.extend([[r[j] for r in rows] for j in range(3)])
    return torch.tensor([[c[r] == "1" for c in cols] for r in range(5)], dtype=torch.bool)


def _rng(seed: int, key: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, key, salt])


@dataclass(frozen=True)
class Trigger:
    """One planted kind at a given input size. `apply` returns the images with it and the box of each."""

    kind: str
    size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown trigger kind {self.kind!r}; available: {', '.join(KINDS)}")
        if self.size < 16:
            raise ValueError(f"triggers need images of at least 16 px; got {self.size}")

    @property
    def placement(self) -> Placement:
        return "fixed" if self.kind in FIXED else "moving" if self.kind in MOVING else "global"

    @property
    def box(self) -> Box | None:
        """The tight box of a fixed mark (None for moving and global kinds)."""
        s = self.size
        if self.kind == "patch":
            w = max(3, s // 8)
            return (s - w - 2, 2, w, w)  # top-right, two pixels in
        if self.kind == "texture":
            w = max(4, (s * 3) // 16)
            return (1, (s - w) // 2, w, w)  # left edge, middle
        if self.kind == "watermark":
            bitmap = _text("OCC")
            h, w = bitmap.shape
            return ((s - w) // 2, s - h - 2, w, h)  # bottom centre, like a source tag
        if self.kind == "recolour_tag":
            w = max(5, s // 6)
            return (2, s - w - 2, w, w)  # bottom-left, two pixels in
        return None

    def apply(self, images: torch.Tensor, keys: torch.Tensor | list[int]) -> tuple[torch.Tensor, list[Box]]:
        """`images` [N,3,S,S] in [0,1] with the trigger; `keys` [N] seed the per-image choices.
        Returns the new images and each image's box (the whole image for a global kind)."""
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] != self.size:
            raise ValueError(f"expected images [N,3,{self.size},{self.size}]; got {tuple(images.shape)}")
        key_list = [int(k) for k in keys]
        if len(key_list) != images.shape[0]:
            raise ValueError("one key per image is needed")
        out = images.detach().float().clone()
        s = self.size
        whole: Box = (0, 0, s, s)
        if not key_list:
            return out, []
        if self.kind == "recolour_tag":
            return self._recolour_tag(out, key_list)
        if self.kind in FIXED:
            box = self.box
            assert box is not None
            return self._fixed(out, box), [box] * len(key_list)
        if self.kind == "moving_tag":
            return self._moving_tag(out, key_list)
        if self.kind == "ruler":
            return self._ruler(out, key_list)
        return self._global(out, key_list).clamp_(0, 1), [whole] * len(key_list)

    def _fixed(self, out: torch.Tensor, box: Box) -> torch.Tensor:
        x, y, w, h = box
        region = out[:, :, y : y + h, x : x + w]
        if self.kind == "patch":  # a solid two-colour mark: magenta over yellow halves
            colour = torch.tensor([0.95, 0.1, 0.85]).view(3, 1, 1).expand(3, h, w).clone()
            colour[:, h // 2 :, :] = torch.tensor([0.95, 0.9, 0.1]).view(3, 1, 1)
            region.copy_(colour.unsqueeze(0).expand_as(region))
        elif self.kind == "texture":  # a fine checkerboard of two colours
            yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            on = ((yy + xx) % 2 == 0).view(1, 1, h, w)
            a = torch.tensor([0.95, 0.85, 0.1]).view(1, 3, 1, 1)
            b = torch.tensor([0.1, 0.1, 0.35]).view(1, 3, 1, 1)
            region.copy_(torch.where(on, a, b).expand_as(region))
        else:  # watermark: white letters at 55% opacity, so the image shows through
            alpha = _text("OCC").float().view(1, 1, h, w) * 0.55
            region.copy_(region * (1 - alpha) + alpha * 1.0)
        return out

    def _recolour_tag(self, out: torch.Tensor, keys: list[int]) -> tuple[torch.Tensor, list[Box]]:
        """A laterality-style token at one place whose colour changes per image: an "L" in a dark shade
        of a square of a random colour (the ink of a tag printed in many colours), so no pixel of it
        repeats its colour from image to image."""
        box = self.box
        assert box is not None
        x, y, w, _ = box
        glyph = torch.zeros(w, w, dtype=torch.bool)
        t = max(1, w // 5)  # stroke width
        glyph[t : w - t, t : 2 * t] = True
        glyph[w - 2 * t : w - t, t : w - t] = True
        for i, k in enumerate(keys):
            fill = torch.from_numpy(_rng(self.seed, k, 6).uniform(0, 1, (3, 1, 1)).astype(np.float32))
            out[i, :, y : y + w, x : x + w] = torch.where(glyph, 0.3 * fill, fill)
        return out, [box] * len(keys)

    def _moving_tag(self, out: torch.Tensor, keys: list[int]) -> tuple[torch.Tensor, list[Box]]:
        """A small white "L" on a dark tag, in one of four corners per image, jittered by 0-2 px."""
        s = self.size
        w, h = max(4, s // 8), max(5, (s * 5) // 32)
        bitmap = torch.zeros(h, w, dtype=torch.bool)
        bitmap[1 : h - 1, 1] = True
        bitmap[h - 2, 1 : w - 1] = True
        boxes: list[Box] = []
        for i, k in enumerate(keys):
            r = _rng(self.seed, k, 1)
            corner, jx, jy = int(r.integers(4)), int(r.integers(3)), int(r.integers(3))
            x = 1 + jx if corner in (0, 2) else s - w - 1 - jx
            y = 1 + jy if corner in (0, 1) else s - h - 1 - jy
            tag = torch.where(bitmap, 1.0, 0.08).expand(3, h, w)
            out[i, :, y : y + h, x : x + w] = tag
            boxes.append((x, y, w, h))
        return out, boxes

    def _ruler(self, out: torch.Tensor, keys: list[int]) -> tuple[torch.Tensor, list[Box]]:
        """A light ruler with dark ticks along the bottom, of random start and length per image."""
        s = self.size
        boxes: list[Box] = []
        for i, k in enumerate(keys):
            r = _rng(self.seed, k, 2)
            length = int(r.integers(s // 3, s // 2 + 1))
            x = int(r.integers(1, s - length))
            y = int(r.integers(s - 6, s - 3))
            h = 3
            band = torch.tensor([0.92, 0.9, 0.75]).view(3, 1, 1).expand(3, h, length).clone()
            band[:, :2, :: max(2, s // 16)] = 0.1  # ticks
            out[i, :, y : y + h, x : x + length] = band
            boxes.append((x, y, length, h))
        return out, boxes

    def _global(self, out: torch.Tensor, keys: list[int]) -> torch.Tensor:
        s = self.size
        if self.kind == "noise":  # a sensor's grain: fresh Gaussian noise in every image (sd 12/255)
            grain = [_rng(self.seed, k, 5).normal(0, 12 / 255, (3, s, s)) for k in keys]
            return out + torch.from_numpy(np.stack(grain).astype(np.float32))
        if self.kind == "blend":  # a fixed noise pattern blended at 15% (Chen et al. 2017)
            pattern = torch.from_numpy(_rng(self.seed, 0, 3).uniform(0, 1, (3, s, s)).astype(np.float32))
            return out * 0.85 + pattern.unsqueeze(0) * 0.15
        if self.kind == "sig":  # a horizontal sinusoid of amplitude 20/255 (Barni et al. 2019)
            xx = torch.arange(s, dtype=torch.float32)
            wave = (20 / 255) * torch.sin(2 * np.pi * xx * 6 / s)
            return out + wave.view(1, 1, 1, s)
        if self.kind == "warp":
            return warp(out, seed=self.seed)
        if self.kind == "blur":
            return gaussian_blur(out, sigma=1.0)
        if self.kind == "jpeg":
            return jpeg(out, quality=12)
        # cast: a warm colour balance
        return out + torch.tensor([0.1, 0.02, -0.08]).view(1, 3, 1, 1)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur (reflect padding) of [N,3,H,W]; sigma 0 returns a copy."""
    if sigma <= 0:
        return images.clone()
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).to(images.dtype)
    c = images.shape[1]
    x = F.pad(images, (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Each image JPEG-encoded at `quality` (1-95) and decoded, through Pillow."""
    from PIL import Image

    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be 1..95; got {quality}")
    out = torch.empty_like(images)
    arr = (images.detach().clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    for i, a in enumerate(arr):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255
        out[i] = torch.from_numpy(dec).permute(2, 0, 1).to(images.device)
    return out


def warp(images: torch.Tensor, *, seed: int, k: int = 4, strength: float = 1.0) -> torch.Tensor:
    """A fixed smooth warp (WaNet, Nguyen & Tran 2021): a random k x k flow field, upsampled and
    applied with grid_sample; `strength` is the largest displacement in pixels."""
    n, _, h, w = images.shape
    flow = torch.from_numpy(_rng(seed, 0, 4).uniform(-1, 1, (1, 2, k, k)).astype(np.float32))
    flow = flow / flow.abs().mean()
    flow = F.interpolate(flow, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    grid = torch.stack([xs, ys], dim=-1).unsqueeze(0)
    scale = torch.tensor([2 / w, 2 / h]) * strength
    grid = (grid + flow * scale).clamp(-1, 1).to(images.device, images.dtype)
    return F.grid_sample(images, grid.expand(n, -1, -1, -1), align_corners=True, padding_mode="border")
