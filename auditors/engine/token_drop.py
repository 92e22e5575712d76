"""Token dropping for transformers (Jain et al., ICLR 2022, §3 "Missingness in ViTs").

Removed patches are not painted over: the model never sees a fill colour.

- ViT-like models with global attention (timm `VisionTransformer` and its subclasses: ViT, DeiT and
  distilled DeiT, DeiT III, CLIP ViTs, register-token ViTs): the removed tokens are taken out of the
  sequence. Pipeline: patch-embed -> add position embeddings -> gather the kept patch tokens (prefix
  tokens, i.e. class, distillation and register tokens, always kept) -> blocks -> norm -> head.
  Sequences of different lengths are bucketed by exact length, so every forward pass is the model's
  own unmodified one on a shorter sequence (exact for any pooling: token, avg, map).
  EVA (`Eva`, incl. rotary position embeddings) goes the same way, its rotary embedding gathered for
  the kept patches exactly as timm's own patch dropout does.
- BEiT (relative position bias over the full grid) and Swin (windowed attention): removed tokens are
  masked out of the attention instead (`beit.py`, `swin.py`).
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from auditors.engine import beit, swin
from auditors.engine.errors import EngineError


def _classes() -> dict[str, type[nn.Module]]:
    from timm.models.eva import Eva
    from timm.models.vision_transformer import VisionTransformer

    return {"vit": VisionTransformer, "eva": Eva}


def is_vit(model: nn.Module) -> bool:
    """A ViT-like with global attention whose tokens can leave the sequence (ViT family or EVA)."""
    return isinstance(model, tuple(_classes().values()))


def token_drop_family(model: nn.Module) -> str | None:
    """The family name token dropping would use for `model` (None: not a family it covers)."""
    if is_vit(model) or beit.is_beit(model):
        return "vit"
    if swin.is_swin(model):
        return "swin"
    return None


def check_token_drop(model: nn.Module) -> None:
    """Refuse models that are neither a global-attention ViT-like nor a Swin built from known layers."""
    if swin.is_swin(model):
        swin.check(model)
        return
    if beit.is_beit(model):
        beit.check(model)
        return
    if not is_vit(model):
        raise EngineError(
            "token_drop needs a timm VisionTransformer (ViT, DeiT, CLIP ViT, ...), Eva, Beit or "
            f"SwinTransformer; {type(model).__name__} is not eligible. Use a pixel fill instead."
        )
    if getattr(model, "dynamic_img_size", False):
        raise EngineError("token_drop does not support ViTs built with dynamic_img_size=True")
    if isinstance(model, _classes()["eva"]) and getattr(model.rope, "feat_shape", True) is None:
        raise EngineError("token_drop needs an EVA whose rotary embedding has a fixed grid")


def vit_patch_size(model: nn.Module) -> int:
    ps: Any = model.patch_embed.patch_size  # type: ignore[union-attr]
    ps_t = (ps, ps) if isinstance(ps, int) else tuple(ps)
    if ps_t[0] != ps_t[1]:
        raise EngineError(f"token_drop needs square patches; model has {ps_t}")
    return int(ps_t[0])


def token_keep(keep_pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """A token is kept only if none of its pixels was removed: [B,H,W] bool -> [B,N] bool."""
    k = keep_pixels.to(torch.float32).unsqueeze(1)
    return (-F.max_pool2d(-k, patch, patch)).flatten(1) > 0.5


def embed(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Patch tokens with position embeddings, prefix tokens first: [B, prefix + N, D], and the
    rotary embedding of the patch grid for an EVA that has one (else None)."""
    m: Any = model
    tokens = m.patch_embed(x)
    rope = None
    if isinstance(model, _classes()["eva"]):
        tokens, rope = m._pos_embed(tokens)  # eval mode: EVA's patch dropout keeps every token
    else:
        tokens = m.patch_drop(m._pos_embed(tokens))
    return m.norm_pre(tokens), rope


def head(model: nn.Module, tokens: torch.Tensor, rope: torch.Tensor | None = None) -> torch.Tensor:
    m: Any = model
    if rope is None:
        tokens = m.blocks(tokens)
    else:
        mixed = bool(getattr(model, "rope_mixed", False))
        for i, blk in enumerate(m.blocks):
            tokens = blk(tokens, rope=rope[i] if mixed else rope)
    return cast(torch.Tensor, m.forward_head(m.norm(tokens)))


def _kept_rope(model: nn.Module, seq: torch.Tensor, rope: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """The rotary embedding of the kept patches only, as timm's own patch dropout selects it."""
    from timm.layers.pos_embed_sincos import apply_keep_indices_nlc

    kept = apply_keep_indices_nlc(seq, rope, order)
    return kept.transpose(0, 1) if getattr(model, "rope_mixed", False) else kept.unsqueeze(1)


def token_drop_logits(model: nn.Module, x_norm: torch.Tensor, keep_pixels: torch.Tensor) -> torch.Tensor:
    """Logits for normalised images `x_norm` [B,3,H,W] seeing only the tokens `keep_pixels` [B,H,W] keeps."""
    if swin.is_swin(model):
        return swin.logits(model, x_norm, keep_pixels)
    if beit.is_beit(model):
        return beit.logits(model, x_norm, token_keep(keep_pixels, vit_patch_size(model)))
    return vit_logits(model, x_norm, token_keep(keep_pixels, vit_patch_size(model)))


def vit_logits(model: nn.Module, x_norm: torch.Tensor, keep_tokens: torch.Tensor) -> torch.Tensor:
    """Logits of a ViT for normalised images `x_norm` [B,3,H,W] seeing only `keep_tokens` [B,N]."""
    tokens, rope = embed(model, x_norm)
    prefix = int(model.num_prefix_tokens)  # type: ignore[arg-type]
    b, _, d = tokens.shape
    counts = keep_tokens.sum(1)
    out: torch.Tensor | None = None
    # Bucket by exact kept count; stable sort keeps token order (= spatial order) inside each image.
    for count in torch.unique(counts).tolist():
        rows = (counts == count).nonzero().squeeze(1)
        order = torch.argsort((~keep_tokens[rows]).to(torch.int8), dim=1, stable=True)[:, :count]
        patch_tok = tokens[rows, prefix:].gather(1, (order).unsqueeze(-1).expand(-1, -1, d))
        seq = torch.cat([tokens[rows, :prefix], patch_tok], dim=1)
        logits = head(model, seq, None if rope is None else _kept_rope(model, seq, rope, order))
        if out is None:
            out = logits.new_empty(b, logits.shape[1])
        out[rows] = logits
    assert out is not None
    return out
