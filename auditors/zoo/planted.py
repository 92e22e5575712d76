"""Planted-truth cases for the spurious-signal audit: shortcuts of several kinds, places and strengths.

One audit verdict on one planted model says little. A `Case` names a task, an artifact kind, a place, a
bias (the share of the shortcut class's images that carry the artifact) and an architecture; `build`
generates the data, plants the artifact, trains the tiny model and *measures* how much the model uses
the shortcut (the share of other-class images that flip to the class when the artifact is stamped on
them), so a benchmark can hold discovery to the cases where the shortcut is really used. Every case
has a clean twin (`kind="none"`): the same task, architecture and seed, no artifact, which must give
no finding at all.

Tasks: `shapes` (auditors.synthetic: a shape per class) and `stripes` (a disc of stripes whose
orientation is the class), so the object is a form in one and a texture in the other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from auditors.zoo.synthetic import SyntheticSpec, generate

TASKS = ("shapes", "stripes")
KINDS = ("patch", "bar", "texture", "glyph", "tint")
PLACES = ("corner", "edge", "centre")
ARCHS = ("occulta_resnet_tiny", "occulta_vit_tiny")
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
Box = tuple[int, int, int, int]

# Sizes (w, h) at 32 px: a small square, a thin bar, a two-colour texture, two text-like letters.
_SIZES = {"patch": (4, 4), "bar": (11, 2), "texture": (6, 6), "glyph": (7, 5)}
_TINT = (0.14, -0.07, -0.07)


@dataclass(frozen=True)
class Case:
    """One planted model. `kind="none"` is a clean twin; `tint` is global (no box)."""

    task: str
    kind: str
    place: str
    bias: float
    arch: str
    cls: int = 0
    seed: int = 0
    size: int = 32
    classes: int = 4
    n_train: int = 2000
    n_audit: int = 160

    @property
    def name(self) -> str:
        short = "cnn" if "resnet" in self.arch else "vit"
        if self.kind == "none":
            return f"{self.task}-clean-{short}-s{self.seed}"
        return f"{self.task}-{self.kind}-{self.place}-{self.bias:g}-{short}-s{self.seed}"

    @property
    def local(self) -> bool:
        return self.kind not in ("none", "tint")

    @property
    def box(self) -> Box | None:
        """[x, y, w, h] of a local artifact in model-input pixels; None for a global or no artifact."""
        if not self.local:
            return None
        w, h = _SIZES[self.kind]
        if self.place == "edge" and self.kind == "bar":
            w, h = h, w  # a vertical bar along the left edge
        s = self.size
        if self.place == "corner":
            return (s - w - 1, s - h - 1, w, h)
        if self.place == "edge":
            return (1, (s - h) // 2, w, h)
        return ((s - w) // 2, (s - h) // 2, w, h)

    def twin(self) -> Case:
        return replace(self, kind="none", place="-", bias=0.0)


def artifact(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """The local artifact as (rgb [3,h,w] in [0,1], alpha [h,w] bool)."""
    box = case.box
    if box is None:
        raise ValueError(f"case {case.name} has no local artifact")
    _, _, w, h = box
    rgb = torch.zeros(3, h, w)
    alpha = torch.ones(h, w, dtype=torch.bool)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    if case.kind == "bar":
        rgb[:] = 1.0
    elif case.kind == "texture":
        on = (yy + xx) % 2 == 0
        rgb[0] = torch.where(on, 1.0, 0.1)
        rgb[1] = torch.where(on, 0.9, 0.1)
        rgb[2] = 0.05
    elif case.kind == "glyph":
        # Two 3x5 pixel letters ("T" and "L") with a one-pixel gap: a text-like mark, background shows.
        t = (yy == 0) | (xx == 1)
        ell = (xx == 4) | (yy == h - 1)
        alpha = torch.where(xx < 3, t, (xx >= 4) & ell)
        rgb[2] = 0.6
    return rgb, alpha


def _stamp(images: torch.Tensor, case: Case) -> torch.Tensor:
    out = images.clone()
    if case.kind == "tint":
        shift = torch.tensor(_TINT).view(1, 3, 1, 1)
        return (out + shift).clamp(0, 1)
    box = case.box
    assert box is not None
    x, y, w, h = box
    rgb, alpha = artifact(case)
    region = out[:, :, y : y + h, x : x + w]
    region.copy_(torch.where(alpha.view(1, 1, h, w), rgb.unsqueeze(0), region))
    return out


def stamp(images: torch.Tensor, case: Case) -> torch.Tensor:
    """A copy of `images` carrying the case's artifact (a tint for `tint`)."""
    if case.kind == "none":
        return images.clone()
    return _stamp(images, case)


