"""The missingness engine's identities: each strategy does exactly what docs/audits.md, "Missingness strategies" says."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

import auditors.zoo.architectures  # noqa: F401
from auditors.engine import (
    EngineError,
    applicable_strategies,
    masked_logits,
    normalize,
    parse_strategy,
    pixel_keep,
    plain_logits,
)
from auditors.engine.layer_mask import neighbour_fill

MEAN = (0.5, 0.4, 0.3)
STD = (0.2, 0.25, 0.3)


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    m = timm.create_model("occulta_resnet_tiny", num_classes=5).eval()
    # Non-trivial BatchNorm statistics, so "f(x*m)*m" is tested with real affine shifts.
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.bias.data.uniform_(-0.3, 0.3)
    return m


@pytest.fixture(scope="module")
def vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("occulta_vit_tiny", num_classes=5).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _random_keep(n: int, grid: int = 8, seed: int = 2) -> torch.Tensor:
    return torch.rand(n, grid, grid, generator=torch.Generator().manual_seed(seed)) > 0.5


@pytest.mark.parametrize("arch", ["resnet", "vit"])
def test_every_strategy_with_nothing_removed_equals_the_plain_forward_pass(request, arch, images):
    model = request.getfixturevalue(arch)
    plain = plain_logits(model, images, mean=MEAN, std=STD)
    reference = model(normalize(images, torch.tensor(MEAN), torch.tensor(STD)))
    torch.testing.assert_close(plain, reference)
    keep = torch.ones(6, 8, 8, dtype=torch.bool)
    strategies = [*applicable_strategies(model), "color:10,200,30"]
    assert ("layer_mask" in strategies) == (arch == "resnet")
    assert ("token_drop" in strategies) == (arch == "vit")
    for s in strategies:
        torch.testing.assert_close(masked_logits(model, images, keep, s, mean=MEAN, std=STD), plain, msg=s)


def test_black_equals_zeroing_the_removed_patches_before_normalisation(resnet, images):
    keep = _random_keep(6)
    expected_input = images * pixel_keep(keep, 32, 32).unsqueeze(1)
    expected = resnet(normalize(expected_input, torch.tensor(MEAN), torch.tensor(STD)))
    torch.testing.assert_close(masked_logits(resnet, images, keep, "black", mean=MEAN, std=STD), expected)


def test_mean_fill_is_zero_after_normalisation_and_colours_are_in_pixel_space(resnet, images):
    keep = _random_keep(6)
    px = pixel_keep(keep, 32, 32).unsqueeze(1)
    mean_t, std_t = torch.tensor(MEAN), torch.tensor(STD)
    expected = resnet(normalize(images, mean_t, std_t) * px)
    torch.testing.assert_close(masked_logits(resnet, images, keep, "mean", mean=MEAN, std=STD), expected)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    expected_red = resnet(normalize(images * px + red * ~px, mean_t, std_t))
    got = masked_logits(resnet, images, keep, "color:255,0,0", mean=MEAN, std=STD)
    torch.testing.assert_close(got, expected_red)


def _hand_written_vit(model, image: torch.Tensor, keep_tokens: torch.Tensor) -> torch.Tensor:
    """A ViT forward pass written out by hand on the kept tokens only (no engine code)."""
    p = model.patch_embed.proj.kernel_size[0]
    x = normalize(image[None], torch.tensor(MEAN), torch.tensor(STD))
    patches = F.unfold(x, kernel_size=p, stride=p).transpose(1, 2)  # [1, N, 3*p*p]
    w = model.patch_embed.proj.weight.flatten(1)  # [D, 3*p*p]
    tokens = patches @ w.T + model.patch_embed.proj.bias
    tokens = tokens + model.pos_embed[:, 1:]
    tokens = tokens[:, keep_tokens]
    cls = model.cls_token + model.pos_embed[:, :1]
    seq = torch.cat([cls, tokens], dim=1)
    for blk in model.blocks:
        seq = blk(seq)
    return model.head(model.norm(seq)[:, 0])[0]


def test_token_drop_equals_a_hand_written_vit_on_the_kept_tokens_only(vit, images):
    keep = _random_keep(6, grid=4)  # the tiny ViT's own 8-px patch grid
    keep[0] = True  # all kept
    keep[1] = False
    keep[1, 3, 2] = True  # a single token
    got = masked_logits(vit, images, keep, "token_drop", mean=MEAN, std=STD, chunk_size=4)
    with torch.no_grad():
        for i in range(6):
            torch.testing.assert_close(
                got[i], _hand_written_vit(vit, images[i], keep[i].flatten()), atol=1e-5, rtol=1e-4
            )


def test_token_drop_counts_a_token_removed_if_any_of_its_pixels_is(vit, images):
    keep_px = torch.ones(1, 32, 32, dtype=torch.bool)
    keep_px[0, 5, 9] = False  # one pixel inside token (row 0, col 1) of the 8-px grid
    tokens = torch.ones(1, 4, 4, dtype=torch.bool)
    tokens[0, 0, 1] = False
    a = masked_logits(vit, images[:1], keep_px, "token_drop", mean=MEAN, std=STD)
    b = masked_logits(vit, images[:1], tokens, "token_drop", mean=MEAN, std=STD)
    torch.testing.assert_close(a, b)


def test_neighbour_fill_matches_the_recipe_worked_by_hand():
    # 3x3, centre removed: one round gives the mean of its 8 visible neighbours.
    x = torch.tensor([[1.0, 2, 3], [4, 100, 6], [7, 8, 9]]).view(1, 1, 3, 3)
    m = torch.ones(1, 1, 3, 3)
    m[..., 1, 1] = 0
    out = neighbour_fill(x, m, rounds=1)
    assert out[0, 0, 1, 1].item() == pytest.approx(40 / (8 + 1e-5))
    assert torch.equal(out * m, x * m)
    # A 1x5 row [2, _, _, _, 8]: round 1 reaches positions 1 and 3, round 2 fills the middle from them.
    row = torch.tensor([2.0, 50, 50, 50, 8]).view(1, 1, 1, 5)
    mr = torch.tensor([1.0, 0, 0, 0, 1]).view(1, 1, 1, 5)
    one = neighbour_fill(row, mr, rounds=1)[0, 0, 0]
    assert one.tolist() == pytest.approx([2, 2, 0, 8, 8], rel=1e-4)
    two = neighbour_fill(row, mr, rounds=2)[0, 0, 0]
    assert two.tolist() == pytest.approx([2, 2, 5, 8, 8], rel=1e-4)


def test_neighbour_fill_carries_no_gradient_into_removed_positions():
    x = torch.rand(1, 2, 4, 4, requires_grad=True)
    m = torch.ones(1, 1, 4, 4)
    m[..., :2, :2] = 0
    neighbour_fill(x, m, rounds=3).sum().backward()
    assert torch.all(x.grad[..., :2, :2] == 0)
    assert torch.all(x.grad[..., 2:, 2:] == 1)


@pytest.mark.parametrize("strategy", ["layer_mask", "token_drop", "black", "noise", "random_color"])
def test_removed_pixels_cannot_influence_the_result(request, strategy, images):
    model = request.getfixturevalue("vit" if strategy == "token_drop" else "resnet")
    keep = _random_keep(6)
    px = pixel_keep(keep, 32, 32).unsqueeze(1)
    scrambled = torch.where(px, images, torch.rand_like(images))
    a = masked_logits(model, images, keep, strategy, mean=MEAN, std=STD, seed=3)
    b = masked_logits(model, scrambled, keep, strategy, mean=MEAN, std=STD, seed=3)
    torch.testing.assert_close(a, b)


def test_layer_mask_is_not_a_pixel_fill_in_disguise(resnet, images):
    keep = _random_keep(6)
    lm = masked_logits(resnet, images, keep, "layer_mask", mean=MEAN, std=STD)
    for fill in ("black", "mean", "grey"):
        other = masked_logits(resnet, images, keep, fill, mean=MEAN, std=STD)
        assert (lm - other).abs().max() > 1e-3, fill


def test_random_fills_are_seeded_per_sample_whatever_the_chunking(resnet, images):
    keep = _random_keep(6)
    for s in ("noise", "random_color"):
        a = masked_logits(resnet, images, keep, s, mean=MEAN, std=STD, seed=5, chunk_size=1)
        b = masked_logits(resnet, images, keep, s, mean=MEAN, std=STD, seed=5, chunk_size=6)
        c = masked_logits(resnet, images, keep, s, mean=MEAN, std=STD, seed=6, chunk_size=6)
        torch.testing.assert_close(a, b)
        assert (a - c).abs().max() > 1e-4


def test_one_image_is_shared_by_many_masks_in_the_order_asked(resnet, images):
    keep = _random_keep(40, seed=9)
    shared = masked_logits(resnet, images[:1], keep, "grey", mean=MEAN, std=STD, chunk_size=16)
    copied = masked_logits(resnet, images[:1].expand(40, -1, -1, -1), keep, "grey", mean=MEAN, std=STD)
    torch.testing.assert_close(shared, copied)
    single = masked_logits(resnet, images[:1], keep[17:18], "grey", mean=MEAN, std=STD)
    torch.testing.assert_close(shared[17:18], single)


def test_strategies_that_do_not_apply_are_refused_with_the_reason(resnet, vit, images):
    keep = torch.ones(1, 8, 8, dtype=torch.bool)
    with pytest.raises(EngineError, match="token_drop needs a timm VisionTransformer"):
        masked_logits(resnet, images[:1], keep, "token_drop", mean=MEAN, std=STD)
    with pytest.raises(EngineError, match="layer_mask supports timm's ResNet"):
        masked_logits(vit, images[:1], keep, "layer_mask", mean=MEAN, std=STD)
    eca = timm.create_model("resnet18", num_classes=3, block_args={"attn_layer": "eca"}).eval()
    with pytest.raises(EngineError, match=r"EcaModule at layer1\.0\.se"):
        masked_logits(eca, images[:1], keep, "layer_mask", mean=MEAN, std=STD)
    assert "layer_mask" not in applicable_strategies(eca)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("magenta", "unknown missingness strategy"),
        ("color:1,2", "three numbers"),
        ("color:300,0,0", "up to 255"),
    ],
)
def test_bad_strategy_names_say_what_to_write(spec, message):
    with pytest.raises(EngineError, match=message):
        parse_strategy(spec)


def test_colours_accept_0_255_and_0_1(resnet):
    assert parse_strategy("color:255,0,0").color == (1.0, 0.0, 0.0)
    assert parse_strategy("color:0.5,0.5,1").color == (0.5, 0.5, 1.0)


def test_malformed_masks_are_refused(resnet, images):
    with pytest.raises(EngineError, match="bool"):
        masked_logits(resnet, images, torch.ones(6, 8, 8), "black", mean=MEAN, std=STD)
    with pytest.raises(EngineError, match="rows"):
        masked_logits(resnet, images[:2], torch.ones(3, 8, 8, dtype=torch.bool), "black", mean=MEAN, std=STD)
    with pytest.raises(EngineError, match="square patches"):
        masked_logits(resnet, images, torch.ones(6, 5, 5, dtype=torch.bool), "black", mean=MEAN, std=STD)
