"""The similar-mark null (`nulls.matched_test`) on hand-made models: a model that reads a mark's
structure moves far more for the mark than for other content given its colours and contrast, while a
model that reacts to any bright patch there moves as much for either."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from auditors.audits.spurious_signal.nulls import Probe, matched_test, stamp_test

S, BOX = 32, (2, 2, 6, 6)


def _checker() -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    on = ((yy + xx) % 2 == 0).float()
    return torch.stack([on * 0.9 + 0.05] * 3)  # [3, 6, 6]: a fine black-and-white checkerboard


class _Reader(nn.Module):
    """Class 1 when the box holds the checkerboard (`structure`) or is bright on average (else), class
    0 otherwise; its score is a sigmoid of the evidence, so it has probabilities to compare."""

    def __init__(self, structure: bool) -> None:
        super().__init__()
        self.structure = structure
        self.w = nn.Parameter(torch.zeros(1))
        self.checker = _checker() - _checker().mean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0, y0, w, h = BOX
        box = x[:, :, y0 : y0 + h, x0 : x0 + w]
        if self.structure:
            score = (box * self.checker).sum((1, 2, 3)) / float((self.checker**2).sum()) * 4 - 2
        else:
            score = (box.mean((1, 2, 3)) - 0.3) * 20
        return torch.stack([torch.zeros_like(score), score], 1) + self.w


def _probe(structure: bool) -> Probe:
    return Probe(_Reader(structure), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "mean", seed=0)


def _test(structure: bool) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    recipients = (
        torch.rand(60, 3, 1, 1, generator=gen) * 0.2 + torch.rand(60, 3, S, S, generator=gen) * 0.1
    ).clamp(0, 1)
    donors = torch.rand(60, 3, S, S, generator=gen)  # textured content of all brightnesses
    alpha = torch.ones(6, 6, dtype=torch.bool)
    probe = _probe(structure)
    t = stamp_test(probe, recipients, donors, 1, BOX, _checker(), alpha, seed=0)
    assert t["flip"]["value"] > 0.9  # either model turns to class 1 with the mark
    return matched_test(probe, recipients, donors, 1, BOX, _checker(), alpha, t["stamped_probs"], seed=0)


def test_a_model_that_reads_the_mark_s_structure_beats_its_similar_mark() -> None:
    out = _test(structure=True)
    assert out["excess"] > 0.5 and out["p_value"] < 0.01


def test_a_model_that_reacts_to_any_bright_patch_does_not() -> None:
    out = _test(structure=False)
    assert out["excess"] < 0.1 and out["p_value"] > 0.05


def test_a_solid_mark_s_similar_mark_is_the_mark_itself() -> None:
    gen = torch.Generator().manual_seed(1)
    recipients = torch.rand(20, 3, S, S, generator=gen) * 0.3
    donors = torch.rand(20, 3, S, S, generator=gen)
    solid, alpha = torch.full((3, 6, 6), 0.9), torch.ones(6, 6, dtype=torch.bool)
    probe = _probe(structure=False)
    t = stamp_test(probe, recipients, donors, 1, BOX, solid, alpha, seed=0)
    out = matched_test(probe, recipients, donors, 1, BOX, solid, alpha, t["stamped_probs"], seed=0)
    assert out["excess"] == 0.0


def test_a_mark_of_one_colour_is_solid_and_one_with_structure_is_not() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2)).eval()
    probe = Probe(model, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "mean", 0)
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    alpha = torch.ones(4, 4, dtype=torch.bool)
    black = torch.zeros(3, 4, 4)
    stamped = probe.probs(x)
    assert matched_test(probe, x, x, 0, (2, 2, 4, 4), black, alpha, stamped, seed=0)["solid"]
    halves = black.clone()
    halves[:, 2:] = 1.0
    assert not matched_test(probe, x, x, 0, (2, 2, 4, 4), halves, alpha, stamped, seed=0)["solid"]
