"""Missingness bias (Jain et al., ICLR 2022, §3; layer-masking paper, Balasubramanian & Feizi 2023, §4).

Remove a random set of patches from every image at fractions d = 0, 0.1, ..., 0.9 with each strategy
(the same random sets for every strategy) and watch the predictions: a biased model does not merely
lose accuracy, it drifts toward a few *attractor* classes that it associates with the fill itself
(ResNet-50 + black fill at 50%: entropy 2.4 nats vs 6.87 clean, "maze" takes 35% of predictions).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field

from auditors.audits import plots
from auditors.audits.base import Audit, LegacyPartial, ShardMeta
from auditors.audits.context import AuditContext, artifact_path
from auditors.audits.info import AuditConfig
from auditors.audits.missingness_bias.rules import Rules, StrategyJudgement, judge_strategy, share_limits
from auditors.audits.ranges import check_tiling, even_ranges
from auditors.engine import applicable_strategies, masked_logits, parse_strategy, plain_logits
from auditors.methods.class_entropy import class_entropy
from auditors.methods.per_image_random import per_image_uniform
from auditors.methods.removal import rank_strategies, recommend
from auditors.passes import PIXEL_FILL_COUNT, Passes, RunShape, masked_passes, native_strategy
from auditors.report import Artifact, AuditResult, Finding
from auditors.sampling import counts_per_class
from auditors.stats import Estimate

NAME = "missingness_bias"


class MissingnessBiasConfig(AuditConfig):
    strategies: list[str] | None = Field(default=None, description="None: every strategy that applies")
    fractions: list[float] = Field(default_factory=lambda: [round(0.1 * i, 1) for i in range(10)])
    patch_size: int | None = Field(default=None, description="None: the model's patch, or side/8")
    attractor_fraction: float = 0.5
    # The verdict's rules scale with the number of classes K (rules.py): no fixed number of nats.
    entropy_drop_share_max: float = Field(
        default=0.2, gt=0, le=1, description="fail when (H(clean) - H(d)) / ln K is surely above this"
    )
    class_share_max: float = Field(default=0.05, description="a class may always take this share")
    class_share_ratio: float = Field(default=10.0, description="... or this many times its clean share")
    class_share_cap: float = Field(
        default=0.5, gt=0, lt=1, description="... but never more than its clean share + this x the rest"
    )
    min_images: int = Field(default=30, ge=1, description="fewer images: inconclusive")

    def rules(self) -> Rules:
        return Rules(
            entropy_drop_share_max=self.entropy_drop_share_max,
            class_share_floor=self.class_share_max,
            class_share_ratio=self.class_share_ratio,
            class_share_cap=self.class_share_cap,
            min_images=self.min_images,
        )


def image_keep(
    indices: range | Sequence[int], grid: tuple[int, int], fraction: float, seed: int, salt: int
) -> torch.Tensor:
    """Keep masks [N,h,w] removing round(fraction * h*w) random patches per image. Image i's mask
    depends only on (seed, salt, i), so it is the same in a single run and in any shard."""
    h, w = grid
    f = h * w
    k = round(fraction * f)
    order = torch.from_numpy(
        per_image_uniform(indices, f, seed=seed, salt=salt).argsort(axis=1, kind="stable")
    )
    keep = torch.ones(len(indices), f, dtype=torch.bool)
    keep.scatter_(1, order[:, :k], False)
    return keep.view(len(indices), h, w)


def random_keep(n_images: int, grid: tuple[int, int], fraction: float, seed: int, salt: int) -> torch.Tensor:
    """`image_keep` for images 0..n-1."""
    return image_keep(range(n_images), grid, fraction, seed, salt)


def _strategy_metrics(
    preds: list[torch.Tensor],
    clean: torch.Tensor,
    labels: torch.Tensor | None,
    fractions: list[float],
    half: int,
    k: int,
    cfg: MissingnessBiasConfig,
    class_names: list[str],
    seed: int,
) -> tuple[dict[str, Any], StrategyJudgement]:
    entropy, unchanged, accuracy, shares = [], [], [], []
    for p in preds:
        h, s = class_entropy(p, k)
        entropy.append(round(h, 4))
        shares.append(s)
        unchanged.append(round(float((p == clean).float().mean()), 4))
        if labels is not None:
            accuracy.append(round(float((p == labels).float().mean()), 4))
    clean_h, clean_share = class_entropy(clean, k)
    n = clean.numel()
    rules = cfg.rules()
    limit = share_limits(
        clean_share, floor=rules.class_share_floor, ratio=rules.class_share_ratio, cap=rules.class_share_cap
    )
    ratio = shares[half] / np.maximum(clean_share, 1.0 / n)
    order = np.argsort(-(shares[half] - clean_share))[:3]
    attractors = [
        {
            "class": class_names[c],
            "share": round(float(shares[half][c]), 4),
            "clean_share": round(float(clean_share[c]), 4),
            "ratio": round(float(ratio[c]), 2),
            "limit": round(float(limit[c]), 4),
        }
        for c in order
        if shares[half][c] > clean_share[c]
    ]
    judged = judge_strategy(clean.numpy(), preds[half].numpy(), k, rules, seed=seed)
    drop = clean_h - entropy[half]
    return {
        "entropy": entropy,
        "unchanged": unchanged,
        "accuracy": accuracy or None,
        "auc": round(float(np.mean(unchanged)), 4),
        "entropy_at_half": entropy[half],
        "entropy_drop_at_half": round(drop + 0.0, 4),
        "entropy_drop_share_at_half": round(judged.entropy_drop.value + 0.0, 4),
        "max_share_at_half": round(float(shares[half].max()), 4),
        "shares_at_half": {class_names[c]: round(float(shares[half][c]), 4) for c in range(k)},
        "attractors": attractors,
        "over_share_limit": [class_names[c] for c in np.nonzero(shares[half] > limit)[0]],
        **judged.as_dict(class_names),
    }, judged


def _deciding(judged: StrategyJudgement) -> tuple[Estimate, str]:
    """The statistic a strategy's verdict rests on: the attractor share when that test decided it,
    else the entropy drop."""
    if judged.attractor.decision == "fail" and judged.entropy_decision != "fail":
        return judged.attractor.share, "share of predictions taken by one class at half removed"
    return judged.entropy_drop, "entropy drop / ln K at half removed"


class MissingnessBias(Audit[MissingnessBiasConfig, Any]):
    legacy_flow = True
    """Does removing patches push predictions toward classes the fill itself evokes? Shardable: the
    base's `compute` runs every image as one shard and merges, the same code path as a sharded run."""

    name = NAME
    Config = MissingnessBiasConfig

    def forward_passes(self, config: MissingnessBiasConfig, shape: RunShape) -> Passes:
        """Clean predictions, then every image under every strategy at every fraction; four plots."""
        native = native_strategy(shape)
        names = config.strategies or ["black"] * PIXEL_FILL_COUNT + ([native] if native else [])
        n_frac = len({round(float(f), 4) for f in config.fractions} | {0.0})
        total = Passes(forward=shape.n_images, calls=1, figures=4)
        for name in names:
            total += masked_passes(name, shape.n_images * n_frac, n_frac)
        return total

    shardable = True

    def plan_shards(self, n_images: int, config: MissingnessBiasConfig, n_shards: int) -> list[range]:
        """Every image is independent of the others, so any contiguous split works."""
        return even_ranges(n_images, n_shards)

    def _resolve(self, ctx: AuditContext, config: MissingnessBiasConfig) -> dict[str, Any]:
        seed = ctx.seed_for(config)
        names = config.strategies or applicable_strategies(ctx.model)
        fractions = sorted({round(float(f), 4) for f in config.fractions} | {0.0})
        if any(not 0 <= f < 1 for f in fractions):
            raise ValueError("fractions must be in [0, 1)")
        p = self.patch_size(ctx, config)
        height, width = ctx.image_size
        if height % p or width % p:
            raise ValueError(f"patch_size {p} does not tile {height}x{width} images")
        strategies = [str(parse_strategy(s)) for s in names]
        return {"seed": seed, "strategies": strategies, "fractions": fractions, "patch_size": p}

    def run_shard(self, ctx: AuditContext, config: MissingnessBiasConfig, indices: range) -> LegacyPartial:
        """Clean and masked predictions for images `indices` (a contiguous range), as JSON lists."""
        t0 = time.perf_counter()
        off = ctx.image_offset  # a shard's context may hold only its own images
        if indices.step != 1 or indices.start < off or indices.stop > off + ctx.n_images:
            raise ValueError(f"shard {indices} is not a contiguous range inside {off}..{off + ctx.n_images}")
        plan = self._resolve(ctx, config)
        seed, strategies, fractions, p = (
            plan["seed"],
            plan["strategies"],
            plan["fractions"],
            plan["patch_size"],
        )
        height, width = ctx.image_size
        grid = (height // p, width // p)
        images = ctx.images[indices.start - off : indices.stop - off]
        clean = plain_logits(ctx.model, images, mean=ctx.mean, std=ctx.std).argmax(1).cpu()
        keeps = [image_keep(indices, grid, f, seed, i) for i, f in enumerate(fractions)]
        preds: dict[str, list[list[int]]] = {}
        steps = len(strategies) * len(fractions)
        for si, strat in enumerate(strategies):
            rows = []
            for fi, keep in enumerate(keeps):
                ctx.report((si * len(fractions) + fi) / steps, f"{strat}: {fractions[fi]:.0%} removed")
                logits = masked_logits(
                    ctx.model,
                    images,
                    keep,
                    strat,
                    mean=ctx.mean,
                    std=ctx.std,
                    patch_size=p,
                    seed=seed,
                    offset=indices.start,
                )
                rows.append(logits.argmax(1).cpu().tolist())
            preds[strat] = rows
        labels = ctx.labels
        return {
            **plan,
            "start": indices.start,
            "stop": indices.stop,
            "n_features": grid[0] * grid[1],
            "clean": clean.tolist(),
            "labels": None if labels is None else labels[indices.start - off : indices.stop - off].tolist(),
            "preds": preds,
            "seconds": round(time.perf_counter() - t0, 3),
        }

    def merge(
        self, meta: ShardMeta, config: MissingnessBiasConfig, partials: Sequence[LegacyPartial]
    ) -> AuditResult:
        """Concatenate the shards' predictions in image order and compute every metric on the whole."""
        ordered = check_tiling(partials, meta.n_images)
        first = ordered[0]
        seed, strategies, fractions, p = (
            first["seed"],
            first["strategies"],
            first["fractions"],
            first["patch_size"],
        )
        for part in ordered[1:]:
            if (part["seed"], part["strategies"], part["fractions"], part["patch_size"]) != (
                seed,
                strategies,
                fractions,
                p,
            ):
                raise ValueError("shards were run with different settings; rerun them with one config")
        half = int(np.argmin([abs(f - config.attractor_fraction) for f in fractions]))
        k = len(meta.class_names)
        clean = torch.tensor([c for part in ordered for c in part["clean"]], dtype=torch.long)
        has_labels = all(part["labels"] is not None for part in ordered)
        labels = (
            torch.tensor([y for part in ordered for y in part["labels"]], dtype=torch.long)
            if has_labels
            else None
        )
        per: dict[str, dict[str, Any]] = {}
        judged: dict[str, StrategyJudgement] = {}
        raw: dict[str, np.ndarray] = {}
        for strat in strategies:
            stacked = torch.tensor(
                [[v for part in ordered for v in part["preds"][strat][fi]] for fi in range(len(fractions))],
                dtype=torch.long,
            )
            preds = list(stacked)
            raw[strat] = stacked.numpy().astype(np.int16)
            per[strat], judged[strat] = _strategy_metrics(
                preds, clean, labels, fractions, half, k, config, meta.class_names, seed
            )
        grid_features = first["n_features"]
        n_images = int(clean.numel())
        seconds = float(sum(part.get("seconds", 0.0) for part in ordered))
        clean_h = class_entropy(clean, k)[0]
        failing = [s for s in strategies if per[s]["verdict"] == "fail"]
        undecided = [s for s in strategies if per[s]["verdict"] == "inconclusive"]
        changes = {s: judged[s].change for s in strategies}
        recommended = recommend(changes, failing)
        best = recommended or rank_strategies(changes)[0]
        worst = max(strategies, key=lambda s: (per[s]["verdict"] == "fail", judged[s].entropy_drop.value))
        groups = labels if labels is not None else clean
        metrics: dict[str, Any] = {
            "patch_size": p,
            "n_features": grid_features,
            "n_images": n_images,
            "fractions": fractions,
            "attractor_fraction": fractions[half],
            "clean": {
                "entropy": round(clean_h, 4),
                "max_entropy": round(math.log(k), 4),
                "accuracy": None if labels is None else round(float((clean == labels).float().mean()), 4),
            },
            "n_per_class": dict(
                zip(meta.class_names, counts_per_class(groups.numpy(), np.arange(n_images), k), strict=True)
            ),
            "strategies": per,
            "recommended": recommended,
            "best": {
                "strategy": best,
                **{m: per[best][m] for m in ("auc", "entropy_drop_at_half", "entropy_drop_share_at_half")},
            },
            "worst": {
                "strategy": worst,
                **{
                    m: per[worst][m]
                    for m in (
                        "auc",
                        "entropy_drop_at_half",
                        "entropy_drop_share_at_half",
                        "max_share_at_half",
                    )
                },
            },
            "failing_strategies": failing,
            "inconclusive_strategies": undecided,
        }
        findings = [
            Finding(
                kind="attractor_class",
                summary=(
                    f"Removing {fractions[half]:.0%} of the patches with {s} sends {a['share']:.0%} of "
                    f"predictions to '{a['class']}' (clean: {a['clean_share']:.0%})."
                ),
                class_name=a["class"],
                evidence={"strategy": s, **a},
            )
            for s in failing
            for a in per[s]["attractors"][:1]
        ]
        artifacts = self._plots(meta, per, fractions, half, clean_h, k, strategies)
        path, rel = artifact_path(meta.out_dir, NAME, "predictions.npz")
        arrays = {"fractions": np.array(fractions), "clean": clean.numpy().astype(np.int16), **raw}
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
        artifacts.append(
            Artifact(
                name="predictions", path=rel, media_type="application/x-npz", description="raw predictions"
            )
        )
        estimate, statistic = _deciding(judged[worst])
        return AuditResult(
            name=NAME,
            verdict="fail" if failing else "inconclusive" if undecided else "pass",
            summary=self._summary(per, failing, best, worst, fractions[half], clean_h),
            role="explanation",
            n=n_images,
            estimate={**estimate.as_dict(), "statistic": f"{worst}: {statistic}"},
            meaning=self._meaning(failing, undecided, recommended, n_images, config.min_images),
            metrics=metrics,
            findings=findings,
            artifacts=artifacts,
            config={**config.model_dump(), "seed": seed, "strategies": strategies, "patch_size": p},
            seconds=round(seconds, 3),
        )

    @staticmethod
    def _summary(
        per: dict[str, dict[str, Any]], failing: list[str], best: str, worst: str, d: float, clean_h: float
    ) -> str:
        b = per[best]
        keeps = b["unchanged"][len(b["unchanged"]) // 2]
        use = f"{best} keeps {keeps:.0%} of predictions at {d:.0%} removed (AUC {b['auc']:.2f})"
        if not failing:
            return f"No strategy collapses the class distribution at {d:.0%} removed; {use}."
        w = per[worst]
        a = w["attractors"][0] if w["attractors"] else None
        lead = f"Removing {d:.0%} of the patches with {worst}"
        lead += (
            f" sends {a['share']:.0%} of predictions to '{a['class']}'" if a else " collapses the predictions"
        )
        lead += (
            f" (class entropy {clean_h:.2f} → {w['entropy_at_half']:.2f} nats, a drop of "
            f"{max(0.0, w['entropy_drop_share_at_half']):.0%} of its maximum)"
        )
        lead += f"; biased strategies: {', '.join(failing)}"
        if best in failing:
            return lead + "; every strategy is biased."
        return lead + f"; {use}."

    @staticmethod
    def _meaning(
        failing: list[str], undecided: list[str], recommended: str | None, n: int, min_n: int
    ) -> str:
        if n < min_n:
            return f"Too few images to tell ({n} < {min_n}): audit more images."
        if failing and recommended:
            return (
                f"Explanations of this model that remove pixels with {', '.join(failing)} are unreliable; "
                f"use {recommended}."
            )
        if failing:
            return (
                f"Explanations of this model that remove pixels with {', '.join(failing)} are unreliable; no "
                "native strategy (layer_mask, token_drop) or blur passed, so none can be recommended: treat "
                "removal-based explanations of this model with caution."
            )
        if undecided:
            return f"Could not tell whether {', '.join(undecided)} bias explanations of this model; " + (
                f"{recommended} is safe to use." if recommended else "audit more images."
            )
        return "Removing pixels does not bias this model's predictions" + (
            f"; {recommended} is the recommended way to remove them." if recommended else "."
        )

    @staticmethod
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
