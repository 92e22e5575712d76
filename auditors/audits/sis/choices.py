"""The choices every SIS shard and the merge must make alike: the BackSelect method, the rows of every
forward batch, and how accurately an SIS size is known."""

from __future__ import annotations

from typing import Literal

from auditors.audits.sis.config import SISConfig
from auditors.methods.backselect import step_sizes

PICK_SALT = 0x515  # this audit's own stratified draw of confident images
RANDOM_SALT = 0x5152  # the random 5% subsets, one draw per image keyed by its position in the pick
# Images per forward batch. Every batch is padded to min(CHUNK, pick size) rows, so an image's
# numbers never depend on which (or how many) other images share its batch: a shard of one image
# and a single run of the whole pick give it the same floats.
CHUNK = 64


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
