"""The colour screen's resolution: the smallest whole-class cast it passes at a sample size."""

from __future__ import annotations

import torch

from auditors.audits.spurious_signal.global_shift import MIN_Z, colour_z
from auditors.zoo.planted import task_images


def _shapes(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return task_images("shapes", n, size=16, classes=4, seed=4)


def test_a_cast_past_the_resolution_passes_the_screen_and_one_well_below_it_does_not() -> None:
    x, y = _shapes(160)
    z, res = colour_z(x, y, [0, 1, 2, 3], n_perm=100, seed=0)
    assert set(res) == {0, 1, 2, 3} and all(r > 0 for r in res.values())
    assert all(v < MIN_Z for v in z.values())  # clean: no class is tinted beyond chance
    for factor, passes in ((1.5, True), (0.4, False)):
        cast = x.clone()
        own = y == 2
        shift = torch.tensor([1.0, 0.0, -1.0]) / 2**0.5 * res[2] * factor
        cast[own] = cast[own] + shift.view(1, 3, 1, 1)
        assert (colour_z(cast, y, [2], n_perm=100, seed=0)[0][2] >= MIN_Z) is passes, factor


def test_the_resolution_shrinks_with_the_images_per_class() -> None:
    small = colour_z(*_shapes(80), [0, 1, 2, 3], n_perm=100, seed=0)[1]
    large = colour_z(*_shapes(640), [0, 1, 2, 3], n_perm=100, seed=0)[1]
    ratio = sum(large.values()) / sum(small.values())
    assert 0.2 < ratio < 0.5  # about 1 / sqrt(8)
