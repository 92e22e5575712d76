"""Low-level image statistics and the transforms that set them."""

from __future__ import annotations

import pytest
import torch

from auditors.methods.image_stats import STATS, measure, set_level
from auditors.zoo.photos import photo_images
from auditors.zoo.triggers import Trigger


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return photo_images(24, size=32, classes=4, seed=1)[0]


@pytest.mark.parametrize(
    ("kind", "stat", "sign"),
    [("blur", "sharpness", -1), ("jpeg", "blockiness", 1), ("cast", "warmth", 1), ("blend", "noise", 1)],
)
def test_each_source_artifact_moves_its_statistic(
    kind: str, stat: str, sign: int, images: torch.Tensor
) -> None:
    before = measure(images, (stat,))[stat]
    after = measure(Trigger(kind).apply(images, list(range(len(images))))[0], (stat,))[stat]
    assert float(((after - before) * sign > 0).float().mean()) >= 0.9


@pytest.mark.parametrize("stat", STATS)
def test_set_level_moves_a_statistic_to_its_target(stat: str, images: torch.Tensor) -> None:
    m = measure(images, (stat,))[stat]
    target = float(m.mean() + m.std())
    out = set_level(images, stat, target)
    assert out.shape == images.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    got = measure(out, (stat,))[stat]
    # Closer to the target than before for most images (clipping to [0,1] limits a few).
    closer = (got - target).abs() < (m - target).abs() + 1e-6
    assert float(closer.float().mean()) >= 0.75


def test_unknown_statistic_is_a_clear_error(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="unknown statistic"):
        set_level(images, "vibe", 1.0)
    with pytest.raises(ValueError, match="RGB"):
        measure(images[:, :1])
