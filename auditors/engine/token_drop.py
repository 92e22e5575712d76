"""Token dropping for transformers (Jain et al., ICLR 2022, §3 "Missingness in ViTs").

Removed patches are not painted over: the model never sees a fill colour.

- ViT-like models with global attention (timm `VisionTransformer` and its subclasses: ViT, DeiT and
  distilled DeiT, DeiT III, CLIP ViTs, register-token ViTs): the removed tokens are taken out of the
  sequence. Pipeline: patch-embed -> add position embeddings -> gather the kept patch tokens (prefix
  tokens, i.e. class, distillation and register tokens, always kept) -> blocks -> norm -> head.
  Sequences of different lengths are bucketed by exact length, so every forward pass is the model's
  own unmodified one on a shorter sequence (exact for any pooling: token, avg, map).
- Swin (windowed attention): removed tokens are masked out of the attention instead (`swin.py`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from auditors.engine import swin
from auditors.engine.errors import EngineError


def _vit_class() -> type[nn.Module]:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer


def is_vit(model: nn.Module) -> bool:
    return isinstance(model, _vit_class())


def token_drop_family(model: nn.Module) -> str | None:
    """The family name token dropping would use for `model` (None: not a family it covers)."""
    if is_vit(model):
        return "vit"
    if swin.is_swin(model):
        return "swin"
    return None


def is_token_drop_model(model: nn.Module) -> bool:
    return token_drop_family(model) is not None


def check_token_drop(model: nn.Module) -> None:
    """Refuse models that are neither a global-attention ViT nor a Swin built from known layers."""
    if swin.is_swin(model):
        swin.check(model)
        return
    if not is_vit(model):
        raise EngineError(
            "token_drop needs a timm VisionTransformer (ViT, DeiT, CLIP ViT, ...) or SwinTransformer; "
            f"{type(model).__name__} is not eligible. Use a pixel fill instead."
        )
    if getattr(model, "dynamic_img_size", False):
        raise EngineError("token_drop does not support ViTs built with dynamic_img_size=True")


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


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Patch tokens with position embeddings, prefix tokens first: [B, prefix + N, D]."""
    tokens = model.patch_embed(x)  # type: ignore[operator]
    tokens = model._pos_embed(tokens)  # type: ignore[operator]
    tokens = model.patch_drop(tokens)  # type: ignore[operator]
    return model.norm_pre(tokens)  # type: ignore[operator]


def head(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    tokens = model.blocks(tokens)  # type: ignore[operator]
    tokens = model.norm(tokens)  # type: ignore[operator]
    return model.forward_head(tokens)  # type: ignore[operator]


def token_drop_logits(model: nn.Module, x_norm: torch.Tensor, keep_pixels: torch.Tensor) -> torch.Tensor:
    """Logits for normalised images `x_norm` [B,3,H,W] seeing only the tokens `keep_pixels` [B,H,W] keeps."""
    if swin.is_swin(model):
        return swin.logits(model, x_norm, keep_pixels)
    return vit_logits(model, x_norm, token_keep(keep_pixels, vit_patch_size(model)))


def vit_logits(model: nn.Module, x_norm: torch.Tensor, keep_tokens: torch.Tensor) -> torch.Tensor:
    """Logits of a ViT for normalised images `x_norm` [B,3,H,W] seeing only `keep_tokens` [B,N]."""
    tokens = embed(model, x_norm)
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
        logits = head(model, seq)
        if out is None:
            out = logits.new_empty(b, logits.shape[1])
        out[rows] = logits
    assert out is not None
    return out
