"""Layer masking for timm's ResNet family (Balasubramanian & Feizi, 2023).

The binary keep-mask travels with the activations so removed pixels never reach a convolution as a
colour. Before each spatial convolution removed positions are filled by *neighbour padding*
(k rounds, k = kernel width; no gradient through the fill); the mask is then downsampled with a
max-pool of the conv's geometry (a location is visible if any input in its window is). Pointwise
layers and BatchNorm compute f(x*m)*m, max-pool takes pool(x)*pool(m), a residual add keeps the
intersection of both branches' masks, and global average pooling averages visible positions only.

The walk is generic over the module tree of a timm `ResNet`; any layer type it does not know is
refused up front with the module path, rather than silently treated as pointwise.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from auditors.engine.errors import EngineError

_POINTWISE: tuple[type[nn.Module], ...] = (
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.SiLU,
    nn.GELU,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
)


def _timm_types() -> dict[str, type[nn.Module]]:
    from timm.layers import DropBlock2d, DropPath, SelectAdaptivePool2d
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet

    return {
        "ResNet": ResNet,
        "BasicBlock": BasicBlock,
        "Bottleneck": Bottleneck,
        "SelectAdaptivePool2d": SelectAdaptivePool2d,
        "DropPath": DropPath,
        "DropBlock2d": DropBlock2d,
    }


def is_layer_mask_model(model: nn.Module) -> bool:
    return isinstance(model, _timm_types()["ResNet"])


def check_layer_mask(model: nn.Module) -> None:
    """Refuse anything but a timm ResNet built only from layers this module handles."""
    t = _timm_types()
    if not isinstance(model, t["ResNet"]):
        raise EngineError(
            f"layer_mask supports timm's ResNet family (resnet*, resnet*d, wide_resnet*); "
            f"{type(model).__name__} is not one. Use a pixel fill instead."
        )
    pointwise = (*_POINTWISE, t["DropPath"], t["DropBlock2d"])
    known = (
        nn.Conv2d,
        nn.MaxPool2d,
        nn.AvgPool2d,
        nn.Linear,
        nn.Flatten,
        nn.Sequential,
        nn.AdaptiveAvgPool2d,
    )
    for path, mod in model.named_modules():
        if isinstance(mod, t["BasicBlock"] | t["Bottleneck"]):
            se = getattr(mod, "se", None)
            if se is not None and not isinstance(se, nn.Identity):
                raise EngineError(
                    f"layer_mask cannot handle the attention module at {path}.se ({type(se).__name__})"
                )
            continue
        if isinstance(mod, t["SelectAdaptivePool2d"]):
            if mod.pool_type not in ("avg", "max"):
                raise EngineError(
                    f"layer_mask handles avg/max global pooling, not {mod.pool_type!r} at {path}"
                )
            continue
        if isinstance(mod, (t["ResNet"], *pointwise, *known)):
            continue
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        if parent and isinstance(model.get_submodule(parent), t["SelectAdaptivePool2d"]):
            continue
        raise EngineError(f"layer_mask cannot handle {type(mod).__name__} at {path or '<root>'}")


def neighbour_fill(x: torch.Tensor, m: torch.Tensor, rounds: int) -> torch.Tensor:
    """Fill removed positions of `x` [B,C,h,w] from visible neighbours, `rounds` times.

    Each round: num = conv3x3_ones(x*m), den = conv3x3_ones(m), x += (1-m)*num/(den+1e-5),
    m = clip(m+den, 0, 1). The fill carries no gradient; visible positions are untouched.
    """
    if bool((m > 0).all()):
        return x  # nothing removed at this resolution (common in deep layers): skip the fill
    with torch.no_grad():
        c = x.shape[1]
        ones_x = torch.ones(c, 1, 3, 3, device=x.device, dtype=x.dtype)
        ones_m = torch.ones(1, 1, 3, 3, device=m.device, dtype=m.dtype)
        xf = x * m
        mf = m
        for _ in range(rounds):
            num = F.conv2d(xf * mf, ones_x, padding=1, groups=c)
            den = F.conv2d(mf, ones_m, padding=1)
            xf = xf + (1 - mf) * num / (den + 1e-5)
            mf = (mf + den).clamp(0, 1)
            if bool((mf > 0).all()):
                break  # every position is filled: further rounds would change nothing
        filled = xf * (1 - m)
    return x * m + filled


def _pool_mask(m: torch.Tensor, kernel: Any, stride: Any, padding: Any, dilation: Any = 1) -> torch.Tensor:
    return F.max_pool2d(m, kernel, stride, padding, dilation)


def _conv(conv: nn.Conv2d, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    kh, kw = conv.kernel_size
    if kh > 1 or kw > 1:
        x = neighbour_fill(x, m, rounds=kw)
    y = conv(x)
    return y, _pool_mask(m, conv.kernel_size, conv.stride, conv.padding, conv.dilation)


def _maxpool(pool: nn.MaxPool2d, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    neg = torch.finfo(x.dtype).min
    y = pool(x.masked_fill(m == 0, neg))
    pm = _pool_mask(m, pool.kernel_size, pool.stride, pool.padding, pool.dilation)
    return torch.where(pm > 0, y, torch.zeros_like(y)), pm


def _avgpool(pool: nn.AvgPool2d, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    num = pool(x * m)
    den = pool(m)
    pm = _pool_mask(m, pool.kernel_size, pool.stride, pool.padding)
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num)), pm


def _global_pool(gp: nn.Module, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    if gp.pool_type == "max":
        neg = torch.finfo(x.dtype).min
        y = x.masked_fill(m == 0, neg).amax(dim=(2, 3))
        return torch.where(m.amax(dim=(2, 3)) > 0, y, torch.zeros_like(y))
    visible = m.sum(dim=(2, 3))
    return (x * m).sum(dim=(2, 3)) / visible.clamp_min(1.0)


# timm's block forward passes, as sequences of attribute names (resnet.py BasicBlock / Bottleneck).
_BASIC_MAIN = ("conv1", "bn1", "drop_block", "act1", "aa", "conv2", "bn2")
_BOTTLENECK_MAIN = ("conv1", "bn1", "act1", "conv2", "bn2", "drop_block", "act2", "aa", "conv3", "bn3")


def _block(block: nn.Module, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    bottleneck = isinstance(block, _timm_types()["Bottleneck"])
    main, mm = x, m
    for name in _BOTTLENECK_MAIN if bottleneck else _BASIC_MAIN:
        main, mm = _apply(_sub(block, name), main, mm)
    if getattr(block, "drop_path", None) is not None:
        main, mm = _apply(_sub(block, "drop_path"), main, mm)
    short, ms = (x, m) if block.downsample is None else _apply(_sub(block, "downsample"), x, m)
    # A residual sum is visible only where both branches are.
    return _apply(_sub(block, "act3" if bottleneck else "act2"), main + short, mm * ms)


def _sub(module: nn.Module, name: str) -> nn.Module:
    return cast(nn.Module, getattr(module, name))


def _apply(mod: nn.Module, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    t = _timm_types()
    if isinstance(mod, nn.Sequential):
        for sub in mod:
            x, m = _apply(sub, x, m)
        return x, m
    if isinstance(mod, nn.Conv2d):
        return _conv(mod, x, m)
    if isinstance(mod, nn.MaxPool2d):
        return _maxpool(mod, x, m)
    if isinstance(mod, nn.AvgPool2d):
        return _avgpool(mod, x, m)
    if isinstance(mod, t["BasicBlock"] | t["Bottleneck"]):
        return _block(mod, x, m)
    if isinstance(mod, (*_POINTWISE, t["DropPath"], t["DropBlock2d"])):
        return mod(x * m) * m, m
    raise EngineError(f"layer_mask cannot handle {type(mod).__name__}")


def layer_mask_logits(model: nn.Module, x_norm: torch.Tensor, keep_pixels: torch.Tensor) -> torch.Tensor:
    """Logits of a timm ResNet for normalised images [B,3,H,W] with `keep_pixels` [B,H,W] visible."""
    m = keep_pixels.to(x_norm.dtype).unsqueeze(1)
    if x_norm.is_contiguous(memory_format=torch.channels_last):
        m = m.contiguous(memory_format=torch.channels_last)
    x = x_norm
    for name in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"):
        x, m = _apply(_sub(model, name), x, m)
    feats = _global_pool(_sub(model, "global_pool"), x, m)
    return cast(torch.Tensor, _sub(model, "fc")(feats))
