"""The architectures a model card may name. Torch-free, so the light CLI can validate cards.

The project's own tiny models plus the timm families the engine and audits understand (each has a
native missingness strategy: see auditors/engine); a name outside these patterns is refused before
timm is asked to build anything (docs/architecture.md, "Security").
"""

ALLOWED_ARCH_PATTERNS = (
    "occulta_*",
    "resnet*",
    "wide_resnet*",
    "seresnet*",
    "vit_*",
    "deit_*",
    "deit3_*",
    "eva_*",
    "eva02_*",
    "beit_*",
    "beitv2_*",
    "convnext_*",
    "convnextv2_*",
    "efficientnet_*",
    "tf_efficientnet_*",
    "mobilenetv3_*",
    "regnetx_*",
    "regnety_*",
    "swin_*",
)
