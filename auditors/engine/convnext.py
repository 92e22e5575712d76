"""Layer masking for timm's ConvNeXt (V1 and V2), in the manner of ConvNeXt V2's masked pre-training.

ConvNeXt V2 (Woo et al., 2023) pre-trains with *sparse* convolutions: removed positions are absent,
not painted. Here the keep-mask is carried through every block and activations are kept at zero where
it is 0: the patchify stem keeps a 4x4 patch only if all its pixels are (as a ViT's patch embedding
does); the downsampling convolutions read only kept inputs and keep an output if any input in their
window is kept; the 7x7 depthwise convolution reads zeros at removed positions and writes only
where its centre is kept (the mask does not grow); LayerNorm acts per position, the V2 GRN takes its
spatial L2 norm over kept positions only, and the global pool averages kept positions only.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from auditors.engine import masked_ops as ops
from auditors.engine.errors import EngineError

STRATEGY = "layer_mask"


def _types() -> dict[str, Any]:
    from timm.layers import GlobalResponseNormMlp, LayerNorm, LayerNorm2d, Mlp
    from timm.layers.grn import GlobalResponseNorm
    from timm.layers.norm import RmsNorm, RmsNorm2d, SimpleNorm, SimpleNorm2d
    from timm.models.convnext import ConvNeXt, ConvNeXtBlock, ConvNeXtStage

    return {
        "model": ConvNeXt,
        "stage": ConvNeXtStage,
        "block": ConvNeXtBlock,
        "mlp": (Mlp, GlobalResponseNormMlp),
        "grn": GlobalResponseNorm,
        # Normalisations over the channels of one position: exact as f(x*m)*m.
        "norm": (LayerNorm, LayerNorm2d, nn.LayerNorm, RmsNorm, RmsNorm2d, SimpleNorm, SimpleNorm2d),
    }


def is_convnext(model: nn.Module) -> bool:
    return isinstance(model, _types()["model"])


def _per_position(mod: nn.Module) -> bool:
    return isinstance(mod, _types()["norm"] + ops.pointwise_types())


def _check_sequence(seq: nn.Module, path: str) -> None:
    for name, mod in seq.named_children():
        if type(mod) is not nn.Conv2d and not _per_position(mod):
            raise ops.refuse(STRATEGY, mod, f"{path}.{name}")


def _check_block(block: nn.Module, path: str) -> None:
    t = _types()
    b: Any = block
    if not isinstance(b.shortcut, nn.Identity):
        raise ops.refuse(STRATEGY, b.shortcut, f"{path}.shortcut", "a strided or resizing block")
    if type(b.conv_dw) is not nn.Conv2d or tuple(b.conv_dw.stride) != (1, 1):
        raise ops.refuse(STRATEGY, b.conv_dw, f"{path}.conv_dw", "only stride-1 depthwise convolutions")
    if not _per_position(b.norm):
        raise ops.refuse(STRATEGY, b.norm, f"{path}.norm")
    if type(b.mlp) not in t["mlp"]:
        raise ops.refuse(STRATEGY, b.mlp, f"{path}.mlp")
    for name, mod in b.mlp.named_children():
        if not (_per_position(mod) or isinstance(mod, nn.Linear | nn.Conv2d | t["grn"])):
            raise ops.refuse(STRATEGY, mod, f"{path}.mlp.{name}")
        if isinstance(mod, nn.Conv2d) and mod.kernel_size != (1, 1):
            raise ops.refuse(STRATEGY, mod, f"{path}.mlp.{name}", "a spatial convolution inside the MLP")


def check(model: nn.Module) -> None:
    """Refuse, with the module path, any part of a ConvNeXt the masked forward would not follow."""
    t = _types()
    if not is_convnext(model):
        raise EngineError(f"{type(model).__name__} is not a timm ConvNeXt")
    m: Any = model
    _check_sequence(m.stem, "stem")
    for i, stage in enumerate(m.stages):
        path = f"stages.{i}"
        if not isinstance(stage, t["stage"]):
            raise ops.refuse(STRATEGY, stage, path)
        if not isinstance(stage.downsample, nn.Identity):
            _check_sequence(stage.downsample, f"{path}.downsample")
        for j, block in enumerate(stage.blocks):
            if not isinstance(block, t["block"]):
                raise ops.refuse(STRATEGY, block, f"{path}.blocks.{j}")
            _check_block(block, f"{path}.blocks.{j}")
    if not _per_position(m.norm_pre):
        raise ops.refuse(STRATEGY, m.norm_pre, "norm_pre")
    ops.check_global_pool(m.head.global_pool, STRATEGY, "head.global_pool")


def _is_patchify(conv: nn.Module) -> bool:
    c: Any = conv
    return isinstance(conv, nn.Conv2d) and c.kernel_size == c.stride and c.padding == (0, 0)


def _sequence(
    seq: nn.Module, x: torch.Tensor, m: torch.Tensor, *, stem: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    for mod in seq.children():
        if stem and _is_patchify(mod):
            # The patchify stem, like a ViT's patch embedding: a 4x4 patch is kept only if all its
            # pixels are, so no removed pixel enters as a colour (zero) beside kept ones.
            conv: Any = mod
            m = -F.max_pool2d(-m, conv.kernel_size, conv.stride)
            x = ops.hide(conv(x), m)
        elif isinstance(mod, nn.Conv2d):
            x, m = ops.sparse_conv(mod, x, m)
        else:
            x = mod(x) * m
    return x, m


def _mlp(mlp: nn.Module, x: torch.Tensor, mk: torch.Tensor) -> torch.Tensor:
    """timm's Mlp / GlobalResponseNormMlp with the GRN's spatial norm taken over kept positions."""
    f: Any = mlp
    h = f.drop1(f.act(f.fc1(x)))
    grn = getattr(f, "grn", None)
    h = grn(h * mk) if grn is not None else f.norm(h)
    return cast(torch.Tensor, f.drop2(f.fc2(h)))


def _block(block: nn.Module, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    b: Any = block
    y, _ = ops.sparse_conv(b.conv_dw, x, m)
    if b.use_conv_mlp:
        y = _mlp(b.mlp, b.norm(y), m)
    else:
        mk = m.permute(0, 2, 3, 1)
        y = _mlp(b.mlp, b.norm(y.permute(0, 2, 3, 1)), mk).permute(0, 3, 1, 2)
    if b.gamma is not None:
        y = y.mul(b.gamma.reshape(1, -1, 1, 1))
    return (b.drop_path(y) + x) * m


def logits(model: nn.Module, x_norm: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Logits of a timm ConvNeXt for normalised images [B,3,H,W] and keep-mask `m` [B,1,H,W]."""
    mod: Any = model
    x, m = _sequence(mod.stem, x_norm, m, stem=True)
    for stage in mod.stages:
        if not isinstance(stage.downsample, nn.Identity):
            x, m = _sequence(stage.downsample, x, m)
        for block in stage.blocks:
            x = _block(block, x, m)
    x = mod.norm_pre(x) * m
    return cast(torch.Tensor, mod.forward_head(ops.global_pool(mod.head.global_pool, x, m)))
