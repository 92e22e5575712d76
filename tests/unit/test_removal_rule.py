"""The removal-strategy rule: native missingness first, else the closest non-constant fill; a constant
fill or noise is never the remedy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from auditors.methods.removal import distribution_change, is_remedy, rank_strategies, recommend


def test_the_change_is_absolute_so_scattering_predictions_does_not_win():
    clean = [0, 0, 1, 1]
    assert distribution_change(clean, [0, 0, 1, 1], 4) == 0.0
    assert distribution_change(clean, [2, 3, 2, 3], 4) == 1.0
    # Spreading predictions over more classes raises entropy (a negative "drop") but is still a change.
    assert distribution_change(clean, [0, 1, 2, 3], 4) == pytest.approx(0.5)


def test_native_missingness_is_preferred_even_when_a_fill_scores_closer():
    changes = {"black": 0.6, "mean": 0.01, "noise": 0.0, "blur": 0.2, "layer_mask": 0.3}
    assert rank_strategies(changes)[:3] == ["layer_mask", "noise", "mean"]
    assert recommend(changes) == "layer_mask"


@pytest.mark.parametrize("fill", ["black", "grey", "mean", "color:255,0,0", "random_color", "noise"])
def test_a_constant_fill_or_noise_is_never_the_remedy(fill):
    assert not is_remedy(fill)
    assert recommend({fill: 0.0, "blur": 0.4}) == "blur"
    assert recommend({fill: 0.0}) is None


def test_a_failing_strategy_is_not_recommended():
    changes = {"token_drop": 0.05, "blur": 0.3, "black": 0.7}
    assert recommend(changes, failing={"token_drop"}) == "blur"
    assert recommend(changes, failing={"token_drop", "blur"}) is None


def test_the_chooser_removes_with_native_missingness_whenever_it_applies(planted_resnet):
    from auditors.audits.spurious_signal.counterfactual import choose_removal_strategy

    p = planted_resnet
    order = torch.argsort(p.test.labels, stable=True)  # class by class: a prefix is one class
    strategy, measured = choose_removal_strategy(
        p.model, p.test.images[order], mean=p.mean, std=p.std, patch_size=4, seed=0, n_images=16
    )
    assert strategy == "layer_mask" and set(measured) == {"layer_mask", "blur"}
    assert all(m["n"] == 16 and 0 <= m["distribution_change"] <= 1 for m in measured.values())


def test_without_native_missingness_the_chooser_uses_blur_never_a_constant_fill():
    from auditors.audits.spurious_signal.counterfactual import choose_removal_strategy

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    images = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    strategy, measured = choose_removal_strategy(
        model.eval(), images, mean=(0.5,) * 3, std=(0.25,) * 3, patch_size=4, seed=0
    )
    assert strategy == "blur" and set(measured) == {"blur"} and is_remedy(strategy)
