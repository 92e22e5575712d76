"""Layer masking for timm's convolutional families (Balasubramanian & Feizi, 2023).

The binary keep-mask travels with the activations so removed pixels never reach a convolution as a
colour. Before each spatial convolution removed positions are filled by *neighbour padding* (2r
rounds for a kernel of reach r: every round that can reach a visible output; no gradient through the
fill); the mask is then downsampled with a max-pool of the conv's geometry (a location is visible if
any input in its window is). Pointwise layers and BatchNorm run as they are (hidden positions are
never read downstream, so this equals f(x*m)*m), max-pool takes the max over visible inputs, a
residual add keeps the intersection of both branches' masks, squeeze-excitation squeezes the visible
positions only, and global average pooling averages visible positions only (`masked_ops.py`).

One walker serves ResNet, EfficientNet, MobileNetV3 and RegNet: each family is a table of its blocks'
forward passes (attribute names in order, shortcut, what follows the add), copied from timm's code.
ConvNeXt has its own rule (`convnext.py`). Any layer the walker does not know is refused up front with
its module path, rather than silently treated as pointwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import cast

import torch
from torch import nn

from auditors.engine import convnext
from auditors.engine import masked_ops as ops
from auditors.engine.errors import EngineError
from auditors.engine.masked_ops import neighbour_fill

__all__ = [
    "check_layer_mask",
    "is_layer_mask_model",
    "layer_mask_family",
    "layer_mask_logits",
    "neighbour_fill",
]

STRATEGY = "layer_mask"


@dataclass(frozen=True)
class Block:
    """A residual block's forward pass: `main` in order (absent/None attributes skipped), then, when
    `has_skip(block)`, `main + shortcut(x)` (a None shortcut module is the identity), then `after`."""

    main: tuple[str, ...]
    shortcut: str | None = None
    after: str | None = None
    has_skip: Callable[[nn.Module], bool] = lambda b: True


@dataclass(frozen=True)
class Family:
    name: str
    model: type[nn.Module]
    features: tuple[str, ...]  # the model's forward_features, as attribute names in order
    pool: str  # where its global pool lives; the head after it runs unchanged on a 1x1 map
    blocks: dict[type[nn.Module], Block]
    containers: tuple[type[nn.Module], ...] = ()  # run their children in order, like nn.Sequential


def _has_skip(b: nn.Module) -> bool:
    return bool(getattr(b, "has_skip", False))


@cache
def _families() -> tuple[Family, ...]:
    from timm.layers import ConvNormAct
    from timm.models import _efficientnet_blocks as eb
    from timm.models import efficientnet, mobilenetv3, regnet, resnet

    conv_norm_act: dict[type[nn.Module], Block] = {
        ConvNormAct: Block(("conv", "bn", "aa"), has_skip=lambda b: False)
    }
    mobile_blocks = {
        eb.ConvBnAct: Block(("conv", "bn1", "aa", "drop_path"), "", has_skip=_has_skip),
        eb.DepthwiseSeparableConv: Block(
            ("conv_s2d", "bn_s2d", "conv_dw", "bn1", "aa", "se", "conv_pw", "bn2", "drop_path"),
            "",
            has_skip=_has_skip,
        ),
        eb.InvertedResidual: Block(
            (
                "conv_s2d",
                "bn_s2d",
                "conv_pw",
                "bn1",
                "conv_dw",
                "bn2",
                "aa",
                "se",
                "conv_pwl",
                "bn3",
                "drop_path",
            ),
            "",
            has_skip=_has_skip,
        ),
        eb.EdgeResidual: Block(
            ("conv_exp", "bn1", "aa", "se", "conv_pwl", "bn2", "drop_path"), "", has_skip=_has_skip
        ),
    }
    return (
        Family(
            "resnet",
            resnet.ResNet,
            ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"),
            "global_pool",
            {
                resnet.BasicBlock: Block(
                    ("conv1", "bn1", "drop_block", "act1", "aa", "conv2", "bn2", "se", "drop_path"),
                    "downsample",
                    "act2",
                ),
                resnet.Bottleneck: Block(
                    (
                        "conv1",
                        "bn1",
                        "act1",
                        "conv2",
                        "bn2",
                        "drop_block",
                        "act2",
                        "aa",
                        "conv3",
                        "bn3",
                        "se",
                        "drop_path",
                    ),
                    "downsample",
                    "act3",
                ),
            },
        ),
        Family(
            "efficientnet",
            efficientnet.EfficientNet,
            ("conv_stem", "bn1", "blocks", "conv_head", "bn2"),
            "global_pool",
            mobile_blocks,
        ),
        Family(
            "mobilenet", mobilenetv3.MobileNetV3, ("conv_stem", "bn1", "blocks"), "global_pool", mobile_blocks
        ),
        Family(
            "regnet",
            regnet.RegNet,
            ("stem", "s1", "s2", "s3", "s4", "final_conv"),
            "head.global_pool",
            {
                **conv_norm_act,
                regnet.Bottleneck: Block(
                    ("conv1", "conv2", "se", "conv3", "drop_path"),
                    "downsample",
                    "act3",
                    has_skip=lambda b: b.downsample is not None,
                ),
            },
            containers=(regnet.RegStage,),
        ),
    )


def _family_of(model: nn.Module) -> Family | None:
    return next((f for f in _families() if isinstance(model, f.model)), None)


def layer_mask_family(model: nn.Module) -> str | None:
    """The family name layer masking would use for `model` (None: not a family it covers)."""
    if convnext.is_convnext(model):
        return "convnext"
    fam = _family_of(model)
    return fam.name if fam is not None else None


def is_layer_mask_model(model: nn.Module) -> bool:
    return layer_mask_family(model) is not None


def _conv_types() -> tuple[type[nn.Module], ...]:
    from timm.layers import Conv2dSame

    return (nn.Conv2d, Conv2dSame)


def _check_module(fam: Family, mod: nn.Module, path: str) -> None:
    """Refuse, naming `path`, any module in the walked part that the walker would not handle exactly."""
    if type(mod) in fam.blocks or isinstance(mod, (nn.Sequential, *fam.containers)):
        children = dict(mod.named_children())
        for name, child in children.items():
            _check_module(fam, child, f"{path}.{name}")
        return
    if type(mod) in _conv_types() or isinstance(mod, (*ops.pointwise_types(), nn.MaxPool2d, nn.AvgPool2d)):
        return
    if ops.is_squeeze_excite(mod):
        ops.check_squeeze_excite(mod, STRATEGY, path)
        return
    raise ops.refuse(STRATEGY, mod, path)


def check_layer_mask(model: nn.Module) -> None:
    """Refuse anything but a covered timm family built only from layers this module handles."""
    if convnext.is_convnext(model):
        convnext.check(model)
        return
    fam = _family_of(model)
    if fam is None:
        raise EngineError(
            "layer_mask supports timm's ResNet, EfficientNet, MobileNetV3, RegNet and ConvNeXt families; "
            f"{type(model).__name__} is not one. Use a pixel fill instead."
        )
    for name in fam.features:
        _check_module(fam, model.get_submodule(name), name)
    ops.check_global_pool(model.get_submodule(fam.pool), STRATEGY, fam.pool)


def _sub(module: nn.Module, name: str) -> nn.Module | None:
    return cast(nn.Module | None, getattr(module, name, None))


def _apply(
    fam: Family, mod: nn.Module, x: torch.Tensor, m: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    spec = fam.blocks.get(type(mod))
    if spec is not None:
        return _block(fam, spec, mod, x, m)
    if isinstance(mod, (nn.Sequential, *fam.containers)):
        for sub in mod.children():
            x, m = _apply(fam, sub, x, m)
        return x, m
    if isinstance(mod, nn.Conv2d):
        return ops.fill_conv(mod, x, m)
    if isinstance(mod, nn.MaxPool2d):
        return ops.maxpool(mod, x, m)
    if isinstance(mod, nn.AvgPool2d):
        return ops.avgpool(mod, x, m)
    if ops.is_squeeze_excite(mod):
        return ops.squeeze_excite(mod, x, m)
    if isinstance(mod, ops.pointwise_types()):
        return mod(x), m  # per position: hidden positions are never read downstream (masked_ops)
    raise EngineError(f"layer_mask cannot handle {type(mod).__name__}")


def _block(
    fam: Family, spec: Block, block: nn.Module, x: torch.Tensor, m: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    main, mm = x, m
    for name in spec.main:
        sub = _sub(block, name)
        if sub is not None:
            main, mm = _apply(fam, sub, main, mm)
    if spec.shortcut is None or not spec.has_skip(block):
        return main, mm
    short_mod = _sub(block, spec.shortcut) if spec.shortcut else None
    short, ms = (x, m) if short_mod is None else _apply(fam, short_mod, x, m)
    # A residual sum is visible only where both branches are.
    both = mm * ms
    out = main + short
    after = _sub(block, spec.after) if spec.after else None
    return _apply(fam, after, out, both) if after is not None else (out, both)


def layer_mask_logits(model: nn.Module, x_norm: torch.Tensor, keep_pixels: torch.Tensor) -> torch.Tensor:
    """Logits for normalised images [B,3,H,W] with `keep_pixels` [B,H,W] visible."""
    m = keep_pixels.to(x_norm.dtype).unsqueeze(1)
    if x_norm.is_contiguous(memory_format=torch.channels_last):
        m = m.contiguous(memory_format=torch.channels_last)
    if convnext.is_convnext(model):
        return convnext.logits(model, x_norm, m)
    fam = _family_of(model)
    if fam is None:
        raise EngineError(f"layer_mask does not cover {type(model).__name__}")
    x = x_norm
    for name in fam.features:
        x, m = _apply(fam, model.get_submodule(name), x, m)
    pooled = ops.global_pool(model.get_submodule(fam.pool), x, m)
    return cast(torch.Tensor, model.forward_head(pooled))  # type: ignore[operator]
