"""The LIME consistency audit's settings: pure data (pydantic, no torch), so validating a battery never
imports the computation."""

from __future__ import annotations

from pydantic import Field

from auditors.audits.info import AuditConfig
from auditors.methods.catalog import DEFAULT_COLORS, FeatureKind


class LimeConfig(AuditConfig):
    """Defaults keep the audit affordable on a CPU: 16 images x 1000 perturbations x (2 + fills) runs."""

    strategies: list[str] | None = None  # None: the model's native strategy if any, else black
    fills: list[str] = Field(default_factory=lambda: list(DEFAULT_COLORS), min_length=2)
    features: FeatureKind = "grid"
    patch_size: int | None = None  # None: the context's default (the ViT's patch; side/8 on small images)
    n_samples: int = Field(default=1000, ge=16)
    n_images: int = Field(default=16, ge=1)  # a class-stratified sample of the audited images
    min_images: int = Field(default=8, ge=1)  # fewer: inconclusive
    max_k: int = Field(default=49, ge=1)  # removal/consistency curves run k = 1..min(max_k, F-1)
    k_removal: int = 25  # the removal test's headline k (docs/audits.md: 25 features)
    k_consistency: int = 20  # the fill-consistency headline K (docs/audits.md: K = 20)
    removal_ratio_max: float = 0.5  # pass needs own <= ratio x random at k_removal
    consistency_min: float = 0.5  # ... and fill consistency at K >= this
    inconclusive_margin: float = 0.05  # |random - own| below this: the test cannot separate them
    n_random_orders: int = Field(default=8, ge=2)  # random permutations for the Jaccard baseline
    n_show: int = Field(default=4, ge=0)  # images in the heatmap overlays
