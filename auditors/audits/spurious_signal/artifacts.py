"""Files the spurious-signal audit writes: overlays for people, raw maps for programs (docs/architecture.md, "Data flow of one audit").

Written by the merge, which has no model and no images: from what the shards carried (`shard`): the
drawn images (uint8) with their maps (float16), and per predicted class the integer sums behind the
hotspot maps and the mean images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditors.audits import plots
from auditors.audits.context import artifact_path
from auditors.report import Artifact


@dataclass
class Drawn:
    """The first images of the sample, as the overlays draw them, with their maps per method."""

    images: torch.Tensor  # [d,3,H,W] in [0,1] (from uint8)
    maps: dict[str, torch.Tensor]  # method -> [d,H,W]
    pred: torch.Tensor
    labels: torch.Tensor | None
    confidence: torch.Tensor


@dataclass
class Hotspots:
    """Per predicted class present: the mean normalised map of the first method and the mean image."""

    classes: list[int]
    maps: torch.Tensor  # [m,H,W]
    mean_images: torch.Tensor  # [m,3,H,W]


def write_artifacts(
    out_dir: Path,
    audit: str,
    class_names: list[str],
    drawn: Drawn,
    hotspots: Hotspots | None,
    region_boxes: list[list[int] | None],
    candidates: list[dict[str, Any]],
) -> list[Artifact]:
    """Saliency overlays for the drawn images, per-class hotspot maps, and the drawn images' raw maps
    (.npz f16) with their inputs, true classes and confidences, so a gallery tile says what the model saw.
    `region_boxes`: each hinted region's box, None for a per-image one."""
    out: list[Artifact] = []
    shared_box = next((b for b in region_boxes if b is not None), None)
    if shared_box is None and candidates:
        confirmed = [c for c in candidates if c.get("confirmed")]
        shared_box = (confirmed or candidates)[0]["box"]
    n = int(drawn.images.shape[0])
    if drawn.maps and n:
        methods = list(drawn.maps)
        path, rel = artifact_path(out_dir, audit, "saliency_overlays.png")
        plots.overlay_grid(
            path,
            [drawn.images[i] for i in range(n)],
            [[drawn.maps[m][i] for m in methods] for i in range(n)],
            row_titles=[f"pred {class_names[int(drawn.pred[i])]}" for i in range(n)],
            col_titles=methods,
            boxes=[shared_box] * n,
        )
        out.append(
            Artifact(name="saliency_overlays", path=rel, description="saliency per method on a sample")
        )
        path, rel = artifact_path(out_dir, audit, "saliency_maps.npz")
        arrays = {m: v.numpy().astype(np.float16) for m, v in drawn.maps.items()}
        arrays.update(
            plots.map_inputs(drawn.images, drawn.pred, labels=drawn.labels, confidence=drawn.confidence)
        )
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
        out.append(
            Artifact(
                name="saliency_maps",
                path=rel,
                media_type="application/x-npz",
                description="raw maps (float16) of the overlaid images, with those images and their classes",
            )
        )
    if hotspots is not None:
        present = [i for i in range(len(hotspots.classes)) if float(hotspots.maps[i].sum()) > 0]
        if present:
            path, rel = artifact_path(out_dir, audit, "class_hotspots.png")
            plots.overlay_grid(
                path,
                [hotspots.mean_images[i] for i in present],
                [[hotspots.maps[i]] for i in present],
                row_titles=[class_names[hotspots.classes[i]] for i in present],
                col_titles=["hotspot"],
                boxes=[_class_box(class_names[hotspots.classes[i]], candidates) for i in present],
            )
            out.append(
                Artifact(
                    name="class_hotspots",
                    path=rel,
                    description="per predicted class: mean normalised saliency, top candidate boxed",
                )
            )
    return out


def _class_box(name: str, candidates: list[dict[str, Any]]) -> list[float] | None:
    for cand in candidates:
        if cand.get("class") == name:
            return [float(v) for v in cand["box"]]
    return None
