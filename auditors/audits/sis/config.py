"""The SIS audit's config and the choices every shard and the merge must make alike."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from auditors.audits.info import AuditConfig
from auditors.methods.backselect import step_sizes

NAME = "sis"
PICK_SALT = 0x515  # this audit's own stratified draw of confident images
RANDOM_SALT = 0x5152  # the random 5% subsets, one draw per image keyed by its position in the pick
# Images per forward batch. Every batch is padded to min(CHUNK, pick size) rows, so an image's
# numbers never depend on which (or how many) other images share its batch: a shard of one image
# and a single run of the whole pick give it the same floats.
CHUNK = 64


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


def choose_method(cfg: SISConfig, n_pixels: int, is_cuda: bool) -> Literal["exact", "gradient"]:
    """Exact BackSelect where it is cheap (`exact_max_pixels`), else Batched Gradient BackSelect."""
    if cfg.method != "auto":
        return cfg.method
    limit = cfg.exact_max_pixels or (1024 if is_cuda else 256)
    return "exact" if n_pixels <= limit else "gradient"


def batch_rows(n_pick: int, rows: int | None = None) -> int:
    """The fixed number of rows of every forward batch over a pick of `n_pick` images (`rows`: the
    config's own)."""
    return max(1, min(rows or CHUNK, n_pick))


def resolution_pct(method: str, n_px: int, k: int) -> float:
    """How accurately an SIS size is known, in % of the pixels: the largest BackSelect step."""
    largest = 1 if method == "exact" else max(step_sizes(n_px, k))
    return round(100.0 * largest / n_px, 4)
