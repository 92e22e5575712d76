"""The SIS audit's settings: pure data (pydantic, no torch), so validating a battery never imports the
computation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from auditors.audits.info import AuditConfig
from auditors.stats import wilson_planning_n


class SISConfig(AuditConfig):
    """Confident images stratified by class, as many as the rule needs to decide (`planned_n`); exact
    BackSelect only where it is cheap (see `exact_max_pixels`)."""

    strategy: str = "mean"  # the mask value: the model's mean colour (0 after normalisation)
    tau: float = Field(default=0.99, gt=0, lt=1)
    n_images: int = Field(default=0, ge=0)  # 0 (the default): `planned_n()`, the n the rule needs
    method: Literal["auto", "exact", "gradient"] = "auto"
    # auto: exact BackSelect up to this many pixels; None = 1024 (32x32) on CUDA, 256 (16x16) on CPU,
    # where exact 32x32 costs 524,800 forward passes per image (minutes each).
    exact_max_pixels: int | None = None
    gradient_k: int = Field(default=100, ge=1)  # at most this many pixels per gradient step (and <= 1%)
    subset_fraction: float = Field(default=0.05, gt=0, le=1)
    max_small_sis_share: float = Field(default=0.5, ge=0, le=1)  # fail above this share of tiny SIS
    min_images: int = Field(default=5, ge=1)  # fewer confident images: inconclusive
    # Power: the default pick decides, with probability `planning_power`, a true share of tiny SIS
    # this far from the limit (0.25: a share of 0.75 fails, of 0.25 passes, at the default limit 0.5).
    planning_gap: float = Field(default=0.25, gt=0, le=1)
    planning_power: float = Field(default=0.8, gt=0, lt=1)
    masked_confidence_max: float = 0.5  # a fully masked input this confident makes an SIS meaningless
    retrain_on_subsets: bool = False
    retrain_images: int = Field(default=512, ge=8)  # images backselected (gradient) for retraining
    retrain_epochs: int = Field(default=15, ge=1)
    n_show: int = Field(default=6, ge=0)
    # Rows of every forward batch (None: the pick, at most 64). Shards are cut between whole batches,
    # so a smaller value lets a small pick spread over more workers, at the price of more batches.
    batch_rows: int | None = Field(default=None, ge=1, le=1024)

    @model_validator(mode="after")
    def _size_by_power(self) -> SISConfig:
        """An n_images left at 0 becomes the n at which the rule decides at the planning effect."""
        if self.n_images == 0:
            self.n_images = self.planned_n()
        return self

    def planned_n(self) -> int:
        """Confident images at which the Wilson rule reaches the right verdict with probability
        `planning_power` (exact binomial power) when the true share is `planning_gap` above or below
        `max_small_sis_share` (the larger of the two n; docs/audits.md, "Sample sizes from power"),
        and at least `min_images`."""
        t, gap, power = self.max_small_sis_share, self.planning_gap, self.planning_power
        sides = [wilson_planning_n(p, t, power=power) for p in (t + gap, t - gap) if 0.0 <= p <= 1.0]
        found = [n for n in sides if n is not None]
        return max([self.min_images, *found])
