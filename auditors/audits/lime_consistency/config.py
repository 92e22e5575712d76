"""The LIME consistency audit's settings: pure data (pydantic, no torch), so validating a battery never
imports the computation."""

from __future__ import annotations

from pydantic import Field, model_validator

from auditors.audits.info import AuditConfig
from auditors.methods.catalog import DEFAULT_COLORS, FeatureKind
from auditors.stats import ratio_planning_n, wilson_planning_n


class LimeConfig(AuditConfig):
    """As many images as the removal rule needs to decide (`planned_n`) x 1000 perturbations x
    (2 + fills) LIME runs."""

    strategies: list[str] | None = None  # None: the model's native strategy if any, else black
    fills: list[str] = Field(default_factory=lambda: list(DEFAULT_COLORS), min_length=2)
    features: FeatureKind = "grid"
    patch_size: int | None = None  # None: the context's default (the ViT's patch; side/8 on small images)
    n_samples: int = Field(default=1000, ge=16)
    n_images: int = Field(default=0, ge=0)  # a class-stratified sample; 0 (the default): `planned_n()`
    min_images: int = Field(default=8, ge=1)  # fewer: inconclusive
    max_k: int = Field(default=49, ge=1)  # removal/consistency curves run k = 1..min(max_k, F-1)
    k_removal: int = 25  # the removal test's headline k (docs/audits.md: 25 features)
    k_consistency: int = 20  # the fill-consistency headline K (docs/audits.md: K = 20)
    removal_ratio_max: float = 0.5  # pass needs own <= ratio x random at k_removal
    consistency_min: float = 0.5  # ... and fill consistency at K >= this
    inconclusive_margin: float = 0.05  # |random - own| below this: the test cannot separate them
    n_random_orders: int = Field(default=8, ge=2)  # random permutations for the Jaccard baseline
    n_show: int = Field(default=4, ge=0)  # images in the heatmap overlays
    # Power (docs/audits.md, "Sample sizes from power"): the default pick decides, with probability
    # about `planning_power`, an own/random ratio of half the limit (surely informative) or twice it
    # (no better than random at the default limit), planned at a random order that leaves this share
    # of predictions unchanged at k_removal (the ViT anchor leaves 0.91, the ResNet's black fill 0.35).
    planning_random_unchanged: float = Field(default=0.8, gt=0, le=1)
    planning_consistency_gap: float = Field(default=0.25, gt=0, le=1)
    planning_power: float = Field(default=0.8, gt=0, lt=1)

    @model_validator(mode="after")
    def _size_by_power(self) -> LimeConfig:
        """An n_images left at 0 becomes the n at which the rules decide at the planning effect."""
        if self.n_images == 0:
            self.n_images = self.planned_n()
        return self

    def planned_n(self) -> int:
        """Images at which the removal rule decides a true ratio of half or twice the limit
        (`ratio_planning_n`, the delta method) and the fill rule a mean Jaccard `planning_consistency_gap`
        from its limit (planned as a proportion: a Bernoulli spread bounds any [0, 1] variable's), with
        power `planning_power`; the largest n, and at least `min_images`."""
        t, p, power = self.removal_ratio_max, self.planning_random_unchanged, self.planning_power
        ratios = [t / 2, min(2 * t, 1.0 / p)]
        removal = [ratio_planning_n(r, t, p, power=power) for r in ratios if r != t]
        c, gap = self.consistency_min, self.planning_consistency_gap
        fills = [wilson_planning_n(x, c, power=power) for x in (c + gap, c - gap) if 0.0 <= x <= 1.0]
        return max([self.min_images, *(n for n in removal + fills if n is not None)])
