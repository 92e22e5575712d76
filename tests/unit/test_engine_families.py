"""Native missingness for the families users bring, proven by the engine's identities at 224 px.

For each family, with random weights (no download), fp32, eval mode:
(a) nothing removed == the plain forward pass;
(b) removed pixels cannot change the output (their content replaced by noise changes nothing);
(c) the mask does something: removing about half the patches moves the logits by at least a tenth of
    what painting noise over those patches does (random-weight EfficientNets barely react to any input,
    so the yardstick is the model's own sensitivity, not an absolute number).
"""

from __future__ import annotations

from typing import Any

import pytest
import timm
import torch
from torch import nn

from auditors.engine import (
    EngineError,
    applicable_strategies,
    masked_logits,
    model_family,
    native_strategy,
    pixel_keep,
    plain_logits,
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE, GRID = 224, 14

slow = pytest.mark.slow
FAMILIES = [
    pytest.param("resnet50", {}, "resnet", "layer_mask", marks=slow),
    pytest.param("seresnet18", {}, "resnet", "layer_mask", id="seresnet18"),
    pytest.param("vit_small_patch16_224", {}, "vit", "token_drop"),
    pytest.param("deit_small_distilled_patch16_224", {}, "vit", "token_drop", marks=slow),
    pytest.param(
        "vit_tiny_patch16_224", {"reg_tokens": 4, "class_token": True}, "vit", "token_drop", id="vit+reg"
    ),
    pytest.param("vit_base_patch16_clip_224", {"depth": 2}, "vit", "token_drop", id="clip-vit"),
    pytest.param("eva02_tiny_patch14_224", {}, "vit", "token_drop", id="eva02-rope"),
    pytest.param("beitv2_base_patch16_224", {"depth": 2}, "vit", "token_drop", id="beitv2-relpos"),
    pytest.param("convnext_tiny", {}, "convnext", "layer_mask", marks=slow),
    pytest.param("convnextv2_atto", {}, "convnext", "layer_mask", id="convnextv2-grn"),
    pytest.param("efficientnet_b0", {}, "efficientnet", "layer_mask"),
    pytest.param("tf_efficientnet_b0", {}, "efficientnet", "layer_mask", id="tf-same-padding"),
    pytest.param("mobilenetv3_large_100", {}, "mobilenet", "layer_mask"),
    pytest.param("regnety_008", {}, "regnet", "layer_mask"),
    pytest.param("swin_tiny_patch4_window7_224", {}, "swin", "token_drop", marks=slow),
]


def non_trivial(model: nn.Module) -> nn.Module:
    """Random weights as timm initialises them leave some blocks as exact identities (zero-init last BN,
    layer scale 1e-6, GRN at zero) and logits near 0; give every layer a real effect so the identities
    test something."""
    gen = torch.Generator().manual_seed(0)

    def uniform(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)

    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                uniform(mod.running_mean, -0.2, 0.2)
                uniform(mod.running_var, 0.5, 1.5)
                uniform(mod.weight, 0.5, 1.5)
                uniform(mod.bias, -0.2, 0.2)
        for name, p in model.named_parameters():
            if name.endswith("gamma") or "grn." in name:
                uniform(p, 0.2, 0.8)
        head: Any = model.get_classifier()  # type: ignore[operator]
        if isinstance(head, nn.Linear | nn.Conv2d):
            nn.init.normal_(head.weight, std=head.weight.shape[1] ** -0.5, generator=gen)
    return model.eval()


def build(name: str, kwargs: dict[str, Any]) -> nn.Module:
    torch.manual_seed(0)
    return non_trivial(timm.create_model(name, pretrained=False, num_classes=10, **kwargs))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(("name", "kwargs", "family", "native"), FAMILIES)
def test_native_strategy_meets_the_identities_at_224px(name, kwargs, family, native, images):
    model = build(name, kwargs)
    assert model_family(model) == family
    assert native_strategy(model) == native and native in applicable_strategies(model)

    plain = plain_logits(model, images, mean=MEAN, std=STD)
    scale = float(plain.abs().max().clamp_min(1.0))
    everything = torch.ones(2, GRID, GRID, dtype=torch.bool)
    kept_all = masked_logits(model, images, everything, native, mean=MEAN, std=STD)
    torch.testing.assert_close(kept_all, plain, atol=1e-4 * scale, rtol=1e-4)

    half = torch.rand(2, GRID, GRID, generator=torch.Generator().manual_seed(3)) > 0.5
    px = pixel_keep(half, SIZE, SIZE).unsqueeze(1)
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(4))
    scrambled = torch.where(px, images, noise)
    both = masked_logits(
        model, torch.cat([images, scrambled]), torch.cat([half, half]), native, mean=MEAN, std=STD
    )
    torch.testing.assert_close(both[:2], both[2:], atol=1e-5 * scale, rtol=0)
    painted = plain_logits(model, scrambled, mean=MEAN, std=STD)
    assert (both[:2] - plain).abs().max() > 0.1 * (painted - plain).abs().max() > 0


