"""Saliency methods on a linear model, where every attribution is known in closed form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from auditors.methods.saliency import METHODS, SaliencyError, box_share, grid_boxes, saliency_maps, top_q_mask

ZERO = (0.0, 0.0, 0.0)
ONE = (1.0, 1.0, 1.0)


def _linear(weight: torch.Tensor) -> nn.Module:
    """f(x) = W · flatten(x): two classes, the gradient of class c is W[c] reshaped to the image."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(weight)
    return model.eval()


@pytest.fixture()
def linear() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(2, 3 * 8 * 8, generator=gen)
    images = torch.rand(4, 3, 8, 8, generator=gen)
    return _linear(weight), weight, images


def test_gradient_is_the_weight_magnitude_max_over_channels(
    linear: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, weight, images = linear
    target = torch.tensor([0, 1, 0, 1])
    got = saliency_maps(model, images, "gradient", mean=ZERO, std=ONE, target=target)
    expected = weight[target].view(4, 3, 8, 8).abs().amax(1)
    torch.testing.assert_close(got, expected)


def test_gradient_squared_sums_squares_and_honours_normalisation(
    linear: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, weight, images = linear
    target = torch.zeros(4, dtype=torch.long)
    got = saliency_maps(model, images, "gradient_squared", mean=(0.5,) * 3, std=(0.25,) * 3, target=target)
    # x is normalised as (x - 0.5) / 0.25 inside, so d f / d x = W / 0.25.
    expected = (weight[0].view(3, 8, 8) / 0.25).pow(2).sum(0).expand(4, -1, -1)
    torch.testing.assert_close(got, expected)


def test_smoothgrad_of_a_linear_model_equals_its_gradient(
    linear: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, _, images = linear
    plain = saliency_maps(model, images, "gradient", mean=ZERO, std=ONE)
    smooth = saliency_maps(model, images, "smoothgrad", mean=ZERO, std=ONE, n_samples=3, seed=1)
    torch.testing.assert_close(smooth, plain)


def test_integrated_gradients_is_input_minus_mean_times_weight(
    linear: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    model, weight, images = linear
    mean = (0.2, 0.4, 0.6)
    target = torch.ones(4, dtype=torch.long)
    got = saliency_maps(model, images, "integrated_gradients", mean=mean, std=ONE, target=target, steps=4)
    base = torch.tensor(mean).view(1, 3, 1, 1)
    expected = ((images - base) * weight[1].view(1, 3, 8, 8)).abs().sum(1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_occlusion_lights_up_only_the_box_the_model_reads() -> None:
    # Class 0 reads only the 2x2 patch at (4,4): removing it (mean fill) is the only occlusion that matters.
    weight = torch.zeros(2, 3, 8, 8)
    weight[0, :, 4:6, 4:6] = 5.0
    model = _linear(weight.view(2, -1))
    images = torch.ones(3, 3, 8, 8)
    maps = saliency_maps(model, images, "occlusion", mean=ZERO, std=ONE, patch_size=2, strategy="mean")
    assert maps.shape == (3, 8, 8)
    assert bool((maps[:, 4:6, 4:6] > 0.4).all())
    outside = maps.clone()
    outside[:, 4:6, 4:6] = 0
    assert float(outside.abs().max()) == 0.0


def test_top_q_counts_pixels_and_box_share_counts_them_in_the_box() -> None:
    maps = torch.zeros(2, 10, 10)
    maps[0, 0:2, 0:2] = 1.0  # image 0: all 4 top pixels in the box
    maps[1, 8:10, 8:10] = 1.0  # image 1: none
    top, k = top_q_mask(maps, 0.04)
    assert k == 4
    assert top.flatten(1).sum(1).tolist() == [4, 4]
    assert box_share(top, (0, 0, 3, 3)).tolist() == [1.0, 0.0]


def test_grid_boxes_tile_the_image() -> None:
    boxes = grid_boxes(8, 8, 4, 4)
    assert boxes == [(0, 0, 4, 4), (4, 0, 4, 4), (0, 4, 4, 4), (4, 4, 4, 4)]


def test_unknown_method_is_refused_with_the_list() -> None:
    model = _linear(torch.zeros(2, 3 * 8 * 8))
    with pytest.raises(SaliencyError, match="available"):
        saliency_maps(model, torch.rand(1, 3, 8, 8), "lrp", mean=ZERO, std=ONE)
    assert "integrated_gradients" in METHODS
