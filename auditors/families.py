"""Model families, their native missingness strategy and the patch rule: stated once, torch-free.

The engine decides a built model's family from its modules (`auditors.engine.model_family`); every
place that must answer before a model is built (the card checks, the API's validation, the launch
form, the CLI, the cost estimate) reads the architecture name through this table instead, and
`tests/unit/test_families.py` builds one model per row and checks the engine agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["vit", "swin", "resnet", "convnext", "efficientnet", "mobilenet", "regnet", "other"]
NativeStrategy = Literal["token_drop", "layer_mask"]
NATIVE_STRATEGIES: tuple[NativeStrategy, ...] = ("token_drop", "layer_mask")


@dataclass(frozen=True)
class FamilyRow:
    """The architecture-name prefixes of one family as the engine classifies it. `vit_patch` is the
    default ViT patch for names that do not say `patchNN`."""

    family: Family
    prefixes: tuple[str, ...]
    vit_patch: int | None = None


# Order matters: the first matching prefix wins (`seresnet` before `resnet` is not needed, both are
# "resnet"; `occulta_vit` has 8 px patches).
FAMILIES: tuple[FamilyRow, ...] = (
    FamilyRow("vit", ("occulta_vit",), vit_patch=8),
    FamilyRow("vit", ("vit_", "deit_", "deit3_", "eva_", "eva02_", "beit_", "beitv2_"), vit_patch=16),
    FamilyRow("swin", ("swin",)),
    FamilyRow("resnet", ("resnet", "wide_resnet", "seresnet", "occulta_resnet")),
    FamilyRow("convnext", ("convnext",)),
    FamilyRow("efficientnet", ("efficientnet", "tf_efficientnet")),
    FamilyRow("mobilenet", ("mobilenet",)),
    FamilyRow("regnet", ("regnet",)),
)


def native_of_family(family: str) -> NativeStrategy | None:
    """Token dropping for the transformer families, layer masking for the CNN ones, None for "other"."""
    if family in ("vit", "swin"):
        return "token_drop"
    if family == "other":
        return None
    return "layer_mask"


def family_of_arch(arch: str) -> tuple[Family, int | None]:
    """(family, ViT patch) of a timm / occulta architecture name, for answers made without the model."""
    name = arch.lower()
    for row in FAMILIES:
        if name.startswith(row.prefixes):
            if row.vit_patch is None:
                return row.family, None
            digits = (
                "".join(c for c in name.split("patch", 1)[1][:2] if c.isdigit()) if "patch" in name else ""
            )
            return row.family, int(digits) if digits else row.vit_patch
    return "other", None


def native_of_arch(arch: str) -> NativeStrategy | None:
    """The native strategy of an architecture name (None: pixel fills only)."""
    return native_of_family(family_of_arch(arch)[0])


def patch_rule(height: int, width: int, vit_patch: int | None = None) -> int:
    """P for a P x P feature grid (docs/audits.md, conventions): the ViT's own patch when it tiles the
    image, 16 at >= 224 px when it tiles, else side/8."""
    if vit_patch and height % vit_patch == 0 and width % vit_patch == 0:
        return vit_patch
    if min(height, width) >= 224 and height % 16 == 0 and width % 16 == 0:
        return 16
    return max(1, min(height, width) // 8)
