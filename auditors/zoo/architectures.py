"""The project's own tiny architectures, registered with timm so cards name them like any timm model.

They are ordinary timm classes (`ResNet`, `VisionTransformer`) at small sizes, so the engine's native
strategies (layer_mask, token_drop) apply to them exactly as to resnet50 / vit_small: tests and the
demo exercise the same code paths as real checkpoints, on 2 CPU cores, in seconds.
"""

from __future__ import annotations

from typing import Any

from timm.models import register_model
from timm.models.resnet import BasicBlock, ResNet
from timm.models.vision_transformer import VisionTransformer


def _kw(kwargs: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    kwargs.pop("cache_dir", None)
    return {**defaults, **kwargs}


@register_model
def occulta_resnet_tiny(pretrained: bool = False, **kwargs: Any) -> ResNet:
    # (timm annotates `block` as an instance where it takes the class, hence the ignore below.)
    """A 4-stage BasicBlock ResNet with narrow channels for 32-64 px images (~0.33M params)."""
    return ResNet(
        block=BasicBlock,  # type: ignore[arg-type]
        layers=(1, 1, 1, 1),
        **_kw(kwargs, channels=(16, 32, 64, 128), stem_width=16),
    )


@register_model
def occulta_vit_tiny(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """A 4-block ViT on 8 px patches of a 32 px image (16 tokens + class token): trains in seconds."""
    return VisionTransformer(
        **_kw(kwargs, img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=4, mlp_ratio=2.0)
    )
