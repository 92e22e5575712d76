"""Masked layers shared by the CNN walkers: each takes activations `x` and a float keep-mask `m`.

`m` is [B,1,h,w] in {0,1} at the activations' resolution. Every operation returns the new activations
and mask. Values at hidden positions (m = 0) are never read: every operation that mixes positions
selects its input with `hide` first (the fill, pools, squeeze-excitation, the global pool), so a
per-position layer needs no masking at all (f(x*m)*m and f(x) agree wherever m = 1) and whatever
sits at hidden positions cannot reach a visible one. Selection, not multiplication, so even a
non-finite value there stays there. Two convolution rules exist, as the families were pre-trained
differently:

- `fill_conv` (ResNet, EfficientNet, MobileNet, RegNet; Balasubramanian & Feizi, 2023): removed
  positions are filled from visible neighbours before a spatial convolution (as many rounds as can
  reach a visible output: 2 x the kernel's reach) and the mask is max-pooled with the convolution's
  geometry, so a location is visible if any input in its window is.
- `sparse_conv` (ConvNeXt; the sparse convolutions of ConvNeXt V2's masked pre-training): the
  convolution reads zeros at removed positions and writes only where its centre is kept; a strided
  convolution keeps an output if any input in its window is kept.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from auditors.engine.errors import EngineError


def pointwise_types() -> tuple[type[nn.Module], ...]:
    """Layers that act on each position alone (so they need no mask): activations, BN, dropout."""
    from timm.layers import DropBlock2d, DropPath, activations, activations_me

    timm_acts = [
        obj
        for mod in (activations, activations_me)
        for obj in vars(mod).values()
        if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == mod.__name__
    ]
    return (
        nn.BatchNorm2d,  # also timm's BatchNormAct2d (BN + dropout + activation, all per position)
        nn.ReLU,
        nn.ReLU6,
        nn.LeakyReLU,
        nn.PReLU,
        nn.SiLU,
        nn.GELU,
        nn.Hardswish,
        nn.Hardsigmoid,
        nn.Sigmoid,
        nn.Tanh,
        nn.Mish,
        nn.Identity,
        nn.Dropout,
        nn.Dropout2d,
        DropPath,
        DropBlock2d,
        *timm_acts,
    )


def refuse(strategy: str, mod: nn.Module, path: str, why: str = "") -> EngineError:
    """The one refusal message: which layer, where, and what to do instead."""
    reason = f" ({why})" if why else ""
    return EngineError(
        f"{strategy} cannot handle {type(mod).__name__} at {path or '<root>'}{reason}. Use a pixel fill instead."
    )


def hide(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """x where the mask is 1, exactly 0 where it is 0 (whatever x holds there, even inf or NaN)."""
    return torch.where(m > 0, x, torch.zeros((), dtype=x.dtype, device=x.device))


def neighbour_fill(x: torch.Tensor, m: torch.Tensor, rounds: int) -> torch.Tensor:
    """Fill removed positions of `x` [B,C,h,w] from visible neighbours, `rounds` times.

    Each round: num = conv3x3_ones(x*m), den = conv3x3_ones(m), x += (1-m)*num/(den+1e-5),
    m = clip(m+den, 0, 1). The fill carries no gradient; visible positions are untouched.
    The filled tensor stays zero wherever the running mask is 0, so x*m == x inside the loop and each
    round costs one depthwise box sum and one fused multiply-add over the activations.
    """
    if bool((m > 0).all()):
        return x  # nothing removed at this resolution (common in deep layers): skip the fill
    with torch.no_grad():
        c = x.shape[1]
        ones_x = torch.ones(c, 1, 3, 3, device=x.device, dtype=x.dtype)
        xf = hide(x, m)
        mf = m
        for _ in range(rounds):
            num = F.conv2d(xf, ones_x, padding=1, groups=c)
            # The count of visible neighbours: a 3x3 box sum of one channel (a pool is the fast way).
            den = F.avg_pool2d(mf, 3, 1, 1, count_include_pad=True) * 9
            xf = torch.addcmul(xf, num, ((1 - mf) / (den + 1e-5)).to(num.dtype))
            mf = (mf + den).clamp(0, 1)
            if bool((mf > 0).all()):
                break  # every position is filled: further rounds would change nothing
    # Visible positions pass through (with their gradient); removed ones take the detached fill.
    return torch.where(m > 0, x, xf.to(x.dtype))


def _same_pad(conv: nn.Conv2d, m: torch.Tensor) -> torch.Tensor:
    """The zero padding timm's `Conv2dSame` adds at run time, applied to the mask."""
    from timm.layers.padding import pad_same

    return cast(
        torch.Tensor, pad_same(m, list(conv.kernel_size), list(conv.stride), list(conv.dilation), 0.0)
    )


