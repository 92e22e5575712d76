"""Built-in synthetic tasks with a *planted* shortcut, so every audit is checked against a known truth.

`shapes`: each class is a shape (circle, square, triangle, ...) of random colour, size and position on
a noisy gradient background. An artifact (a solid square, a watermark glyph, a border, or a handful of
fixed pixels) is stamped on a known box of one class's images, on a configurable fraction of them.
A model trained on it may learn the artifact instead of the shape: the audits must say so.

Reference grammar (like timm's `create_dataset` names): ``synthetic:shapes?classes=4&size=32&n=512&
artifact=square&artifact_class=0&fraction=1.0&box=25,25,6,6&seed=0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Literal
from urllib.parse import parse_qsl

import numpy as np
import torch

SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar", "diamond", "dots")
ArtifactKind = Literal["none", "square", "watermark", "border", "pixels"]
ARTIFACTS: tuple[str, ...] = ("none", "square", "watermark", "border", "pixels")


class SyntheticSpecError(ValueError):
    """A `synthetic:` reference that cannot be parsed; the message says which part."""


@dataclass(frozen=True)
class SyntheticSpec:
    task: str = "shapes"
    classes: int = 4
    size: int = 32
    n: int = 512
    artifact: str = "square"
    artifact_class: int = 0
    fraction: float = 1.0
    box: tuple[int, int, int, int] | None = None
    color: tuple[int, int, int] = (0, 0, 0)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task != "shapes":
            raise SyntheticSpecError(f"unknown synthetic task {self.task!r}; available: shapes")
        if not 2 <= self.classes <= len(SHAPES):
            raise SyntheticSpecError(f"classes must be 2..{len(SHAPES)}; got {self.classes}")
        if not 16 <= self.size <= 512:
            raise SyntheticSpecError(f"size must be 16..512; got {self.size}")
        if not 1 <= self.n <= 200_000:
            raise SyntheticSpecError(f"n must be 1..200000; got {self.n}")
        if self.artifact not in ARTIFACTS:
            raise SyntheticSpecError(f"artifact must be one of {', '.join(ARTIFACTS)}; got {self.artifact!r}")
        if not 0 <= self.artifact_class < self.classes:
            raise SyntheticSpecError(f"artifact_class must be 0..{self.classes - 1}")
        if not 0.0 <= self.fraction <= 1.0:
            raise SyntheticSpecError("fraction must be in [0, 1]")
        x, y, w, h = self.resolved_box
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > self.size or y + h > self.size:
            raise SyntheticSpecError(f"box {self.resolved_box} does not fit a {self.size}px image")

    @property
    def resolved_box(self) -> tuple[int, int, int, int]:
        """[x, y, w, h] of the artifact; by default a square in the bottom-right corner."""
        if self.box is not None:
            return self.box
        if self.artifact == "border":
            return (0, 0, self.size, self.size)
        side = max(3, self.size // 5)
        return (self.size - side - 1, self.size - side - 1, side, side)

    @property
    def class_names(self) -> list[str]:
        return list(SHAPES[: self.classes])

    def with_(self, **changes: object) -> SyntheticSpec:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return SyntheticSpec(**values)

    def ref(self) -> str:
        box = ",".join(str(v) for v in self.resolved_box)
        color = ",".join(str(v) for v in self.color)
        return (
            f"synthetic:{self.task}?classes={self.classes}&size={self.size}&n={self.n}&artifact={self.artifact}"
            f"&artifact_class={self.artifact_class}&fraction={self.fraction:g}&box={box}&color={color}"
            f"&seed={self.seed}"
        )


def parse_synthetic(ref: str) -> SyntheticSpec:
    """Parse ``synthetic:TASK?key=value&...``; unknown keys are an error, not silently ignored."""
    if not ref.startswith("synthetic:"):
        raise SyntheticSpecError(f"not a synthetic reference: {ref!r}")
    body = ref[len("synthetic:") :]
    task, _, query = body.partition("?")
    kwargs: dict[str, object] = {"task": task or "shapes"}
    ints = {"classes", "size", "n", "artifact_class", "seed"}
    known = {f.name for f in fields(SyntheticSpec)} - {"task"}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in known:
            raise SyntheticSpecError(f"unknown synthetic option {key!r}; known: {', '.join(sorted(known))}")
        try:
            if key in ints:
                kwargs[key] = int(value)
            elif key == "fraction":
                kwargs[key] = float(value)
            elif key in ("box", "color"):
                parts = tuple(int(v) for v in value.split(","))
                if len(parts) != (4 if key == "box" else 3):
                    raise ValueError
                kwargs[key] = parts
            else:
                kwargs[key] = value
        except ValueError:
            raise SyntheticSpecError(f"bad value for {key}: {value!r}") from None
    return SyntheticSpec(**kwargs)  # type: ignore[arg-type]


@dataclass
class SyntheticData:
    images: torch.Tensor  # [N,3,S,S] float32 in [0,1]
    labels: torch.Tensor  # [N] int64
    object_masks: torch.Tensor  # [N,S,S] bool: where the shape is
    has_artifact: torch.Tensor  # [N] bool
    spec: SyntheticSpec
    class_names: list[str] = field(default_factory=list)


def _shape_mask(kind: str, s: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    c, sn = np.cos(angle), np.sin(angle)
    u, v = c * dx + sn * dy, -sn * dx + c * dy
    if kind == "circle":
        return np.asarray(dx**2 + dy**2 <= r**2)
    if kind == "square":
        return np.asarray((np.abs(u) <= r * 0.85) & (np.abs(v) <= r * 0.85))
    if kind == "triangle":
        return np.asarray((v <= r * 0.7) & (v >= -r) & (np.abs(u) <= (v + r) * 0.6))
    if kind == "cross":
        t = r * 0.3
        return np.asarray(((np.abs(u) <= t) & (np.abs(v) <= r)) | ((np.abs(v) <= t) & (np.abs(u) <= r)))
    if kind == "ring":
        d2 = dx**2 + dy**2
        return np.asarray((d2 <= r**2) & (d2 >= (0.55 * r) ** 2))
    if kind == "bar":
        return np.asarray((np.abs(u) <= r) & (np.abs(v) <= r * 0.3))
    if kind == "diamond":
        return np.asarray(np.abs(u) + np.abs(v) <= r)
    if kind == "dots":
        d = r * 0.55
        m = np.zeros((s, s), dtype=bool)
        for ox, oy in ((-d, -d), (d, -d), (-d, d), (d, d)):
            m |= (u - ox) ** 2 + (v - oy) ** 2 <= (r * 0.3) ** 2
        return m
    raise ValueError(kind)


def artifact_patch(spec: SyntheticSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The artifact as (rgb [3,h,w] in [0,1], alpha [h,w] bool) for the spec's box.

    Shared by the generator and the audits' counterfactual tests, which stamp it on other classes.
    """
    _, _, w, h = spec.resolved_box
    rgb = torch.tensor(spec.color, dtype=torch.float32).div(255).view(3, 1, 1).expand(3, h, w).clone()
    alpha = torch.zeros(h, w, dtype=torch.bool)
    kind = spec.artifact
    if kind in ("square", "none"):
        alpha[:] = True
    elif kind == "watermark":
        # A glyph-like pattern: a checkerboard ring with a diagonal, drawn in the artifact colour.
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        edge = (yy == 0) | (xx == 0) | (yy == h - 1) | (xx == w - 1)
        alpha = (edge & ((yy + xx) % 2 == 0)) | (yy * w == xx * h)
    elif kind == "border":
        t = max(1, spec.size // 16)
        alpha[:t, :] = alpha[-t:, :] = True
        alpha[:, :t] = alpha[:, -t:] = True
    elif kind == "pixels":
        # A handful of fixed pixels in alternating colours spread over the box.
        pts = [(0, 0), (h - 1, w - 1), (0, w - 1), (h - 1, 0), (h // 2, w // 2)]
        for i, (py, px) in enumerate(pts):
            alpha[py, px] = True
            rgb[:, py, px] = torch.tensor([1.0, 0.0, 1.0]) if i % 2 else torch.tensor([0.0, 1.0, 1.0])
    return rgb, alpha


def stamp(images: torch.Tensor, spec: SyntheticSpec) -> torch.Tensor:
    """A copy of `images` [N,3,S,S] with the spec's artifact stamped on its box."""
    x, y, w, h = spec.resolved_box
    rgb, alpha = artifact_patch(spec)
    out = images.clone()
    region = out[:, :, y : y + h, x : x + w]
    a = alpha.to(images.device).view(1, 1, h, w)
    region.copy_(torch.where(a, rgb.to(images.device).unsqueeze(0), region))
    return out


def generate(spec: SyntheticSpec, indices: Sequence[int] | None = None) -> SyntheticData:
    """Generate images `indices` (default: all `spec.n`) of the task, balanced over the classes.

    Image i depends only on (seed, i), so a shard generates just its own images and gets the very
    same ones a whole run would.
    """
    s, n = spec.size, spec.n
    rows = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise SyntheticSpecError(f"image indices must lie in 0..{n - 1}")
    all_labels = np.arange(n) % spec.classes
    np.random.default_rng(spec.seed).shuffle(all_labels)
    labels = all_labels[rows]
    images = np.empty((len(rows), 3, s, s), dtype=np.float32)
    masks = np.empty((len(rows), s, s), dtype=bool)
    has = np.zeros(len(rows), dtype=bool)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    bx, by, bw, bh = spec.resolved_box
    for j, i in enumerate(rows.tolist()):
        rng = np.random.default_rng([spec.seed, i])
        c0, c1 = rng.uniform(0.25, 0.85, size=(2, 3)).astype(np.float32)
        t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) * 0.5 + 0.5
        bg = c0[:, None, None] * (1 - t) + c1[:, None, None] * t
        bg += rng.normal(0, 0.04, size=(3, s, s)).astype(np.float32)
        r = rng.uniform(0.2, 0.3) * s
        # Keep the shape clear of the artifact box so the box carries the shortcut alone.
        for _ in range(20):
            cx, cy = rng.uniform(0.3, 0.7, size=2) * s
            if not (bx - r < cx < bx + bw + r and by - r < cy < by + bh + r) or spec.artifact == "border":
                break
        m = _shape_mask(SHAPES[labels[j]], s, cx, cy, r, rng.uniform(0, np.pi))
        # Contrast with the local background so the shape, not the artifact, is the easy cue.
        colour = np.clip(1.0 - bg.mean(axis=(1, 2)) + rng.uniform(-0.2, 0.2, size=3), 0.02, 0.98)
        colour = colour.astype(np.float32)
        images[j] = np.where(m[None], colour[:, None, None], bg)
        masks[j] = m
        has[j] = spec.artifact != "none" and labels[j] == spec.artifact_class and rng.random() < spec.fraction
    imgs = torch.from_numpy(images).clamp_(0, 1)
    carriers = torch.from_numpy(has)
    if bool(carriers.any()):
        imgs[carriers] = stamp(imgs[carriers], spec)
    lab = torch.from_numpy(labels.astype(np.int64))
    return SyntheticData(imgs, lab, torch.from_numpy(masks), carriers, spec, spec.class_names)
