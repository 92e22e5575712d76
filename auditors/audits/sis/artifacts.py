"""Files the SIS audit writes, from what the shards carried: the SIS and 5% subset of the images with
the smallest SIS, and the SIS size histogram."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from auditors.audits.base import Judgement, ShardMeta, Shards
from auditors.audits.context import artifact_path
from auditors.audits.partials import unpack_arrays
from auditors.audits.plots import histogram, overlay_grid
from auditors.audits.sis import INFO
from auditors.audits.sis.config import SISConfig
from auditors.audits.sis.shard import SISPartial
from auditors.report import Artifact


def draw(meta: ShardMeta, cfg: SISConfig, shards: Shards[SISPartial], judgement: Judgement) -> list[Artifact]:
    """Nothing when no SIS was looked for (nothing confident, or a confident fully masked input)."""
    sizes = judgement.metrics.get("sis_size")
    if sizes is None:
        return []
    pct: list[float | None] = sizes["pct"]
    return write_sis_artifacts(meta.out_dir, INFO.name, _shown(shards.parts, pct, cfg.n_show), pct)


@dataclass(frozen=True)
class Shown:
    """An image the SIS figure draws: its position in the pick, the image [3,H,W] in [0,1], and the
    flat pixel indices of its SIS and of its 5% backselect subset."""

    position: int
    image: torch.Tensor
    sis: torch.Tensor
    subset: torch.Tensor


def write_sis_artifacts(
    out_dir: Path, audit: str, shown: Sequence[Shown], pct: list[float | None]
) -> list[Artifact]:
    """SIS masks over the shown images (smallest SIS first) and the SIS size histogram."""
    artifacts: list[Artifact] = []
    if shown:
        h, w = shown[0].image.shape[-2:]

        def mask_map(idx: torch.Tensor) -> torch.Tensor:
            m = torch.full((h * w,), float("nan"))
            m[idx.long()] = 1.0
            return m.view(h, w)

        path, rel = artifact_path(out_dir, audit, "sis_masks.png")
        overlay_grid(
            path,
            [s.image for s in shown],
            [[mask_map(s.sis), mask_map(s.subset)] for s in shown],
            row_titles=[f"#{s.position} {pct[s.position]:.1f}%" for s in shown],
            col_titles=["SIS", "5% backselect"],
            cmap="cool",
        )
        artifacts.append(
            Artifact(
                name="sis_masks", path=rel, description="pixels of the SIS and of the 5% backselect subset"
            )
        )
    path, rel = artifact_path(out_dir, audit, "sis_size_histogram.png")
    histogram(path, [p for p in pct if p is not None], title="SIS size", xlabel="% of pixels")
    artifacts.append(
        Artifact(name="sis_size_histogram", path=rel, description="SIS size over confident images")
    )
    return artifacts


def _shown(parts: Sequence[SISPartial], pct: list[float | None], n_show: int) -> list[Shown]:
    """The `n_show` images with the smallest SIS (ties: the earlier position) over all shards; each
    shard sent its own smallest, so these are among them."""
    items = sorted((it for part in parts for it in part.show), key=lambda it: (pct[it.position], it.position))
    out = []
    for it in items[:n_show]:
        a = unpack_arrays(it.arrays)
        image = torch.from_numpy(a["image"].astype(np.float32) / 255.0)
        out.append(Shown(it.position, image, torch.from_numpy(a["sis"]), torch.from_numpy(a["subset"])))
    return out
