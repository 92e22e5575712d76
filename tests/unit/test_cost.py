"""The cost estimate counts the forward passes an audit really makes, and a budget shrinks it to fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

import auditors.zoo.architectures  # noqa: F401
from auditors.audits.context import AuditContext
from auditors.cost import Calibration, estimate, fit_budget, forward_passes
from auditors.families import family_of_arch
from auditors.passes import RunShape
from auditors.registry import get_auditor, parse_config

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


@pytest.fixture(scope="module")
def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("occulta_resnet_tiny", num_classes=4).eval()


def _context(model: torch.nn.Module, n: int, out: Path) -> AuditContext:
    gen = torch.Generator().manual_seed(0)
    return AuditContext(
        model=model,
        images=torch.rand(n, 3, 32, 32, generator=gen),
        labels=torch.randint(0, 4, (n,), generator=gen),
        mean=MEAN,
        std=STD,
        class_names=["a", "b", "c", "d"],
        out_dir=out,
    )


def _images_seen(model: torch.nn.Module, ctx: AuditContext, name: str, raw: dict) -> tuple[int, int]:
    """(images through the stem during the audit, images the estimate counts)."""
    seen = [0]
    hook = model.conv1.register_forward_hook(
        lambda _m, args, _o: seen.__setitem__(0, seen[0] + args[0].shape[0])
    )
    cfg = parse_config(name, raw)
    try:
        get_auditor(name).run(ctx, cfg)
    finally:
        hook.remove()
    shape = RunShape(ctx.n_images, 32, 32, 4, "resnet", labelled=ctx.labels is not None)
    passes = forward_passes(name, cfg, shape)
    assert passes is not None
    return seen[0], passes.total


def test_missingness_bias_estimate_counts_every_image_through_the_model(cnn, tmp_path):
    ctx = _context(cnn, 6, tmp_path)
    seen, counted = _images_seen(
        cnn, ctx, "missingness_bias", {"strategies": ["black", "grey"], "fractions": [0.0, 0.3, 0.6]}
    )
    assert seen == counted == 6 * (1 + 2 * 3)


def test_lime_estimate_counts_every_perturbation_and_removal_curve(cnn, tmp_path):
    ctx = _context(cnn, 4, tmp_path)
    raw = {"n_images": 2, "n_samples": 32, "fills": ["black", "grey"], "max_k": 5, "n_show": 0}
    seen, counted = _images_seen(cnn, ctx, "lime_consistency", raw)
    assert seen == counted


def test_gradient_sis_estimate_is_an_upper_bound(cnn, tmp_path):
    """SIS explains only the confident images, so the count (every image explained) bounds it above."""
    ctx = _context(cnn, 3, tmp_path)
    raw = {"n_images": 3, "method": "gradient", "gradient_k": 128, "n_show": 0}
    seen, counted = _images_seen(cnn, ctx, "sis", raw)
    assert seen <= counted


def test_gradient_sis_estimate_counts_one_step_per_shrinking_step_size():
    from auditors.methods.backselect import step_sizes

    cfg = parse_config("sis", {"n_images": 2, "method": "gradient", "gradient_k": 100})
    passes = forward_passes("sis", cfg, RunShape(10, 32, 32, 4))
    assert passes is not None
    assert passes.gradient == 2 * len(step_sizes(32 * 32, 100))


def test_spurious_estimate_is_an_upper_bound(cnn, tmp_path):
    ctx = _context(cnn, 8, tmp_path)
    raw = {"n_images": 8, "methods": ["gradient_squared"], "max_candidates": 2, "n_overlays": 0}
    seen, counted = _images_seen(cnn, ctx, "spurious_signal", raw)
    assert seen <= counted


def test_exact_backselect_costs_a_triangular_number_of_passes_per_image():
    cfg = parse_config("sis", {"n_images": 2, "method": "exact"})
    passes = forward_passes("sis", cfg, RunShape(10, 16, 16, 4))
    assert passes is not None
    # BackSelect, plus the pick's pass over all 10 images, then per explained image: fully masked, f(x),
    # sufficiency and the two 5% subsets.
    assert passes.forward == 2 * (256 * 257 // 2) + 10 + 5 * 2


@pytest.mark.parametrize(
    ("arch", "family", "patch"),
    [
        ("vit_small_patch16_224", "vit", 16),
        ("deit_tiny_patch16_224", "vit", 16),
        ("occulta_vit_tiny", "vit", 8),
        ("resnet50", "resnet", None),
        ("occulta_resnet_tiny", "resnet", None),
        ("convnext_tiny", "convnext", None),
        ("swin_tiny_patch4_window7_224", "swin", None),
        ("my_custom_net", "other", None),
    ],
)
def test_family_and_vit_patch_come_from_the_arch_name(arch, family, patch):
    assert family_of_arch(arch) == (family, patch)


CAL = Calibration(
    "cpu", forward_s=1e-3, native_s=2e-3, gradient_s=3e-3, call_s=1e-4, figure_s=0.1, batch=64, seconds=0.0
)


def _defaults() -> dict:
    return {
        a: parse_config(a, None) for a in ("missingness_bias", "lime_consistency", "sis", "spurious_signal")
    }


def test_estimate_adds_each_audits_seconds_from_its_passes():
    shape = RunShape(500, 32, 32, 4, "resnet")
    est = estimate(_defaults(), shape, CAL)
    assert est.seconds == pytest.approx(sum(a["seconds"] for a in est.audits.values()), rel=1e-3)
    lime = est.audits["lime_consistency"]
    # 16 images x 1000 perturbations x (layer_mask + 4 fills + a second seed) dominate LIME.
    assert lime["forward_passes"] >= 16 * 1000 * 6
    assert est.as_dict()["calibration"]["figure_ms"] == 100.0


def test_estimate_without_calibration_still_counts_passes():
    est = estimate(_defaults(), RunShape(100, 224, 224, 1000, "resnet"), None)
    assert est.seconds is None
    assert all(a["forward_passes"] > 0 and a["seconds"] is None for a in est.audits.values())


def test_budget_shrinks_sample_sizes_until_the_estimate_fits_and_says_what_changed():
    shape = RunShape(500, 32, 32, 4, "resnet")
    before = estimate(_defaults(), shape, CAL).seconds
    assert before is not None and before > 20
    cfgs, n, changes = fit_budget(_defaults(), shape, CAL, budget_s=20)
    after = estimate(cfgs, RunShape(n, 32, 32, 4, "resnet"), CAL).seconds
    assert after is not None and after <= 20
    assert changes and all(" -> " in c for c in changes)
    assert any(c.startswith("lime_consistency.n_samples: 1000 -> ") for c in changes)


def test_a_budget_that_already_fits_changes_nothing():
    shape = RunShape(50, 32, 32, 4, "resnet")
    cfgs, n, changes = fit_budget(_defaults(), shape, CAL, budget_s=1e9)
    assert (n, changes) == (50, [])
    assert cfgs == _defaults()


def test_a_budget_below_the_floors_stops_at_the_floors():
    shape = RunShape(500, 32, 32, 4, "resnet")
    cfgs, n, _ = fit_budget(_defaults(), shape, CAL, budget_s=0.01)
    assert n == 16
    assert cfgs["lime_consistency"].n_samples == 100
    assert cfgs["sis"].n_images == 1
