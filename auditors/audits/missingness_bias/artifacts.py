"""Files the missingness-bias audit writes: its curves and class shares as PNGs for people, and every
prediction as `.npz` for programs. Drawn from the shards' partials and the judgement, no model."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from auditors.audits import plots
from auditors.audits.base import Judgement, ShardMeta, Shards
from auditors.audits.context import artifact_path
from auditors.audits.missingness_bias import INFO
from auditors.audits.missingness_bias.config import MissingnessBiasConfig
from auditors.audits.missingness_bias.merge import attractor_index, predictions
from auditors.audits.missingness_bias.shard import MissingnessPartial
from auditors.report import Artifact

NAME = INFO.name


def draw(
    meta: ShardMeta, config: MissingnessBiasConfig, shards: Shards[MissingnessPartial], judgement: Judgement
) -> list[Artifact]:
    first = shards.parts[0]
    strategies, fractions = first.strategies, first.fractions
    per: dict[str, dict[str, Any]] = judgement.metrics["strategies"]
    clean_h = judgement.metrics["clean"]["entropy"]
    k = len(meta.class_names)
    artifacts = _plots(meta, per, fractions, attractor_index(fractions, config), clean_h, k, strategies)
    got = predictions(shards.parts)
    path, rel = artifact_path(meta.out_dir, NAME, "predictions.npz")
    raw = {s: got.masked[s].numpy().astype(np.int16) for s in strategies}
    arrays = {"fractions": np.array(fractions), "clean": got.clean.numpy().astype(np.int16), **raw}
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    artifacts.append(
        Artifact(name="predictions", path=rel, media_type="application/x-npz", description="raw predictions")
    )
    return artifacts


def _plots(
    meta: ShardMeta,
    per: dict[str, dict[str, Any]],
    fractions: list[float],
    half: int,
    clean_h: float,
    k: int,
    strategies: list[str],
) -> list[Any]:
    out = []
    specs = [
        (
            "entropy",
            "Class entropy of predictions",
            "entropy (nats)",
            math.log(k),
            (0, math.log(k) * 1.05),
        ),
        ("unchanged", "Predictions unchanged vs clean", "fraction unchanged", None, (0, 1.02)),
    ]
    if per[strategies[0]]["accuracy"] is not None:
        specs.append(("accuracy", "Accuracy vs labels", "accuracy", None, (0, 1.02)))
    for key, title, ylabel, hline, ylim in specs:
        path, rel = artifact_path(meta.out_dir, NAME, f"{key}.png")
        plots.line_plot(
            path,
            [f * 100 for f in fractions],
            {s: per[s][key] for s in strategies},
            title=title,
            xlabel="patches removed (%)",
            ylabel=ylabel,
            hline=hline,
            ylim=ylim,
        )
        out.append(Artifact(name=key, path=rel, description=f"{title} as patches are removed"))
    path, rel = artifact_path(meta.out_dir, NAME, "shares.png")
    plots.grouped_bars(
        path,
        meta.class_names,
        {s: [per[s]["shares_at_half"][c] for c in meta.class_names] for s in strategies},
        title=f"Share of predictions per class at {fractions[half]:.0%} removed",
        ylabel="share of predictions",
    )
    out.append(Artifact(name="shares", path=rel, description="class shares at the attractor fraction"))
    return out
