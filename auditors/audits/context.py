"""What an auditor is given: the model, the images, and the hooks to report progress and stop.

Audits share one verb, `Audit.run(ctx, config) -> AuditResult` (see `base.py`), and one context so the
CLI, the Celery worker and a notebook call them the same way.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from auditors.engine import Family, model_device, model_family
from auditors.errors import AuditCancelled
from auditors.regions import Region


@dataclass
class ResolvedRegion:
    """A `Region` as an audit uses it: `box` [x, y, w, h] in pixels of this input, the artifact as a
    [3,h,w] float image in [0,1] resized to the box, and its alpha mask (None when fully opaque)."""

    name: str
    box: tuple[int, int, int, int]
    artifact: torch.Tensor | None = None
    artifact_alpha: torch.Tensor | None = None
    image_index: int | None = None  # None: applies to every image

    @classmethod
    def of(cls, region: Region, height: int, width: int) -> ResolvedRegion:
        """Scale the box to this input (raises ValueError when it does not fit), decode the artifact."""
        box = region.pixel_box(height, width)
        rgb = alpha = None
        if region.artifact is not None:
            import numpy as np
            from PIL import Image

            with Image.open(io.BytesIO(region.artifact)) as im:
                rgba = im.convert("RGBA").resize((box[2], box[3]), Image.Resampling.NEAREST)
            arr = torch.from_numpy(np.asarray(rgba, dtype=np.float32) / 255.0)
            rgb, opaque = arr[..., :3].permute(2, 0, 1).contiguous(), arr[..., 3] > 0.5
            alpha = None if bool(opaque.all()) else opaque
        return cls(region.name, box, rgb, alpha, region.image_index)


@dataclass
class AuditContext:
    model: nn.Module
    images: torch.Tensor  # [N,3,H,W] float in [0,1], preprocessed to the model's input size
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: list[str]
    out_dir: Path  # where artifacts are written; Artifact.path is relative to it
    labels: torch.Tensor | None = None  # [N] int64, or None when the dataset has no labels
    seed: int = 0
    object_masks: torch.Tensor | None = None  # [N,H,W] bool, when the dataset provides them
    regions: list[ResolvedRegion] = field(default_factory=list)
    reference_model: nn.Module | None = None
    # A shard's context holds only images [image_offset, image_offset + n_images) of the dataset.
    image_offset: int = 0
    progress: Callable[[float, str], None] | None = None
    cancelled: Callable[[], bool] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    @property
    def family(self) -> Family:
        return model_family(self.model)

    @property
    def n_images(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def seed_for(self, config: Any) -> int:
        """An audit's own `seed` when its config sets one, else the run's seed."""
        own = getattr(config, "seed", None)
        return self.seed if own is None else int(own)

    def report(self, fraction: float, message: str = "") -> None:
        """Progress in [0,1] within the current audit; also the place cancellation is noticed."""
        if self.progress is not None:
            self.progress(min(max(fraction, 0.0), 1.0), message)
        self.check_cancelled()

    def check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise AuditCancelled()

    def artifact_path(self, audit: str, name: str) -> tuple[Path, str]:
        """Absolute path to write, and the relative path to record in the report."""
        return artifact_path(self.out_dir, audit, name)

    def default_patch_size(self) -> int:
        """P for a P x P grid: the ViT's own patch, 16 at >= 224 px, else side/8 (docs/audits.md, conventions)."""
        h, w = self.image_size
        if self.family == "vit":
            from auditors.engine import vit_patch_size

            p = vit_patch_size(self.model)
            if h % p == 0 and w % p == 0:
                return p
        if min(h, w) >= 224 and h % 16 == 0 and w % 16 == 0:
            return 16
        return max(1, min(h, w) // 8)


def artifact_rel(audit: str, name: str) -> str:
    """The path an artifact is recorded under in the report, relative to the report's directory."""
    return f"{audit}/{name}"


def artifact_path(out_dir: Path, audit: str, name: str) -> tuple[Path, str]:
    """Absolute path to write under `out_dir`, and the relative path to record in the report (also
    for a merge, which has no context)."""
    rel = artifact_rel(audit, name)
    path = out_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, rel
