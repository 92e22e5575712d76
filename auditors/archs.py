"""The architectures a model card may name. Torch-free, so the light CLI can validate cards.

The project's own tiny models plus the timm families the engine and audits understand; a name
outside these patterns is refused before timm is asked to build anything (docs/architecture.md, "Security").
"""

ALLOWED_ARCH_PATTERNS = (
    "occulta_*",
    "resnet*",
    "wide_resnet*",
    "vit_*",
    "deit_*",
    "deit3_*",
    "convnext_*",
    "efficientnet_*",
    "mobilenetv3_*",
    "swin_*",
)