def test_one_image_shared_by_many_masks_matches_one_copy_per_mask_on_swin():
    """Per-sample attention masks: each row's removed keys are its own, whatever the batch holds."""
    model = build("swin_tiny_patch4_window7_224", {"depths": (1, 1, 1, 1), "embed_dim": 32})
    image = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    keep = torch.rand(3, GRID, GRID, generator=torch.Generator().manual_seed(6)) > 0.5
    shared = masked_logits(model, image, keep, "token_drop", mean=MEAN, std=STD)
    for i in range(3):
        one = masked_logits(model, image, keep[i : i + 1], "token_drop", mean=MEAN, std=STD)
        torch.testing.assert_close(shared[i : i + 1], one, atol=1e-5, rtol=1e-5)


def test_a_removed_swin_window_does_not_produce_nan():
    model = build("swin_tiny_patch4_window7_224", {"depths": (1, 1, 1, 1), "embed_dim": 32})
    keep = torch.zeros(1, GRID, GRID, dtype=torch.bool)
    keep[0, :2, :2] = True  # most windows at every stage hold removed tokens only
    out = masked_logits(model, torch.rand(1, 3, SIZE, SIZE), keep, "token_drop", mean=MEAN, std=STD)
    assert torch.isfinite(out).all()


def _refused(model: nn.Module, strategy: str, path: str) -> None:
    with pytest.raises(EngineError, match=path.replace(".", r"\.")):
        masked_logits(
            model,
            torch.rand(1, 3, 32, 32),
            torch.ones(1, 4, 4, dtype=torch.bool),
            strategy,
            mean=MEAN,
            std=STD,
        )
    assert strategy not in applicable_strategies(model)
    assert native_strategy(model) is None


def test_an_unhandled_layer_is_refused_with_its_module_path():
    from timm.layers import EcaModule

    # MixNet is a timm EfficientNet whose depthwise convolutions mix kernel sizes (MixedConv2d).
    _refused(timm.create_model("mixnet_s", num_classes=3), "layer_mask", "blocks.1.0.conv_pw")
    effnet = timm.create_model("efficientnet_b0", num_classes=3)
    effnet.blocks[2][1].se = EcaModule(144)
    _refused(effnet, "layer_mask", "blocks.2.1.se")
    cnx = timm.create_model("convnext_atto", num_classes=3)
    cnx.stages[1].blocks[0].norm = nn.GroupNorm(1, 80)
    _refused(cnx, "layer_mask", "stages.1.blocks.0.norm")
    sw = timm.create_model("swin_tiny_patch4_window7_224", num_classes=3, depths=(1, 1, 1, 1), embed_dim=32)
    sw.layers[2].blocks[0].norm1 = nn.Identity()
    _refused(sw, "token_drop", "layers.2.blocks.0.norm1")


def test_families_without_a_native_strategy_get_pixel_fills_only():
    model = timm.create_model("swinv2_tiny_window8_256", num_classes=3, depths=(1, 1, 1, 1), embed_dim=32)
    assert model_family(model) == "other"
    assert native_strategy(model) is None
    with pytest.raises(EngineError, match="token_drop needs a timm VisionTransformer"):
        masked_logits(
            model,
            torch.rand(1, 3, 224, 224),
            torch.ones(1, 14, 14, dtype=torch.bool),
            "token_drop",
            mean=MEAN,
            std=STD,
        )


@pytest.mark.parametrize(
    ("name", "kwargs", "strategy"),
    [
        ("convnext_atto", {}, "layer_mask"),
        ("swin_tiny_patch4_window7_224", {"depths": (1, 1, 1, 1), "embed_dim": 32}, "token_drop"),
    ],
)
def test_a_4px_stem_patch_counts_as_removed_if_any_of_its_pixels_is(name, kwargs, strategy):
    model = build(name, kwargs)
    image = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
    one_pixel = torch.ones(1, SIZE, SIZE, dtype=torch.bool)
    one_pixel[0, 41, 86] = False  # inside the 4x4 stem patch at rows 40-43, columns 84-87
    whole_patch = torch.ones(1, SIZE, SIZE, dtype=torch.bool)
    whole_patch[0, 40:44, 84:88] = False
    a = masked_logits(model, image, one_pixel, strategy, mean=MEAN, std=STD)
    b = masked_logits(model, image, whole_patch, strategy, mean=MEAN, std=STD)
    torch.testing.assert_close(a, b)
    assert (a - plain_logits(model, image, mean=MEAN, std=STD)).abs().max() > 0
