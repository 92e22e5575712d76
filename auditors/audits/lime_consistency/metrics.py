"""Agreement statistics and artifacts of the LIME consistency audit (docs/audits.md, "LIME consistency").

Rankings are [B,F] feature orders (best first); every statistic is averaged over images so it lands in
the report as plain floats and lists.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditors.audits.context import artifact_path
from auditors.audits.plots import line_plot, overlay_grid
from auditors.methods.lime import coefficient_map
from auditors.methods.per_image_random import per_image_uniform
from auditors.report import Artifact

_RANDOM_ORDER_SALT = 0x0DE7


def curve_at(ks: list[int], values: list[float], k: int) -> float:
    """The curve's value at k, or at its last k when the image has fewer features than k."""
    return float(values[min(k, ks[-1]) - ks[0]])


def random_rankings(n_features: torch.Tensor, seed: int, positions: range | None = None) -> torch.Tensor:
    """A uniform random order of each image's present features, padding features last: [B,F]. Image
    i's order depends only on (seed, positions[i]), its place in the audit's pick, so a shard draws
    the same orders as a single run."""
    f_max = int(n_features.max())
    rows = positions if positions is not None else range(len(n_features))
    keys = torch.from_numpy(per_image_uniform(rows, f_max, seed=seed, salt=_RANDOM_ORDER_SALT))
    keys[torch.arange(f_max).unsqueeze(0) >= n_features.cpu().unsqueeze(1)] = 2.0
    return torch.argsort(keys, dim=1, stable=True)


def _positions(order: torch.Tensor) -> torch.Tensor:
    """Inverse permutation: pos[b, f] = rank of feature f in image b's order."""
    pos = torch.empty_like(order)
    pos.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order).contiguous())
    return pos


def topk_jaccard_curve(orders: list[torch.Tensor], ks: list[int], *, per_image: bool = False) -> list[float]:
    """Mean pairwise Jaccard of the top-K sets of several rankings, for each K in `ks`.

    With `per_image`, `ks` must hold one K and the result is one value per image (mean over pairs).
    """
    pos = torch.stack([_positions(o.cpu()) for o in orders])  # [C,B,F]
    k_t = torch.tensor(ks).view(-1, 1, 1, 1)
    member = pos.unsqueeze(0) < k_t  # [K,C,B,F]
    vals = []
    for a, b in combinations(range(len(orders)), 2):
        inter = (member[:, a] & member[:, b]).sum(-1).float()
        union = (member[:, a] | member[:, b]).sum(-1).float().clamp_min(1)
        vals.append(inter / union)  # [K,B]
    jac = torch.stack(vals).mean(0)
    if per_image:
        return [float(v) for v in jac[0]]
    return [float(v) for v in jac.mean(1)]


def spearman(a: torch.Tensor, b: torch.Tensor, n_features: torch.Tensor) -> list[float]:
    """Spearman rank correlation of two coefficient vectors per image, over its present features."""
    out = []
    for ca, cb, n in zip(a.cpu(), b.cpu(), n_features.tolist(), strict=True):
        ra = torch.argsort(torch.argsort(ca[:n])).double()
        rb = torch.argsort(torch.argsort(cb[:n])).double()
        ra, rb = ra - ra.mean(), rb - rb.mean()
        den = float(ra.norm() * rb.norm())
        out.append(float((ra * rb).sum()) / den if den > 0 else 0.0)
    return out


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
