"""Marks whose colour changes from image to image: the gradient screen says where, the structure
screen that the class's images share a shape there, the transplant and removal that the model
depends on it; a model that reads the class's content, and a box that holds every class's object,
fail none of it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from auditors.audits.spurious_signal.boxes import iou
from auditors.audits.spurious_signal.located import (
    judge_located,
    located_tests,
    model_test,
    peak_box,
    structure_z,
)
from auditors.audits.spurious_signal.nulls import Probe
from auditors.zoo.planted import task_images
from auditors.zoo.triggers import Trigger

NAMES = ["class0", "class1", "class2", "class3"]


def _box(size: int = 32) -> tuple[int, int, int, int]:
    box = Trigger("recolour_tag", size, 0).box
    assert box is not None
    return box


BOX = _box()


def _shapes(
    n: int = 160, seed: int = 5, tagged: bool = True, size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = task_images("shapes", n, size=size, classes=4, seed=seed)
    if tagged:
        own = (y == 0).nonzero().flatten()
        x[own] = Trigger("recolour_tag", size, 0).apply(x[own], own.tolist())[0]
    return x, y


def _glyph(size: int) -> torch.Tensor:
    """The tag's letter inside its box (`Trigger._recolour_tag`)."""
    x, _ = Trigger("recolour_tag", size, 0).apply(torch.ones(1, 3, size, size), [0])
    bx, by, w, h = _box(size)
    box = x[0, :, by : by + h, bx : bx + w].sum(0)
    return box < 0.5 * box.max()  # the ink is a third of the square's colour


class _TagReader(nn.Module):
    """Class 0 when the tag's square is lighter than its letter (whatever their colour), else the
    class a fixed reading of the mean colour gives: a model that learned the recoloured tag."""

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        self.box = _box(size)
        self.register_buffer("glyph", _glyph(size).float())
        self.w = nn.Parameter(
            torch.tensor([[0.0, 1.0, -1.0, 0.5], [0.0, -0.5, 1.0, 1.0], [0.0, 0.5, 0.0, -1.0]])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bx, by, w, h = self.box
        box = x[:, :, by : by + h, bx : bx + w]
        g = self.glyph
        fill = (box * (1 - g)).sum((2, 3)) / (1 - g).sum()
        ink = (box * g).sum((2, 3)) / g.sum()
        contrast = (fill - ink).mean(1)  # in normalised units: about 1.4 on a tag, near 0 elsewhere
        logits = x.mean((2, 3)) @ self.w
        return logits + torch.stack([6 * contrast - 3, *(torch.zeros_like(contrast),) * 3], 1)


class _ContentReader(_TagReader):
    """The same colour reading without the tag: a clean model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)) @ self.w


def _run(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[dict[str, Any]]:
    probe = Probe(model.eval(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "mean", 0)
    pred = probe.probs(x).argmax(1)
    out = located_tests(
        probe,
        x,
        y,
        pred,
        y,
        [0, 1, 2, 3],
        max_tests=2,
        max_images=128,
        class_names=NAMES,
        min_flip=0.1,
        alpha=0.05,
    )
    return judge_located(out["results"], NAMES, 0.05, 0.1)[1]


def test_the_structure_screen_sees_a_recoloured_tag_and_not_clean_content() -> None:
    x, y = _shapes()
    assert structure_z(x, y, 0, BOX, seed=0) >= 4
    clean, yc = _shapes(tagged=False)
    assert structure_z(clean, yc, 0, BOX, seed=0) < 4


def test_a_peak_box_is_tight_around_one_place_and_none_when_spread() -> None:
    excess = torch.zeros(32, 32)
    excess[25:30, 2:7] = 1.0
    excess[10, 20] = 0.4  # below half the peak
    assert peak_box(excess) == (2, 25, 5, 5)
    assert peak_box(torch.ones(32, 32)) is None


@pytest.mark.parametrize("size", [32, 128])  # 128 px: maps summed over 2 x 2 cells (`located.cell`)
def test_a_model_that_reads_a_recoloured_tag_is_found_at_its_box(size: int) -> None:
    x, y = _shapes(size=size)
    shortcuts = _run(_TagReader(size), x, y)
    assert [r["class_index"] for r in shortcuts] == [0]
    hit = shortcuts[0]
    # The gradients' box is coarser; the reported one is the tag's outline (`located.tighten`).
    assert iou(hit["box"], _box(size)) >= 0.5 and iou(hit["gradient_box"], _box(size)) < iou(
        hit["box"], _box(size)
    )
    assert hit["structure_z"] >= 4 and hit["flip"]["value"] > 0.5
    assert hit["nulls"]["other_content"]["flip"] < 0.1 and hit["nulls"]["elsewhere"]["flip"] < 0.1
    assert hit["severity"] == "shortcut" and hit["holds_content"]["p_value"] >= 0.05
    assert hit["examples"]  # a carrier, it without the box, another class's image with it


def test_a_clean_model_and_clean_data_give_no_located_mark() -> None:
    clean, yc = _shapes(tagged=False)
    assert _run(_TagReader(), clean, yc) == []
    x, y = _shapes()
    assert _run(_ContentReader(), x, y) == []


def test_a_box_that_holds_every_class_s_object_is_not_judged() -> None:
    row = {
        "class_index": 1,
        "box": [10, 10, 8, 8],
        "placement": "fixed",
        "flip": {"value": 0.8, "lo": 0.7, "hi": 0.9, "n": 100, "p_value": 0.001, "null_mean": 0.5},
        "p_value": 0.001,
        "holds_content": {"changed": 0.7, "changed_at_random_places": 0.4, "p_value": 0.001},
        "removal": None,
    }
    results, shortcuts = judge_located([row], NAMES, 0.05, 0.1)
    assert shortcuts == [] and results[0]["severity"] == "none" and "holds the objects" in results[0]["why"]


def test_a_class_every_image_is_predicted_as_leaves_no_recipient_and_is_no_error() -> None:
    x, y = _shapes()
    probe = Probe(_TagReader().eval(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "mean", 0)
    row = {
        "class_index": 0,
        "placement": "fixed",
        "box": list(BOX),
        "z": 9.0,
        "_carriers": (y == 0).nonzero().flatten(),
    }
    out = model_test(
        probe,
        x,
        y,
        torch.zeros_like(y),
        y,
        row,
        max_images=128,
        seed=0,
        class_names=NAMES,
        min_flip=0.1,
        alpha=0.05,
    )
    assert out["flip"]["n"] == 0 and out["holds_content"]["p_value"] == 1.0
