"""Token dropping for timm's Swin Transformer (V1): removed tokens are masked out of windowed attention.

Swin's attention is local (7x7 windows, shifted every other block) with a relative position bias, so
its tokens cannot leave the sequence as in a ViT without breaking the window grid. Instead a removed
token stays in place, at zero, and is made invisible:

- patch embedding: a 4x4 token is kept only if all its pixels are (as for a ViT's patches);
- windowed attention: an additive key mask (-1e4 on removed keys, exactly 0 after the softmax) joins
  the model's own shifted-window mask, per sample and window, and goes through the model's own
  attention module, so the relative position bias and the shift are untouched;
- patch merging: a merged token is kept if any of its 2x2 tokens is; its LayerNorm statistics are
  taken over the kept tokens' features only and the removed ones enter the reduction as zeros;
- the final average pool averages kept tokens only.
A kept query always has a kept key (itself) in its own shift region, so it never attends elsewhere.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from auditors.engine import masked_ops as ops
from auditors.engine.errors import EngineError

STRATEGY = "token_drop"
REMOVED_KEY = -1.0e4  # exp(-1e4) is exactly 0 in fp32 and bf16; finite, so no NaN in a fully removed window


def _types() -> dict[str, Any]:
    from timm.layers import Mlp, PatchEmbed
    from timm.models.swin_transformer import (
        PatchMerging,
        SwinTransformer,
        SwinTransformerBlock,
        SwinTransformerStage,
        WindowAttention,
    )

    return {
        "model": SwinTransformer,
        "stage": SwinTransformerStage,
        "block": SwinTransformerBlock,
        "merge": PatchMerging,
        "attn": WindowAttention,
        "mlp": Mlp,
        "embed": PatchEmbed,
    }


def is_swin(model: nn.Module) -> bool:
    return isinstance(model, _types()["model"])


def _need(cond: bool, mod: nn.Module, path: str, why: str = "") -> None:
    if not cond:
        raise ops.refuse(STRATEGY, mod, path, why)


def check(model: nn.Module) -> None:
    """Refuse, with the module path, any part of a Swin the masked forward would not follow."""
    t = _types()
    if not is_swin(model):
        raise EngineError(f"{type(model).__name__} is not a timm SwinTransformer")
    m: Any = model
    _need(type(m.patch_embed) is t["embed"], m.patch_embed, "patch_embed")
    _need(
        getattr(m, "absolute_pos_embed", None) is None, m, "absolute_pos_embed", "absolute position embedding"
    )
    for i, stage in enumerate(m.layers):
        path = f"layers.{i}"
        _need(isinstance(stage, t["stage"]), stage, path)
        ds = stage.downsample
        if not isinstance(ds, nn.Identity):
            _need(type(ds) is t["merge"], ds, f"{path}.downsample")
            _need(type(ds.norm) is nn.LayerNorm, ds.norm, f"{path}.downsample.norm")
        for j, blk in enumerate(stage.blocks):
            bp = f"{path}.blocks.{j}"
            _need(type(blk) is t["block"], blk, bp)
            _need(type(blk.attn) is t["attn"], blk.attn, f"{bp}.attn")
            _need(type(blk.mlp) is t["mlp"], blk.mlp, f"{bp}.mlp")
            for name in ("norm1", "norm2"):
                _need(type(getattr(blk, name)) is nn.LayerNorm, getattr(blk, name), f"{bp}.{name}")
    _need(isinstance(m.norm, nn.LayerNorm | nn.Identity), m.norm, "norm")
    ops.check_global_pool(m.head.global_pool, STRATEGY, "head.global_pool")


def token_keep_grid(keep_pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """[B,H,W] bool -> [B,H/p,W/p] float: a token is kept only if none of its pixels was removed."""
    k = keep_pixels.to(torch.float32).unsqueeze(1)
    return (-F.max_pool2d(-k, patch, patch)).squeeze(1)


def _window_attention(block: nn.Module, x: torch.Tensor, mk: torch.Tensor) -> torch.Tensor:
    """timm's SwinTransformerBlock._attn, with removed keys masked per sample and window."""
    from timm.models.swin_transformer import window_partition, window_reverse

    b: Any = block
    bsz, h, w, c = x.shape
    ws, ss = tuple(b.window_size), tuple(b.shift_size)
    if any(ss):
        x = torch.roll(x, shifts=(-ss[0], -ss[1]), dims=(1, 2))
        mk = torch.roll(mk, shifts=(-ss[0], -ss[1]), dims=(1, 2))
    pad_h, pad_w = (ws[0] - h % ws[0]) % ws[0], (ws[1] - w % ws[1]) % ws[1]
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    mk = F.pad(mk, (0, pad_w, 0, pad_h), value=1.0)  # the model attends to its zero padding: keep it
    hp, wp = x.shape[1], x.shape[2]
    area = ws[0] * ws[1]
    xw = window_partition(x, ws).view(-1, area, c)
    kw = window_partition(mk.unsqueeze(-1), ws).view(-1, 1, area)  # [B*nW, 1, N]
    mask = ((1.0 - kw) * REMOVED_KEY).to(x.dtype).expand(-1, area, -1)
    shift = b.get_attn_mask(x) if getattr(b, "dynamic_mask", False) else b.attn_mask
    if shift is not None:  # [nW, N, N], the same for every sample
        mask = mask + shift.to(x.dtype).repeat(bsz, 1, 1)
    out = b.attn(xw, mask=mask)  # each (sample, window) is its own "window" of the mask
    out = window_reverse(out.view(-1, ws[0], ws[1], c), ws, hp, wp)[:, :h, :w, :]
    if any(ss):
        out = torch.roll(out, shifts=ss, dims=(1, 2))
    return cast(torch.Tensor, out)


