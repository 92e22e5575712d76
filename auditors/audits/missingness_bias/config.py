"""The missingness-bias audit's settings: pure data (pydantic, no torch), so validating a battery never
imports the computation."""

from __future__ import annotations

from pydantic import Field

from auditors.audits.info import AuditConfig


class MissingnessBiasConfig(AuditConfig):
    strategies: list[str] | None = Field(default=None, description="None: every strategy that applies")
    fractions: list[float] = Field(default_factory=lambda: [round(0.1 * i, 1) for i in range(10)])
    patch_size: int | None = Field(default=None, description="None: the model's patch, or side/8")
    attractor_fraction: float = 0.5
    # The verdict's rules scale with the number of classes K (rules.py): no fixed number of nats.
    entropy_drop_share_max: float = Field(
        default=0.2, gt=0, le=1, description="fail when (H(clean) - H(d)) / ln K is surely above this"
    )
    class_share_max: float = Field(default=0.05, description="a class may always take this share")
    class_share_ratio: float = Field(default=10.0, description="... or this many times its clean share")
    class_share_cap: float = Field(
        default=0.5, gt=0, lt=1, description="... but never more than its clean share + this x the rest"
    )
    min_images: int = Field(default=30, ge=1, description="fewer images: inconclusive")
