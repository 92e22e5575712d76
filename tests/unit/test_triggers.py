"""The planted trigger kinds: each changes the images where it says, and only there."""

from __future__ import annotations

import pytest
import torch

from auditors.zoo.photos import available, photo_images
from auditors.zoo.triggers import FIXED, GLOBAL, KINDS, MOVING, Trigger


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return photo_images(12, size=32, classes=4, seed=0)[0]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_the_image_and_reports_where(kind: str, images: torch.Tensor) -> None:
    trig = Trigger(kind)
    out, boxes = trig.apply(images, list(range(len(images))))
    assert out.shape == images.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert len(boxes) == len(images)
    assert float((out - images).abs().mean()) > 1e-3
    if kind in GLOBAL:
        assert trig.placement == "global" and boxes[0] == (0, 0, 32, 32)
        return
    outside = torch.ones(len(images), 32, 32, dtype=torch.bool)
    for i, (x, y, w, h) in enumerate(boxes):
        outside[i, y : y + h, x : x + w] = False
    changed = (out - images).abs().amax(1) > 1e-6
    assert not bool((changed & outside).any()), "a local mark changed pixels outside its box"


def test_fixed_marks_stay_put_and_moving_marks_move(images: torch.Tensor) -> None:
    for kind in FIXED:
        _, boxes = Trigger(kind).apply(images, list(range(len(images))))
        assert len(set(boxes)) == 1 and boxes[0] == Trigger(kind).box
    for kind in MOVING:
        _, boxes = Trigger(kind).apply(images, list(range(len(images))))
        assert len(set(boxes)) > 3 and Trigger(kind).box is None


def test_per_image_choices_depend_only_on_the_key(images: torch.Tensor) -> None:
    a, ba = Trigger("moving_tag").apply(images[:4], [10, 11, 12, 13])
    b, bb = Trigger("moving_tag").apply(images[2:4], [12, 13])
    assert ba[2:] == bb and torch.equal(a[2:], b)


def test_bad_input_says_what_to_fix(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="unknown trigger kind"):
        Trigger("sticker")
    with pytest.raises(ValueError, match="one key per image"):
        Trigger("patch").apply(images, [0])


def test_the_photo_task_uses_bundled_photographs_only() -> None:
    assert len(available()) >= 4
    x, y = photo_images(400, size=32, classes=4, seed=3)
    x2, _ = photo_images(400, size=32, classes=4, seed=3)
    assert torch.equal(x, x2) and sorted(set(y.tolist())) == [0, 1, 2, 3]
    # Colour is not the class (a random tint per image): the class mean colours lie close together,
    # while the photographs' structure differs (contrast of the grey crops).
    means = torch.stack([x[y == k].mean((0, 2, 3)) for k in range(4)])
    assert float(torch.cdist(means, means).max()) < 0.1
    spread = torch.stack([x[y == k].std((1, 2, 3)).mean() for k in range(4)])
    assert float(spread.max() - spread.min()) > 0.05
    with pytest.raises(ValueError, match="classes"):
        photo_images(4, size=32, classes=99, seed=0)


def test_grain_is_fresh_in_every_image_and_the_same_for_the_same_key(images: torch.Tensor) -> None:
    """A sensor's grain is no shared pattern: two images get different noise, a rerun the same."""
    same = images[:1].expand(2, -1, -1, -1)
    out, _ = Trigger("noise").apply(same, [0, 1])
    again, _ = Trigger("noise").apply(same, [0, 1])
    assert torch.equal(out, again) and float((out[0] - out[1]).abs().mean()) > 0.02
