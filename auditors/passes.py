"""The vocabulary of a cost estimate: what a run looks like (`RunShape`) and what an audit costs on it
(`Passes`). Pure data, no torch and no imports of this repository beyond it, so every audit can say
what it costs (`Audit.forward_passes`) and the estimator (`auditors.cost`) can add it up without a
cycle between them."""

from __future__ import annotations

from dataclasses import dataclass

from auditors.families import Family, native_of_family, patch_rule

PIXEL_FILL_COUNT = 6  # black, mean, grey, random_color, noise, blur (auditors.engine.fills)
NATIVE = ("token_drop", "layer_mask")


@dataclass(frozen=True)
class RunShape:
    """What an estimate needs to know about a run, without loading the model or the images."""

    n_images: int
    height: int
    width: int
    num_classes: int
    family: Family = "other"
    vit_patch: int | None = None  # the ViT's own patch size, when family == "vit"
    device: str = "cpu"
    n_regions: int = 0
    has_object_masks: bool = False
    labelled: bool = (
        False  # unknown counts as unlabelled: an audit that groups by class then pays a clean pass
    )

    @property
    def default_patch(self) -> int:
        """The same rule as `AuditContext.default_patch_size` (`families.patch_rule`)."""
        return patch_rule(self.height, self.width, self.vit_patch if self.family == "vit" else None)

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")


@dataclass
class Passes:
    forward: int = 0  # plain, or masked with a pixel fill
    native: int = 0  # masked with the model's native strategy (layer masking, token dropping)
    gradient: int = 0
    calls: int = 0
    figures: int = 0  # an overlay grid counts as 2

    def __add__(self, other: Passes) -> Passes:
        return Passes(
            self.forward + other.forward,
            self.native + other.native,
            self.gradient + other.gradient,
            self.calls + other.calls,
            self.figures + other.figures,
        )

    @property
    def total(self) -> int:
        """Images through the model, a backward pass counted as the forward it belongs to."""
        return self.forward + self.native + self.gradient


def masked_passes(strategy: str | None, images: int, calls: int = 1) -> Passes:
    """`images` masked forwards under `strategy`: native ones are costed apart from pixel fills."""
    if strategy in NATIVE:
        return Passes(native=images, calls=calls)
    return Passes(forward=images, calls=calls)


def native_strategy(shape: RunShape) -> str | None:
    """The run's native strategy, from its family (`families.native_of_family`)."""
    return native_of_family(shape.family)
