"""Grain on a class: the pixel-noise estimate, the one-sided screen, both counterfactuals on a
hand-made reader of grain, and severity that does not take sufficiency alone for noise (a textured
class's pixel noise is its texture's)."""

from __future__ import annotations

import torch
from torch import nn

from auditors.audits.spurious_signal.lowlevel import judge_lowlevel, lowlevel_tests, screen
from auditors.audits.spurious_signal.nulls import Probe
from auditors.audits.spurious_signal.severity import annotate
from auditors.methods.image_stats import blur_each, noise
from auditors.zoo.planted import task_images
from auditors.zoo.triggers import Trigger


def _png(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255 + 0.5).floor() / 255  # what a PNG folder gives


def _shapes(n: int = 160, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = task_images("shapes", n, size=32, classes=4, seed=seed)
    return _png(x), y


def test_the_noise_estimate_reads_the_noise_not_the_edges() -> None:
    gen = torch.Generator().manual_seed(0)
    flat = torch.full((8, 3, 32, 32), 0.5)
    sigma = 0.04
    got = noise(flat + sigma * torch.randn(flat.shape, generator=gen))
    assert torch.allclose(got, torch.full_like(got, sigma), rtol=0.12)
    # Hard edges over a fifth of the pixels barely move a median; they would move a mean.
    bars = flat.clone()
    bars[..., ::5] = 0.9
    noisy_bars = bars + sigma * torch.randn(bars.shape, generator=gen)
    assert float(noise(noisy_bars).mean()) < 1.6 * sigma


def test_the_screen_finds_grain_on_a_class_and_nothing_on_clean_shapes() -> None:
    x, y = _shapes()
    assert [r for r in screen(x, y, [0, 1, 2, 3], max_tests=6, seed=0)[0] if r["statistic"] == "noise"] == []
    own = (y == 2).nonzero().flatten()
    x[own] = _png(Trigger("noise", 32, 0).apply(x[own], own.tolist())[0])
    kept, _ = screen(x, y, [0, 1, 2, 3], max_tests=6, seed=0)
    hit = [r for r in kept if r["statistic"] == "noise"]
    assert [r["class_index"] for r in hit] == [2]
    assert hit[0]["shift"] > 4 and hit[0]["data_p_value"] < 0.05


def test_a_class_with_less_noise_is_not_screened_for_it() -> None:
    """Flat content (a sky) is cleaner: the screen is one-sided, so a smoothed class is no grain
    finding (its blur is the detail screen's)."""
    x, y = _shapes()
    own = (y == 1).nonzero().flatten()
    x[own] = _png(blur_each(x[own], torch.full((own.numel(),), 0.8)))
    kept, _ = screen(x, y, [0, 1, 2, 3], max_tests=6, seed=0)
    assert [r for r in kept if r["statistic"] == "noise"] == []


class _GrainReader(nn.Module):
    """Class 0 when the image carries more pixel noise than the clean shapes do, else its shape's
    class from a fixed guess (class 1): a model that learned the grain."""

    def __init__(self, level: float) -> None:
        super().__init__()
        self.level = level
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (noise(x) - self.level) * 400
        zero = torch.zeros_like(score)
        return torch.stack([score, zero, zero - 1, zero - 1], 1) + self.w


def test_a_model_that_learned_grain_fails_both_ways_and_the_finding_says_so() -> None:
    x, y = _shapes()
    own = (y == 0).nonzero().flatten()
    clean = noise(x)
    x[own] = _png(Trigger("noise", 32, 0).apply(x[own], own.tolist())[0])
    level = float((clean.max() + noise(x[own]).min()) / 2)
    probe = Probe(_GrainReader(level), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "mean", seed=0)
    pred = probe.probs(x).argmax(1)
    out = lowlevel_tests(probe, x, y, pred, y, [0, 1, 2, 3], max_tests=6, max_images=40)
    _, shortcuts = judge_lowlevel(out["results"], ["grainy", "b", "c", "d"], 0.05, 0.1)
    assert [(r["class"], r["statistic"]) for r in shortcuts] == [("grainy", "noise")]
    hit = shortcuts[0]
    assert hit["flip"]["value"] > 0.9 and hit["flip"]["null_mean"] < 0.1  # smoothing others does nothing
    assert hit["removal"]["value"] > 0.5 and hit["removal"]["p_value"] < 0.05  # smoothing its own costs


def test_noise_that_turns_most_images_is_no_shortcut_unless_taking_it_off_costs_the_class() -> None:
    """A textured class's pixel noise is its texture's: sufficiency alone does not fail the model."""
    no_cost = {"value": 0.01, "null_mean": 0.02, "p_value": 0.6, "n": 30}
    base = {"confirmed": True, "removal": no_cost, "flip": {"value": 0.9}}
    grain = base | {"statistic": "noise"}
    assert annotate(grain, 0.05) == "sensitivity" and grain["confirmed"] is False
    blur = base | {"statistic": "detail"}
    assert annotate(blur, 0.05) == "shortcut"
    cost = {"value": 0.4, "null_mean": 0.02, "p_value": 0.001, "n": 30}
    assert annotate(base | {"statistic": "noise", "removal": cost}, 0.05) == "shortcut"
