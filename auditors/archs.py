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

# The project's own architectures (registered with timm by the zoo): an `occulta_*` name outside this
# list is a typo, caught (with a hint) before torch is imported.
OCCULTA_ARCHS = ("occulta_resnet_tiny", "occulta_vit_tiny")

# Which native missingness an architecture supports, from its name alone (no torch): ViTs drop
# tokens, ResNets mask layers. The engine decides from the built module (`model_family`); this is for
# forms and early checks that must not build a model.
_NATIVE_BY_PREFIX = (
    (("vit_", "deit_", "deit3_", "occulta_vit"), "token_drop"),
    (("resnet", "wide_resnet", "occulta_resnet"), "layer_mask"),
)
NATIVE_STRATEGIES = ("token_drop", "layer_mask")


def native_strategy(arch: str) -> str | None:
    """`token_drop`, `layer_mask` or None (pixel fills only) for an architecture name."""
    return next((native for prefixes, native in _NATIVE_BY_PREFIX if arch.startswith(prefixes)), None)
