"""The SIS audit's settings: pure data (pydantic, no torch), so validating a battery never imports the
computation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from auditors.audits.info import AuditConfig


class SISConfig(AuditConfig):
    """Defaults fit a CPU: 8 confident images, stratified by class; exact BackSelect only where it is
    cheap (see `exact_max_pixels`)."""

    strategy: str = "mean"  # the mask value: the model's mean colour (0 after normalisation)
    tau: float = Field(default=0.99, gt=0, lt=1)
    n_images: int = Field(default=8, ge=1)
    method: Literal["auto", "exact", "gradient"] = "auto"
    # auto: exact BackSelect up to this many pixels; None = 1024 (32x32) on CUDA, 256 (16x16) on CPU,
    # where exact 32x32 costs 524,800 forward passes per image (minutes each).
    exact_max_pixels: int | None = None
    gradient_k: int = Field(default=100, ge=1)  # at most this many pixels per gradient step (and <= 1%)
    subset_fraction: float = Field(default=0.05, gt=0, le=1)
    max_small_sis_share: float = Field(default=0.5, ge=0, le=1)  # fail above this share of tiny SIS
    min_images: int = Field(default=5, ge=1)  # fewer confident images: inconclusive
    masked_confidence_max: float = 0.5  # a fully masked input this confident makes an SIS meaningless
    retrain_on_subsets: bool = False
    retrain_images: int = Field(default=512, ge=8)  # images backselected (gradient) for retraining
    retrain_epochs: int = Field(default=15, ge=1)
    n_show: int = Field(default=6, ge=0)
    # Rows of every forward batch (None: the pick, at most 64). Shards are cut between whole batches,
    # so a smaller value lets a small pick spread over more workers, at the price of more batches.
    batch_rows: int | None = Field(default=None, ge=1, le=1024)
