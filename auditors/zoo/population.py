"""A planted population: many trigger kinds, bias levels, architectures and tasks, with clean twins.

One planted model says little about an audit's validity; a population does. A `PopCase` names a task
(`shapes`: synthetic; `photos`: crops of real photographs), a trigger kind (`auditors.zoo.triggers`),
a bias (the share of the shortcut class's images that carry it), an architecture and a seed. `build`
generates the data, trains the tiny model and *verifies* it uses the shortcut: the trigger is applied
to other classes' images and the share that turn into the class (the stamp flip) is measured, so a
benchmark holds discovery only to shortcuts the model really uses. A clean twin (`kind="none"`) has the
same task, architecture and seed without a trigger; a weak twin is also trained for too few epochs,
so low-accuracy clean models are in the population too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from auditors.zoo.photos import photo_images
from auditors.zoo.planted import task_images
from auditors.zoo.triggers import Box, Trigger

TASKS = ("shapes", "photos")
CNN, VIT = "occulta_resnet_tiny", "occulta_vit_tiny"
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class PopCase:
    """One model of the population; `kind="none"` is a clean twin, `weak` trains it briefly."""

    task: str
    kind: str
    bias: float
    arch: str
    seed: int = 0
    weak: bool = False
    cls: int = 0
    size: int = 32
    classes: int = 4
    n_train: int = 2000
    n_audit: int = 400

    @property
    def name(self) -> str:
        short = "cnn" if "resnet" in self.arch else "vit"
        px = "" if self.size == 32 else f"-{self.size}px"  # the population's own size goes unnamed
        if self.kind == "none":
            return f"{self.task}-clean{'-weak' if self.weak else ''}-{short}-s{self.seed}{px}"
        return f"{self.task}-{self.kind}-{self.bias:g}-{short}-s{self.seed}{px}"

    @property
    def trigger(self) -> Trigger | None:
        return None if self.kind == "none" else Trigger(self.kind, self.size, self.seed)

    def twin(self, weak: bool = False) -> PopCase:
        return replace(self, kind="none", bias=0.0, weak=weak)


def images_of(task: str, n: int, *, size: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean images and labels of a population task."""
    if task == "photos":
        return photo_images(n, size=size, classes=classes, seed=seed)
    return task_images(task, n, size=size, classes=classes, seed=seed)


@dataclass
class PopData:
    images: torch.Tensor
    labels: torch.Tensor
    carries: torch.Tensor  # [N] bool
    boxes: dict[int, Box]  # image index -> where its trigger is


def dataset(case: PopCase, n: int, seed: int) -> PopData:
    """`n` images with the trigger on a `bias` share of class `cls`; keys = seed*100000 + index."""
    images, labels = images_of(case.task, n, size=case.size, classes=case.classes, seed=seed)
    gen = torch.Generator().manual_seed(seed + 17)
    carries = (labels == case.cls) & (torch.rand(n, generator=gen) < case.bias)
    boxes: dict[int, Box] = {}
    trig = case.trigger
    idx = carries.nonzero().flatten()
    if trig is not None and idx.numel():
        stamped, bx = trig.apply(images[idx], (idx + seed * 100_000).tolist())
        images[idx] = stamped
        boxes = dict(zip(idx.tolist(), bx, strict=True))
    return PopData(images, labels, carries, boxes)


@dataclass
class Built:
    case: PopCase
    model: nn.Module
    audit: PopData
    accuracy: float  # on the audit images (same bias as training)
    clean_accuracy: float  # on the audit images without any trigger
    stamp_flip: float | None
    n_flip: int


def model_for(case: PopCase) -> nn.Module:
    """The case's untrained model (seeded)."""
    import timm

    import auditors.zoo.architectures  # noqa: F401  (registers the tiny archs with timm)

    torch.manual_seed(case.seed)
    if "vit" in case.arch:
        return timm.create_model(case.arch, num_classes=case.classes, img_size=case.size)
    return timm.create_model(case.arch, num_classes=case.classes)


def stamp_flip(model: nn.Module, data: PopData, case: PopCase) -> tuple[float | None, int]:
    """Share of audit images neither labelled nor predicted `cls` that the trigger turns into `cls`
    (how much the model uses it), with their count; None for a clean twin."""
    from auditors.engine import plain_logits

    trig = case.trigger
    if trig is None:
        return None, 0
    pred = plain_logits(model, data.images, mean=MEAN, std=STD).argmax(1)
    other = ((pred != case.cls) & (data.labels != case.cls)).nonzero().flatten()
    if other.numel() == 0:
        return 0.0, 0
    x, _ = trig.apply(data.images[other], (other + 7_000_000).tolist())
    flipped = plain_logits(model, x, mean=MEAN, std=STD).argmax(1) == case.cls
    return float(flipped.float().mean()), int(other.numel())


def build(case: PopCase) -> Built:
    """Train the case's model on its data and verify how much it uses the trigger."""
    from auditors.engine import plain_logits
    from auditors.zoo.training import train_classifier

    train = dataset(case, case.n_train, case.seed)
    audit = dataset(case, case.n_audit, case.seed + 1000)
    model = model_for(case)
    vit = "vit" in case.arch
    epochs = (10 if vit else 5) if not case.weak else 1
    n_fit = case.n_train if not case.weak else case.n_train // 4
    train_classifier(
        model,
        train.images[:n_fit],
        train.labels[:n_fit],
        mean=MEAN,
        std=STD,
        epochs=epochs,
        lr=1e-3 if vit else 3e-3,
        seed=case.seed,
    )
    model.eval()
    pred = plain_logits(model, audit.images, mean=MEAN, std=STD).argmax(1)
    acc = float((pred == audit.labels).float().mean())
    clean, _ = images_of(case.task, case.n_audit, size=case.size, classes=case.classes, seed=case.seed + 1000)
    clean_pred = plain_logits(model, clean, mean=MEAN, std=STD).argmax(1)
    clean_acc = float((clean_pred == audit.labels).float().mean())
    flip, n = stamp_flip(model, audit, case)
    return Built(case, model, audit, acc, clean_acc, flip, n)
