"""The missingness-bias audit (docs/audits.md, "Missingness bias") against models whose bias is known by construction."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from auditors.audits.context import AuditContext
from auditors.audits.missingness_bias.audit import MissingnessBias
from auditors.audits.missingness_bias.config import MissingnessBiasConfig
from auditors.audits.missingness_bias.shard import random_keep
from auditors.methods.class_entropy import class_entropy


class BlackPatchDetector(nn.Module):
    """Predicts class 0 whenever any pixel is exactly black; otherwise the brightest of 4 quadrants.

    Its missingness bias is total and known: black fill sends everything to class 0, grey does not.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quads = torch.stack(
            [
                x[:, :, :16, :16].mean((1, 2, 3)),
                x[:, :, :16, 16:].mean((1, 2, 3)),
                x[:, :, 16:, :16].mean((1, 2, 3)),
                x[:, :, 16:, 16:].mean((1, 2, 3)),
            ],
            1,
        )
        black = (x.abs().amax(1) < 1e-6).flatten(1).any(1)
        logits = quads * 10
        logits[black, 0] = 100.0
        return logits


def _ctx(
    model: nn.Module, images: torch.Tensor, tmp: Path, labels: torch.Tensor | None = None
) -> AuditContext:
    return AuditContext(
        model=model,
        images=images,
        labels=labels,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        class_names=["q0", "q1", "q2", "q3"],
        out_dir=tmp,
        seed=0,
    )


def test_class_entropy_is_over_prediction_shares():
    h, shares = class_entropy(torch.tensor([0, 1, 2, 3]), 4)
    assert h == pytest.approx(math.log(4))
    assert shares.tolist() == [0.25] * 4
    assert class_entropy(torch.tensor([2, 2, 2]), 4)[0] == 0.0


def test_random_keep_removes_exactly_the_fraction_and_is_seeded():
    keep = random_keep(50, (8, 8), 0.3, seed=1, salt=3)
    assert keep.shape == (50, 8, 8)
    assert torch.all((~keep).flatten(1).sum(1) == round(0.3 * 64))
    assert torch.equal(keep, random_keep(50, (8, 8), 0.3, seed=1, salt=3))
    assert not torch.equal(keep, random_keep(50, (8, 8), 0.3, seed=2, salt=3))


def test_a_model_that_reads_black_boxes_fails_with_its_attractor_class(tmp_path):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(80, 3, 32, 32, generator=gen) * 0.8 + 0.1
    result = MissingnessBias().run(
        _ctx(BlackPatchDetector(), images, tmp_path),
        MissingnessBiasConfig(strategies=["black", "grey"], patch_size=4),
    )
    black, grey = result.metrics["strategies"]["black"], result.metrics["strategies"]["grey"]
    assert result.verdict == "fail"
    assert result.metrics["failing_strategies"] == ["black"]
    assert black["shares_at_half"]["q0"] == 1.0 and black["entropy_at_half"] == 0.0
    assert black["attractors"][0]["class"] == "q0"
    assert grey["verdict"] == "pass" and grey["unchanged"][0] == 1.0
    assert result.metrics["best"]["strategy"] == "grey" and result.metrics["worst"]["strategy"] == "black"
    [finding] = result.findings
    assert finding.kind == "attractor_class" and finding.class_name == "q0"
    assert "black" in result.summary and result.role == "explanation" and result.n == 80
    # grey passes here, but a constant fill is never the remedy: the meaning names what to measure.
    assert result.metrics["recommended"] is None and "use grey" not in result.meaning
    assert result.meaning.startswith(
        "Explanations of this model that remove pixels with black are unreliable"
    )
    assert result.estimate is not None and result.estimate["lo"] > 0.2 and result.estimate["n"] == 80
    for art in result.artifacts:
        assert (tmp_path / art.path).stat().st_size > 0
    raw = np.load(tmp_path / "missingness_bias" / "predictions.npz")
    assert raw["black"].shape == (10, 80)


def test_accuracy_curve_appears_only_with_labels(tmp_path):
    images = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    cfg = MissingnessBiasConfig(strategies=["grey"], fractions=[0.0, 0.5], patch_size=8)
    unlabelled = MissingnessBias().run(_ctx(BlackPatchDetector(), images, tmp_path / "a"), cfg)
    assert unlabelled.metrics["strategies"]["grey"]["accuracy"] is None
    labels = torch.zeros(16, dtype=torch.long)
    labelled = MissingnessBias().run(_ctx(BlackPatchDetector(), images, tmp_path / "b", labels), cfg)
    assert len(labelled.metrics["strategies"]["grey"]["accuracy"]) == 2


def test_native_strategies_keep_the_class_distribution_where_constant_fills_do_not(
    planted_resnet, planted_vit, tmp_path
):
    """The research result, measured on the planted models: at 50% removal a constant fill drags
    predictions toward attractor classes, while layer masking (ResNet) and token dropping (ViT) keep
    the class distribution (Jain et al. 2022: ViT-S token drop H 6.85 of 6.9; Balasubramanian & Feizi
    2023: layer-masked ResNet-50 AUC 0.614 vs 0.260 for grey)."""
    for p, native, fill in ((planted_resnet, "layer_mask", "grey"), (planted_vit, "token_drop", "black")):
        ctx = AuditContext(
            model=p.model,
            images=p.test.images[:128],
            labels=p.test.labels[:128],
            mean=p.mean,
            std=p.std,
            class_names=p.test.class_names,
            out_dir=tmp_path / native,
            seed=0,
        )
        result = MissingnessBias().run(ctx, MissingnessBiasConfig(strategies=[fill, native]))
        s = result.metrics["strategies"]
        assert s[native]["entropy_drop_at_half"] < 0.3, native
        assert s[native]["entropy_drop_at_half"] < s[fill]["entropy_drop_at_half"] - 0.2, native
        assert s[native]["auc"] > s[fill]["auc"], native
        assert result.metrics["best"]["strategy"] == native
