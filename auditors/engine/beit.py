"""Token dropping for timm's BEiT (V1/V2): removed tokens are masked out of attention.

BEiT adds a relative position bias to every attention map, indexed by the full patch grid, so a
shortened sequence would need its bias re-indexed per sample. Instead the sequence keeps its length
and removed tokens become invisible keys: an additive -1e4 (exactly 0 after the softmax) rides on the
model's own `shared_rel_pos_bias` argument, which every block adds to its attention logits. For kept
queries this is token dropping exactly (softmax over kept keys, the same bias for every kept pair);
removed tokens start at zero (their patch content is dropped) and are left out of the average pool.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from auditors.engine import masked_ops as ops
from auditors.engine.errors import EngineError

STRATEGY = "token_drop"
REMOVED_KEY = -1.0e4


def _types() -> dict[str, Any]:
    from timm.layers import PatchEmbed
    from timm.models.beit import Beit, Block

    return {"model": Beit, "block": Block, "embed": PatchEmbed}


def is_beit(model: nn.Module) -> bool:
    return isinstance(model, _types()["model"])


def check(model: nn.Module) -> None:
    t = _types()
    if not is_beit(model):
        raise EngineError(f"{type(model).__name__} is not a timm Beit")
    m: Any = model
    if type(m.patch_embed) is not t["embed"] or not m.patch_embed.flatten:
        raise ops.refuse(STRATEGY, m.patch_embed, "patch_embed")
    for i, blk in enumerate(m.blocks):
        if type(blk) is not t["block"]:
            raise ops.refuse(STRATEGY, blk, f"blocks.{i}")
    if m.global_pool not in ("avg", "token"):
        raise ops.refuse(STRATEGY, m, "global_pool", f"pooling {m.global_pool!r}")


def logits(model: nn.Module, x_norm: torch.Tensor, keep_tokens: torch.Tensor) -> torch.Tensor:
    """Logits of a timm BEiT for normalised images [B,3,H,W] seeing only `keep_tokens` [B,N]."""
    m: Any = model
    x = m.patch_embed(x_norm) * keep_tokens.unsqueeze(-1).to(x_norm.dtype)
    x = torch.cat((m.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
    if m.pos_embed is not None:
        x = x + m.pos_embed
    x = m.pos_drop(x)
    keys = torch.cat([keep_tokens.new_ones(keep_tokens.shape[0], 1), keep_tokens], dim=1)
    bias = ((~keys).to(x.dtype) * REMOVED_KEY)[:, None, None, :]  # [B,1,1,1+N]: a column per key
    shared = m.rel_pos_bias() if m.rel_pos_bias is not None else None
    bias = bias + shared.unsqueeze(0) if shared is not None else bias
    for blk in m.blocks:
        x = blk(x, shared_rel_pos_bias=bias)
    x = m.norm(x)
    if m.global_pool == "avg":
        k = keep_tokens.unsqueeze(-1).to(x.dtype)
        pooled = (x[:, m.num_prefix_tokens :] * k).sum(1) / k.sum(1).clamp_min(1.0)
    else:
        pooled = x[:, 0]
    return cast(torch.Tensor, m.head(m.head_drop(m.fc_norm(pooled))))