def _block(block: nn.Module, x: torch.Tensor, mk: torch.Tensor) -> torch.Tensor:
    b: Any = block
    bsz, h, w, c = x.shape
    x = x + b.drop_path1(_window_attention(block, b.norm1(x), mk))
    x = x.reshape(bsz, -1, c)
    x = x + b.drop_path2(b.mlp(b.norm2(x)))
    return x.reshape(bsz, h, w, c) * mk.unsqueeze(-1)


def _merge(merge: nn.Module, x: torch.Tensor, mk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PatchMerging with LayerNorm statistics over the kept tokens of each 2x2 group only."""
    mg: Any = merge
    bsz, h, w, c = x.shape
    x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
    mk = F.pad(mk, (0, w % 2, 0, h % 2), value=1.0)  # zero padding is part of the plain forward
    h, w = x.shape[1], x.shape[2]
    xf = x.reshape(bsz, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
    m4 = mk.reshape(bsz, h // 2, 2, w // 2, 2).permute(0, 1, 3, 4, 2)  # [B,h/2,w/2,2,2]
    wt = m4.unsqueeze(-1).expand(-1, -1, -1, -1, -1, c).flatten(3)
    norm: nn.LayerNorm = mg.norm
    count = wt.sum(-1, keepdim=True).clamp_min(1.0)
    mean = (xf * wt).sum(-1, keepdim=True) / count
    var = (((xf - mean) ** 2) * wt).sum(-1, keepdim=True) / count
    y = (xf - mean) * torch.rsqrt(var + norm.eps)
    if norm.weight is not None:
        y = y * norm.weight
    if norm.bias is not None:
        y = y + norm.bias
    mo = m4.amax(dim=(3, 4))
    return mg.reduction(y * wt) * mo.unsqueeze(-1), mo


def logits(model: nn.Module, x_norm: torch.Tensor, keep_pixels: torch.Tensor) -> torch.Tensor:
    """Logits of a timm Swin for normalised images [B,3,H,W] seeing only the tokens `keep_pixels` keeps."""
    mod: Any = model
    patch = int(mod.patch_embed.patch_size[0])
    mk = token_keep_grid(keep_pixels, patch).to(x_norm.dtype)
    x = mod.patch_embed(x_norm) * mk.unsqueeze(-1)
    for stage in mod.layers:
        if not isinstance(stage.downsample, nn.Identity):
            x, mk = _merge(stage.downsample, x, mk)
        for block in stage.blocks:
            x = _block(block, x, mk)
    x = mod.norm(x) * mk.unsqueeze(-1)
    pooled = x.sum(dim=(1, 2), keepdim=True) / mk.sum(dim=(1, 2)).clamp_min(1.0).view(-1, 1, 1, 1)
    return cast(torch.Tensor, mod.forward_head(pooled))
