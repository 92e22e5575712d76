"""Files the LIME consistency audit writes, from what the shards carried (the picked inputs and LIME
coefficients, `.npz` in the partials) and the judgement: heat-map overlays, the removal and agreement
curves, and the raw coefficients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditors.audits.base import ShardMeta, Shards
from auditors.audits.context import artifact_path
from auditors.audits.lime_consistency import INFO
from auditors.audits.lime_consistency.config import LimeConfig
from auditors.audits.lime_consistency.shard import LimePartial
from auditors.audits.lime_consistency.verdict import LimeJudgement
from auditors.audits.partials import unpack_arrays
from auditors.audits.plots import line_plot, overlay_grid
from auditors.methods.lime import coefficient_map
from auditors.report import Artifact


def draw(
    meta: ShardMeta, config: LimeConfig, shards: Shards[LimePartial], judgement: LimeJudgement
) -> list[Artifact]:
    parts = [unpack_arrays(p.arrays) for p in shards.parts]
    arrays = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return write_lime_artifacts(
        meta.out_dir,
        INFO.name,
        arrays,
        shards.parts[0].runs,
        judgement.metrics,
        judgement.per_image_consistency,
        config.n_show,
        config.k_consistency,
    )


def write_lime_artifacts(
    out_dir: Path,
    audit: str,
    arrays: dict[str, np.ndarray],
    runs: list[str],
    metrics: dict[str, Any],
    per_image_consistency: list[float],
    n_show: int,
    k_consistency: int,
) -> list[Artifact]:
    """Heatmap overlays (least fill-consistent images first), removal and consistency curves, raw maps.
    `arrays` holds every picked image's inputs and LIME coefficients (`shard.artifact_arrays`)."""
    artifacts: list[Artifact] = []
    segments = torch.from_numpy(arrays["segments"].astype(np.int64))
    if n_show > 0:
        show = np.argsort(per_image_consistency, kind="stable")[:n_show].tolist()
        maps = {
            s: coefficient_map(torch.from_numpy(arrays[f"coef_{i}"]).float(), segments)
            for i, s in enumerate(runs)
        }
        images = torch.from_numpy(arrays["images"]).float() / 255.0
        path, rel = artifact_path(out_dir, audit, "heatmaps.png")
        overlay_grid(
            path,
            [images[i] for i in show],
            [[maps[s][i] for s in runs] for i in show],
            row_titles=[f"#{i} J={per_image_consistency[i]:.2f}" for i in show],
            col_titles=runs,
        )
        artifacts.append(
            Artifact(
                name="heatmaps",
                path=rel,
                description=(
                    f"LIME coefficients per strategy for the {len(show)} images whose top-{k_consistency} "
                    "features agree least across fill colours (J = mean pairwise Jaccard)"
                ),
            )
        )
    rem = metrics["removal"]
    series = {"own LIME": rem["own"], "random order": rem["random"]}
    if "reference" in rem:
        series["reference model's LIME"] = rem["reference"]
    path, rel = artifact_path(out_dir, audit, "removal_curve.png")
    line_plot(
        path,
        rem["k"],
        series,
        title=f"Top-k removal under {metrics['primary_strategy']} (lower = more informative)",
        xlabel="features removed (k)",
        ylabel="unchanged predictions",
        ylim=(0, 1.02),
    )
    artifacts.append(
        Artifact(name="removal_curve", path=rel, description="unchanged-prediction fraction vs k")
    )
    fc, ss = metrics["fill_consistency"], metrics["seed_stability"]
    path, rel = artifact_path(out_dir, audit, "consistency_curve.png")
    line_plot(
        path,
        fc["K"],
        {
            "across fill colours": fc["jaccard"],
            "across seeds": ss["jaccard"],
            "random rankings": fc["random"],
        },
        title="Top-K agreement of LIME rankings (mean pairwise Jaccard)",
        xlabel="K",
        ylabel="Jaccard",
        ylim=(0, 1.02),
    )
    artifacts.append(Artifact(name="consistency_curve", path=rel, description="Jaccard of top-K sets vs K"))
    path, rel = artifact_path(out_dir, audit, "attributions.npz")
    saved = {f"coef_{i}": arrays[f"coef_{i}"].astype(np.float16) for i in range(len(runs))}
    saved["strategies"] = np.array(runs)
    saved |= {k: v for k, v in arrays.items() if not k.startswith("coef_")}
    np.savez_compressed(path, **saved)  # type: ignore[arg-type]
    artifacts.append(
        Artifact(
            name="attributions",
            path=rel,
            media_type="application/x-npz",
            description="raw LIME coefficients (float16), coef_i for strategies[i]; feature segments; inputs",
        )
    )
    return artifacts
