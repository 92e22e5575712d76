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

# The project's own architectures (registered with timm by the zoo): an `occulta_*` name outside this
# list is a typo, caught (with a hint) before torch is imported.
OCCULTA_ARCHS = ("occulta_resnet_tiny", "occulta_vit_tiny")
