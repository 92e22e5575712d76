"""The architectures a model card may name. Torch-free, so the light CLI can validate cards.

The project's own tiny models plus the timm families the engine and audits understand (each has a
native missingness strategy: see auditors/engine); a name outside these patterns is refused before
timm is asked to build anything (docs/architecture.md, "Security").
"""

from auditors.families import FAMILIES

# The project's own names, then every family prefix the engine understands (`auditors.families`).
ALLOWED_ARCH_PATTERNS = (
    "occulta_*",
    *(f"{p}*" for row in FAMILIES for p in row.prefixes if not p.startswith("occulta_")),
)

# The project's own architectures (registered with timm by the zoo): an `occulta_*` name outside this
# list is a typo, caught (with a hint) before torch is imported.
OCCULTA_ARCHS = ("occulta_resnet_tiny", "occulta_vit_tiny")
