"""The merge of the missingness-bias audit: the shards' predictions, in image order, into every metric,
the per-strategy verdicts (`rules`), the recommendation and the sentences (`sentences`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from auditors.audits.base import Judgement, ShardMeta, Shards
from auditors.audits.missingness_bias.config import MissingnessBiasConfig
from auditors.audits.missingness_bias.rules import Rules, StrategyJudgement, judge_strategy, share_limits
from auditors.audits.missingness_bias.sentences import meaning, summary
from auditors.audits.missingness_bias.shard import MissingnessPartial
from auditors.methods.class_entropy import class_entropy
from auditors.methods.removal import rank_strategies, recommend
from auditors.report import Finding
from auditors.sampling import counts_per_class
from auditors.stats import Estimate


def rules_of(cfg: MissingnessBiasConfig) -> Rules:
    return Rules(
        entropy_drop_share_max=cfg.entropy_drop_share_max,
        class_share_floor=cfg.class_share_max,
        class_share_ratio=cfg.class_share_ratio,
        class_share_cap=cfg.class_share_cap,
        min_images=cfg.min_images,
    )


@dataclass(frozen=True)
class Predictions:
    """Every image's clean prediction (and label), and its prediction per strategy and fraction."""

    clean: torch.Tensor  # [N]
    labels: torch.Tensor | None  # [N]
    masked: dict[str, torch.Tensor]  # strategy -> [fractions, N]


def predictions(parts: list[MissingnessPartial]) -> Predictions:
    """The shards' predictions concatenated in image order."""
    first = parts[0]
    clean = torch.tensor([c for part in parts for c in part.clean], dtype=torch.long)
    has_labels = all(part.labels is not None for part in parts)
    labels = (
        torch.tensor([y for part in parts for y in part.labels or []], dtype=torch.long)
        if has_labels
        else None
    )
    masked = {
        strat: torch.tensor(
            [[v for part in parts for v in part.preds[strat][fi]] for fi in range(len(first.fractions))],
            dtype=torch.long,
        )
        for strat in first.strategies
    }
    return Predictions(clean, labels, masked)


def attractor_index(fractions: list[float], config: MissingnessBiasConfig) -> int:
    return int(np.argmin([abs(f - config.attractor_fraction) for f in fractions]))


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
    rules = rules_of(cfg)
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


def judge(meta: ShardMeta, config: MissingnessBiasConfig, shards: Shards[MissingnessPartial]) -> Judgement:
    """Every metric on the whole sample, the verdict (fail when a strategy fails, inconclusive when one
    is undecided) and the recommended strategy."""
    first = shards.parts[0]
    strategies, fractions, p = first.strategies, first.fractions, first.patch_size
    half = attractor_index(fractions, config)
    k = len(meta.class_names)
    got = predictions(shards.parts)
    clean, labels = got.clean, got.labels
    per: dict[str, dict[str, Any]] = {}
    judged: dict[str, StrategyJudgement] = {}
    for strat in strategies:
        per[strat], judged[strat] = _strategy_metrics(
            list(got.masked[strat]), clean, labels, fractions, half, k, config, meta.class_names, shards.seed
        )
    n_images = int(clean.numel())
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
        "n_features": first.n_features,
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
                for m in ("auc", "entropy_drop_at_half", "entropy_drop_share_at_half", "max_share_at_half")
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
    estimate, statistic = _deciding(judged[worst])
    return Judgement(
        verdict="fail" if failing else "inconclusive" if undecided else "pass",
        summary=summary(per, failing, best, worst, fractions[half], clean_h),
        n=n_images,
        estimate={**estimate.as_dict(), "statistic": f"{worst}: {statistic}"},
        meaning=meaning({s: per[s]["verdict"] for s in strategies}, recommended, n_images, config.min_images),
        metrics=metrics,
        findings=findings,
        resolved={"strategies": strategies, "patch_size": p},
    )