def conv_mask(conv: nn.Conv2d, m: torch.Tensor) -> torch.Tensor:
    """A conv output is visible if any input in its window is: max-pool with the conv's geometry."""
    from timm.layers import Conv2dSame

    if isinstance(conv, Conv2dSame):
        return F.max_pool2d(_same_pad(conv, m), conv.kernel_size, conv.stride, 0, conv.dilation)
    padding: Any = conv.padding
    return F.max_pool2d(m, conv.kernel_size, conv.stride, padding, conv.dilation)


def fill_rounds(conv: nn.Conv2d) -> int:
    """Rounds of neighbour fill that reach every input of every visible output: an output is visible
    if an input within its window's reach r is, so its window spans inputs up to 2r from a visible one.
    Farther fills could only reach outputs that are masked anyway, so more rounds change nothing."""
    dil: Any = conv.dilation
    return max(2 * d * (k // 2) for k, d in zip(conv.kernel_size, dil, strict=True))


def fill_conv(conv: nn.Conv2d, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rounds = fill_rounds(conv)
    if rounds:
        x = neighbour_fill(x, m, rounds)
    return conv(x), conv_mask(conv, m)


def sparse_conv(conv: nn.Conv2d, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """conv(x*m), written only where kept: stride 1 keeps the mask, a stride keeps any-kept windows."""
    y = conv(hide(x, m))
    stride: Any = conv.stride
    mo = m if tuple(stride) == (1, 1) and y.shape[-2:] == m.shape[-2:] else conv_mask(conv, m)
    return y * mo, mo


def maxpool(pool: nn.MaxPool2d, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    neg = torch.finfo(x.dtype).min
    y = pool(x.masked_fill(m == 0, neg))
    pm = F.max_pool2d(m, pool.kernel_size, pool.stride, pool.padding, pool.dilation)
    return torch.where(pm > 0, y, torch.zeros_like(y)), pm


def avgpool(pool: nn.AvgPool2d, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    num = pool(hide(x, m))
    den = pool(m)
    pm = F.max_pool2d(m, pool.kernel_size, pool.stride, pool.padding)
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num)), pm


def check_global_pool(gp: nn.Module, strategy: str, path: str) -> None:
    if getattr(gp, "pool_type", None) not in ("avg", "max", "fast", "fastavg", "fastmax"):
        raise refuse(strategy, gp, path, f"global pooling {getattr(gp, 'pool_type', '?')!r}; avg/max handled")


def global_pool(gp: nn.Module, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Masked global pooling to [B,C,1,1]: average (or max) over visible positions only.

    The result is a 1x1 map, so the model's own head (which pools again, a no-op on 1x1) runs unchanged.
    """
    if str(getattr(gp, "pool_type", "avg")).endswith("max"):
        y = x.masked_fill(m == 0, torch.finfo(x.dtype).min).amax(dim=(2, 3), keepdim=True)
        return torch.where(m.amax(dim=(2, 3), keepdim=True) > 0, y, torch.zeros_like(y))
    return hide(x, m).sum(dim=(2, 3), keepdim=True) / m.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)


def _se_types() -> tuple[type[nn.Module], type[nn.Module]]:
    from timm.layers.squeeze_excite import SEModule
    from timm.models._efficientnet_blocks import SqueezeExcite

    return SqueezeExcite, SEModule


def is_squeeze_excite(mod: nn.Module) -> bool:
    return isinstance(mod, _se_types())


def check_squeeze_excite(se: nn.Module, strategy: str, path: str) -> None:
    if getattr(se, "add_maxpool", False):
        raise refuse(strategy, se, path, "squeeze-excitation with an added max-pool")


def squeeze_excite(se: nn.Module, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x * gate(f(mean of x over visible positions)): the squeeze never averages removed positions."""
    pooled = hide(x, m).sum(dim=(2, 3), keepdim=True) / m.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    squeeze_excite_cls, _ = _se_types()
    s: Any = se
    if isinstance(se, squeeze_excite_cls):  # timm efficientnet / mobilenetv3 blocks
        g = s.gate(s.conv_expand(s.act1(s.conv_reduce(pooled))))
    else:  # timm.layers.SEModule (RegNetY, SE-ResNet)
        g = s.gate(s.fc2(s.act(s.bn(s.fc1(pooled)))))
    return x * g, m
