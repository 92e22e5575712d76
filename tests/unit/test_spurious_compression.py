"""A compression on a minority of a class: the low-level screen's tail quantiles and max-T null, the
one-grey-level floor of blockiness, the similar-change null (`nulls.similar_change`) on hand-made
readers, and severity for a signal that cannot be taken off."""

from __future__ import annotations

import torch
from torch import nn

from auditors.audits.spurious_signal.lowlevel import screen
from auditors.audits.spurious_signal.nulls import Probe, similar_change
from auditors.audits.spurious_signal.severity import annotate, judge
from auditors.methods.image_stats import blockiness
from auditors.zoo.planted import task_images
from auditors.zoo.triggers import jpeg


def _shapes(n: int = 160, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = task_images("shapes", n, size=32, classes=4, seed=seed)
    return (x.clamp(0, 1) * 255 + 0.5).floor() / 255, y  # what a PNG folder gives


def test_blockiness_of_a_nearly_flat_image_is_not_noise_but_a_compressed_one_still_shows_its_grid() -> None:
    gen = torch.Generator().manual_seed(0)
    flat = (0.5 + torch.randint(-1, 2, (20, 3, 32, 32), generator=gen) / 255).clamp(0, 1)
    b = blockiness(flat)
    assert float(b.min()) > 0.8 and float(b.max()) < 1.25  # steps of one grey level are quantisation
    ramp = torch.linspace(0.2, 0.8, 32).view(1, 1, 1, 32).expand(20, 3, 32, 32)
    assert float(blockiness(jpeg(ramp * 0.3 + flat * 0.7, quality=12)).min()) > 1.5


def test_the_screen_finds_a_compression_on_a_sixth_of_a_class_by_its_top_decile() -> None:
    x, y = _shapes()
    own = (y == 0).nonzero().flatten()
    carriers = own[: max(4, own.numel() // 6)]
    x[carriers] = jpeg(x[carriers], quality=12)
    kept, _ = screen(x, y, [0, 1, 2, 3], max_tests=6, seed=0)
    hit = [r for r in kept if r["statistic"] == "blockiness"]
    assert [r["class_index"] for r in hit] == [0]
    assert hit[0]["shift"] > 4 and hit[0]["quantile"] >= 0.8 and hit[0]["data_p_value"] < 0.05
    assert "max-T" in hit[0]["data_correction"]
    # The median image of the class is uncompressed: the class level is read where the carriers are.
    assert hit[0]["class_level"] > float(blockiness(x[own]).median())


def test_the_screen_keeps_nothing_on_clean_classes() -> None:
    for seed in (1, 2):
        x, y = _shapes(seed=seed)
        assert screen(x, y, [0, 1, 2, 3], max_tests=6, seed=seed)[0] == []


class _Reader(nn.Module):
    """Class 1 when the image is blocky (`grid`) or when it differs from its own blur at all (else: a
    model that reacts to any degradation)."""

    def __init__(self, grid: bool) -> None:
        super().__init__()
        self.grid = grid
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grid:
            score = (blockiness(x) - 1.5) * 8
        else:
            rough = (x[..., 1:] - x[..., :-1]).abs().mean((1, 2, 3))
            smooth = torch.exp(-((rough - 0.0215) ** 2) / 2e-7)  # the clean images' own roughness
            score = (0.5 - smooth) * 20
        return torch.stack([torch.zeros_like(score), score], 1) + self.w


def _similar(grid: bool) -> dict[str, object]:
    gen = torch.Generator().manual_seed(0)
    base = torch.linspace(0.2, 0.8, 32).view(1, 1, 1, 32) + torch.rand(40, 3, 1, 1, generator=gen) * 0.1
    x = (base + torch.randn(40, 3, 32, 32, generator=gen) * 0.012).clamp(0, 1)
    changed = jpeg(x, quality=8)
    probe = Probe(_Reader(grid), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "mean", seed=0)
    moved = probe.probs(changed)
    assert float((moved.argmax(1) == 1).float().mean()) > 0.9  # either reader turns on the change
    return similar_change(probe, x, changed, moved, 1, seed=0)


def test_a_model_that_learned_the_compression_beats_noise_of_the_same_energy() -> None:
    learned = _similar(grid=True)
    assert float(learned["excess"]) > 0.8 and float(learned["p_value"]) < 0.01  # type: ignore[arg-type]
    anything = _similar(grid=False)
    assert float(anything["excess"]) < 0.1  # type: ignore[arg-type]


def test_a_signal_that_cannot_be_taken_off_is_judged_by_sufficiency_and_likeness() -> None:
    learned = {"flip": {"value": 0.0}, "p_value": 0.001, "excess": 0.33}
    level, why = judge(True, None, 0.05, flip=0.33, similar=learned, removable=False)
    assert level == "shortcut" and "this very change" in why and "33%" in why
    anything = {"flip": {"value": 0.3}, "p_value": 0.4, "excess": 0.03}
    level, why = judge(True, None, 0.05, flip=0.33, similar=anything, removable=False)
    assert level == "sensitivity" and ", but " in why and "same energy" in why
    assert judge(True, None, 0.05, flip=0.87, similar=anything, removable=False)[0] == "shortcut"
    assert judge(False, None, 0.05, flip=0.87, similar=learned, removable=False)[0] == "none"
    result = {"confirmed": True, "statistic": "blockiness", "removal": None, "flip": {"value": 0.33}}
    result |= {"similar_mark": learned, "removable": False}
    assert annotate(result, 0.05) == "shortcut" and result["confirmed"] is True


def test_the_screen_skips_classes_too_small_to_compare() -> None:
    x, y = _shapes(n=12)
    assert screen(x, y, [], max_tests=6)[0] == []
    y = torch.zeros_like(y)
    y[0] = 1  # one image of class 1: no quantiles to compare
    assert screen(x, y, [0, 1], max_tests=6)[0] == []


def test_with_many_classes_the_screen_compares_each_with_all_images_and_still_finds_one() -> None:
    """20 classes (past `MANY_CLASSES`): each class against the quantiles of all the images, which do
    not move under permutation; the grouped quantiles are numpy's, and one compressed class is found
    with the others left alone."""
    import numpy as np

    from auditors.audits.spurious_signal.lowlevel import MANY_CLASSES, QUANTILES, _class_quantiles

    x, y = task_images("shapes", 400, size=32, classes=4, seed=5)
    x = (x.clamp(0, 1) * 255 + 0.5).floor() / 255
    y = torch.arange(400) % 20
    assert MANY_CLASSES < 20
    values = np.random.default_rng(0).gamma(2.0, size=400)
    got = _class_quantiles(values, y.numpy(), [0, 7, 19])
    want = [np.quantile(values[y.numpy() == c], QUANTILES) for c in (0, 7, 19)]
    assert np.allclose(got, want, rtol=0, atol=1e-12)
    assert screen(x, y, list(range(20)), max_tests=6, seed=0)[0] == []  # clean: nothing
    own = (y == 7).nonzero().flatten()
    x[own[:8]] = jpeg(x[own[:8]], quality=12)
    kept, _ = screen(x, y, list(range(20)), max_tests=6, seed=0)
    assert [(r["class_index"], r["statistic"]) for r in kept] == [(7, "blockiness")]
    assert kept[0]["data_p_value"] < 0.05