def _stripes(n: int, size: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A disc of stripes at a random place on a noisy gradient; the stripes' orientation is the class."""
    labels = np.arange(n) % classes
    np.random.default_rng(seed).shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, i, 7])
        c0, c1 = rng.uniform(0.25, 0.85, size=(2, 3)).astype(np.float32)
        t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) / size * 0.5 + 0.5
        bg = c0[:, None, None] * (1 - t) + c1[:, None, None] * t + rng.normal(0, 0.04, (3, size, size))
        r = rng.uniform(0.22, 0.32) * size
        cx, cy = rng.uniform(0.3, 0.7, size=2) * size
        angle = np.pi * labels[i] / classes + rng.normal(0, 0.08)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / rng.uniform(3.5, 5.0))
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
        colour = np.clip(1.0 - bg.mean(axis=(1, 2)) + rng.uniform(-0.2, 0.2, 3), 0.02, 0.98)
        on = disc & (np.sin(phase + rng.uniform(0, 2 * np.pi)) > 0)
        images[i] = np.where(on[None], colour[:, None, None], bg)
    return torch.from_numpy(images).clamp_(0, 1), torch.from_numpy(labels.astype(np.int64))


def task_images(
    task: str, n: int, *, size: int, classes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean images [n,3,S,S] in [0,1] and labels of a task."""
    if task == "shapes":
        data = generate(SyntheticSpec(classes=classes, size=size, n=n, artifact="none", seed=seed))
        return data.images, data.labels
    if task == "stripes":
        return _stripes(n, size, classes, seed)
    raise ValueError(f"unknown task {task!r}; available: {', '.join(TASKS)}")


@dataclass
class Dataset:
    images: torch.Tensor
    labels: torch.Tensor
    carries: torch.Tensor  # [N] bool: which images carry the artifact


def dataset(case: Case, n: int, seed: int) -> Dataset:
    """`n` images of the case's task with the artifact on a `bias` share of class `cls` (seeded)."""
    images, labels = task_images(case.task, n, size=case.size, classes=case.classes, seed=seed)
    gen = torch.Generator().manual_seed(seed + 17)
    carries = (labels == case.cls) & (torch.rand(n, generator=gen) < case.bias)
    if case.kind != "none" and bool(carries.any()):
        images[carries] = stamp(images[carries], case)
    return Dataset(images, labels, carries)


@dataclass
class Planted:
    case: Case
    model: nn.Module
    audit: Dataset  # held-out images with the same bias: what an audit is run on
    accuracy: float
    stamp_flip: float | None  # share of other-class images predicted `cls` once stamped; None if clean
    n_flip: int


def _model(case: Case) -> nn.Module:
    import timm

    import auditors.zoo.architectures  # noqa: F401  (registers the tiny archs with timm)

    torch.manual_seed(case.seed)
    if "vit" in case.arch:
        return timm.create_model(case.arch, num_classes=case.classes, img_size=case.size)
    return timm.create_model(case.arch, num_classes=case.classes)


def measured_flip(model: nn.Module, data: Dataset, case: Case) -> tuple[float | None, int]:
    """Share of the audit images neither labelled nor predicted `cls` that the stamp turns into `cls`:
    how much the trained model really uses its shortcut (None, 0 for a clean twin)."""
    from auditors.engine import plain_logits

    if case.kind == "none":
        return None, 0
    pred = plain_logits(model, data.images, mean=MEAN, std=STD).argmax(1)
    other = (pred != case.cls) & (data.labels != case.cls)
    n = int(other.sum())
    if n == 0:
        return 0.0, 0
    stamped = plain_logits(model, stamp(data.images[other], case), mean=MEAN, std=STD).argmax(1)
    return float((stamped == case.cls).float().mean()), n


def build(case: Case, *, epochs: int | None = None) -> Planted:
    """Train the case's model on its planted data and measure its accuracy and stamp flip rate."""
    from auditors.engine import plain_logits
    from auditors.zoo.training import train_classifier

    train = dataset(case, case.n_train, case.seed)
    audit = dataset(case, case.n_audit, case.seed + 1000)
    model = _model(case)
    vit = "vit" in case.arch
    train_classifier(
        model,
        train.images,
        train.labels,
        mean=MEAN,
        std=STD,
        epochs=epochs or (10 if vit else 5),
        lr=1e-3 if vit else 3e-3,
        seed=case.seed,
    )
    model.eval()
    pred = plain_logits(model, audit.images, mean=MEAN, std=STD).argmax(1)
    acc = float((pred == audit.labels).float().mean())
    flip, n = measured_flip(model, audit, case)
    return Planted(case, model, audit, acc, flip, n)
