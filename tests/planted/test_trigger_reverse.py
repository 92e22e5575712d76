"""Trigger reverse-engineering: the class a small mark decides needs the smallest mask, found where
the mark acts. The model is built by hand so the truth is exact: class 0 answers a 4x4 magenta mark
at a fixed place; the other seven classes answer spread-out colour directions that no small mask
reaches, as an honestly trained class does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from auditors.methods.trigger import anomaly_index, match_positions, prescreen, reverse_engineer

BOX = (22, 5, 4, 4)  # x, y, w, h of the mark class 0 answers
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class MarkModel(nn.Module):
    """Class 0's logit: how magenta the BOX is (a shortcut); classes 1-7: fixed random whole-image
    colour projections (the 'object'), so reaching them needs a large mask."""

    def __init__(self, moving: bool = False) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.proj = nn.Parameter(torch.randn(7, 3, 32, 32, generator=gen) / 32, requires_grad=False)
        self.moving = moving

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * 0.25 + 0.5  # back to [0, 1]
        magenta = x[:, 0] + x[:, 2] - 2 * x[:, 1]  # [N, 32, 32]
        if self.moving:  # answers the mark anywhere: the best 4x4 window
            mark = nn.functional.avg_pool2d(magenta.unsqueeze(1), 4, stride=1).flatten(1).amax(1)
        else:
            x0, y0, w, h = BOX
            mark = magenta[:, y0 : y0 + h, x0 : x0 + w].mean((1, 2))
        rest = torch.einsum("nchw,kchw->nk", x - 0.5, self.proj) * 4
        return torch.cat([((mark - 0.5) * 60).unsqueeze(1), rest], 1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Images of classes 1-7, each its class's colour direction plus noise: confidently its class."""
    gen = torch.Generator().manual_seed(1)
    proto = torch.sign(MarkModel().proj.detach())
    k = torch.arange(96) % 7
    noise = torch.rand(96, 3, 32, 32, generator=gen) * 0.2 - 0.1
    return (0.5 + 0.2 * proto[k] + noise).clamp(0, 1)


def _groups(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model((images - 0.5) / 0.25).argmax(1)


def test_the_shortcut_class_is_the_outlier_and_its_mask_sits_on_the_mark(images: torch.Tensor) -> None:
    model = MarkModel()
    groups = _groups(model, images)
    assert int((groups == 0).sum()) == 0  # no image carries the mark
    found = reverse_engineer(
        model, images, groups, range(8), mean=MEAN, std=STD, placements=("fixed",), steps=150
    )
    sizes = [t.size for t in found]
    index = anomaly_index(sizes)
    assert min(range(8), key=lambda k: sizes[k]) == 0 and index[0] > 2.0, (sizes, index)
    assert max(index[1:]) < 2.0
    box = found[0].box()
    assert box is not None
    x, y, w, h = box
    assert x <= BOX[0] + BOX[2] and BOX[0] <= x + w and y <= BOX[1] + BOX[3] and BOX[1] <= y + h, box
    assert found[0].success >= 0.8


def test_a_moving_arm_finds_a_mark_that_works_anywhere(images: torch.Tensor) -> None:
    model = MarkModel(moving=True)
    groups = _groups(model, images)
    found = reverse_engineer(
        model, images, groups, range(8), mean=MEAN, std=STD, placements=("fixed", "moving"), steps=150
    )
    moving = [t for t in found if t.placement == "moving"]
    assert len(found) == 16 and len(moving) == 8
    assert moving[0].success >= 0.8 and moving[0].size == min(t.size for t in moving)


def test_prescreen_keeps_the_shortcut_class(images: torch.Tensor) -> None:
    model = MarkModel()
    kept = prescreen(model, images, _groups(model, images), range(8), keep=3, mean=MEAN, std=STD)
    assert 0 in kept and len(kept) == 3


def test_match_positions_points_at_the_mark() -> None:
    images = torch.rand(3, 3, 32, 32)
    pattern = torch.zeros(3, 32, 32)
    mask = torch.zeros(32, 32)
    mask[4:8, 20:24] = 1
    pattern[0, 4:8, 20:24] = 1
    for i, (y, x) in enumerate([(2, 3), (20, 10), (26, 26)]):
        images[i, :, y : y + 4, x : x + 4] = pattern[:, 4:8, 20:24]
    score = match_positions(images, mask, pattern)
    best = [divmod(int(s.flatten().argmax()), 32) for s in score]
    assert best == [(2, 3), (20, 10), (26, 26)]


def test_anomaly_index_flags_only_a_small_outlier() -> None:
    assert anomaly_index([10, 11, 9, 10.5, 2])[-1] > 2
    assert max(anomaly_index([10, 11, 9.5, 10.5, 12, 10.2, 9.8])) < 2
    with pytest.raises(ValueError, match="placement"):
        reverse_engineer(
            MarkModel(),
            torch.rand(4, 3, 32, 32),
            torch.zeros(4, dtype=torch.long),
            [0],
            mean=MEAN,
            std=STD,
            placements=("roaming",),
        )
