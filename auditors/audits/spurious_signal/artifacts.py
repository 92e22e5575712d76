"""Files the spurious-signal audit writes: overlays for people, raw maps for programs (docs/architecture.md, "Data flow of one audit")."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditors.audits import plots
from auditors.audits.context import AuditContext, ResolvedRegion
from auditors.report import Artifact


def write_artifacts(
    ctx: AuditContext,
    audit: str,
    images: torch.Tensor,
    pred: torch.Tensor,
    maps: dict[str, torch.Tensor],
    hotspots: torch.Tensor | None,
    regions: list[ResolvedRegion],
    candidates: list[dict[str, Any]],
    n_overlays: int,
    *,
    labels: torch.Tensor | None = None,
    confidence: torch.Tensor | None = None,
) -> list[Artifact]:
    """Saliency overlays for the first `n_overlays` images, per-class hotspot maps, raw maps (.npz f16)
    with their inputs, true classes and confidences, so a gallery tile says what the model saw."""
    out: list[Artifact] = []
    shared_box = next((list(r.box) for r in regions if r.image_index is None), None)
    if shared_box is None and candidates:
        confirmed = [c for c in candidates if c.get("confirmed")]
        shared_box = (confirmed or candidates)[0]["box"]
    n = min(n_overlays, images.shape[0])
    if maps and n:
        methods = list(maps)
        path, rel = ctx.artifact_path(audit, "saliency_overlays.png")
        plots.overlay_grid(
            path,
            [images[i] for i in range(n)],
            [[maps[m][i] for m in methods] for i in range(n)],
            row_titles=[f"pred {ctx.class_names[int(pred[i])]}" for i in range(n)],
            col_titles=methods,
            boxes=[shared_box] * n,
        )
        out.append(
            Artifact(name="saliency_overlays", path=rel, description="saliency per method on a sample")
        )
        path, rel = ctx.artifact_path(audit, "saliency_maps.npz")
        arrays = {m: v.detach().cpu().numpy().astype(np.float16) for m, v in maps.items()}
        count = min(v.shape[0] for v in arrays.values())
        arrays.update(
            plots.map_inputs(
                images[:count],
                pred[:count],
                labels=None if labels is None else labels[:count],
                confidence=None if confidence is None else confidence[:count],
            )
        )
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
        out.append(
            Artifact(
                name="saliency_maps",
                path=rel,
                media_type="application/x-npz",
                description="raw maps (float16) with their input images and predicted classes",
            )
        )
    if hotspots is not None:
        present = [c for c in range(hotspots.shape[0]) if float(hotspots[c].sum()) > 0]
        if present:
            mean_img = [images[pred == c].mean(0) for c in present]
            path, rel = ctx.artifact_path(audit, "class_hotspots.png")
            plots.overlay_grid(
                path,
                mean_img,
                [[hotspots[c]] for c in present],
                row_titles=[ctx.class_names[c] for c in present],
                col_titles=["hotspot"],
                boxes=[_class_box(ctx.class_names[c], candidates) for c in present],
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
