"""The merge of the LIME consistency audit: every statistic over the whole pick from the shards'
per-image outcomes, then the verdict (`verdict`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditors.audits.base import ShardMeta, Shards
from auditors.audits.lime_consistency.config import LimeConfig
from auditors.audits.lime_consistency.metrics import curve_at, random_rankings, topk_jaccard_curve
from auditors.audits.lime_consistency.shard import LimePartial
from auditors.audits.lime_consistency.verdict import LimeJudgement, verdict_of
from auditors.engine import NATIVE, parse_strategy
from auditors.sampling import counts_per_class
from auditors.stats import Estimate, mean_estimate, ratio_of_means


def judge(meta: ShardMeta, config: LimeConfig, shards: Shards[LimePartial]) -> LimeJudgement:
    """Every statistic over the whole pick, from the shards' per-image outcomes."""
    cfg = config
    ordered = shards.parts
    first = ordered[0]
    seed, patch, strategies, runs = shards.seed, first.patch_size, first.strategies, first.runs
    primary = strategies[0]
    n_feat = torch.tensor([n for part in ordered for n in part.n_features])
    f_min = int(n_feat.min())
    kmax = max(1, min(cfg.max_k, f_min - 1))
    ks = list(range(1, kmax + 1))
    orders = {s: _stack_orders([o for part in ordered for o in part.orders[s]], n_feat) for s in runs}
    k_at = ks.index(min(cfg.k_removal, ks[-1]))
    by_strategy: dict[str, Any] = {}
    ratio = Estimate(value=float("nan"), lo=float("nan"), hi=float("nan"), n=0)
    for s in strategies:
        own_i = _outcomes([part.removal[s].own for part in ordered], kmax)
        rnd_i = _outcomes([part.removal[s].random for part in ordered], kmax)
        entry = _removal_entry(ks, _curve(own_i), _curve(rnd_i), cfg.k_removal)
        est = ratio_of_means(own_i[:, k_at], rnd_i[:, k_at], seed=seed)
        entry[f"ratio_at_{cfg.k_removal}_interval"] = est.as_dict()
        if s == primary:
            ratio = est
            if first.reference is not None:
                ref_curve = _curve(
                    _outcomes([part.reference.outcomes for part in ordered if part.reference], kmax)
                )
                entry["reference"] = ref_curve
                entry["reference_strategy"] = first.reference.strategy
                entry[f"reference_at_{cfg.k_removal}"] = curve_at(ks, ref_curve, cfg.k_removal)
        by_strategy[s] = entry
    order2 = _stack_orders([o for part in ordered for o in part.order_second_seed], n_feat)
    seed_jac = topk_jaccard_curve([orders[primary], order2], ks)
    rho = [r for part in ordered for r in part.spearman]
    fill_orders = [orders[f] for f in cfg.fills]
    fill_jac = topk_jaccard_curve(fill_orders, ks)
    everyone = range(len(n_feat))
    rand_jac = topk_jaccard_curve(
        [random_rankings(n_feat, seed + 100 + i, everyone) for i in range(cfg.n_random_orders)], ks
    )
    kc = cfg.k_consistency
    per_image_cons = topk_jaccard_curve(fill_orders, [min(kc, kmax)], per_image=True)
    consistency = mean_estimate(per_image_cons, seed=seed)
    groups = np.array([g for part in ordered for g in part.groups], dtype=np.int64)
    k_classes = len(meta.class_names)
    native_primary = parse_strategy(primary).name in NATIVE
    metrics: dict[str, Any] = {
        "n_images": len(n_feat),
        "n_per_class": dict(
            zip(meta.class_names, counts_per_class(groups, np.arange(len(groups)), k_classes), strict=True)
        ),
        "n_samples": cfg.n_samples,
        "features": cfg.features,
        "patch_size": patch if cfg.features == "grid" else None,
        "n_features": {"min": f_min, "max": int(n_feat.max())},
        "primary_strategy": primary,
        "seeds": [seed, seed + 1],
        "removal": by_strategy[primary],
        "by_strategy": by_strategy,
        "fill_consistency": {
            "fills": list(cfg.fills),
            "K": ks,
            "jaccard": fill_jac,
            "random": rand_jac,
            f"at_{kc}": curve_at(ks, fill_jac, kc),
            f"random_at_{kc}": curve_at(ks, rand_jac, kc),
            f"at_{kc}_interval": consistency.as_dict(),
            "colour_free": native_primary,
        },
        "seed_stability": {
            "K": ks,
            "jaccard": seed_jac,
            f"jaccard_at_{kc}": curve_at(ks, seed_jac, kc),
            "spearman_mean": float(np.mean(rho)),
            "spearman": rho,
        },
    }
    c = verdict_of(metrics, cfg, primary, ratio, consistency, first.native)
    return LimeJudgement(
        verdict=c.verdict,
        summary=c.summary,
        metrics=metrics,
        findings=c.findings,
        n=ratio.n,
        estimate={**ratio.as_dict(), "statistic": f"own/random unchanged at k={cfg.k_removal} ({primary})"},
        meaning=c.meaning,
        resolved={"patch_size": patch, "strategies": strategies},
        per_image_consistency=per_image_cons,
    )


def _curve(per_image: np.ndarray) -> list[float]:
    return [float(v) for v in per_image.mean(0)]


def _outcomes(shards: list[list[list[int]]], kmax: int) -> np.ndarray:
    """[B, kmax] removal outcomes of the whole pick from the shards' (in position order)."""
    return np.array([row[:kmax] for rows in shards for row in rows], dtype=np.float32)


def _stack_orders(rows: list[list[int]], n_feat: torch.Tensor) -> torch.Tensor:
    """[B, F] rankings from each image's ranking of its own features, absent features appended last."""
    f_max = int(n_feat.max())
    return torch.tensor([[*row, *range(len(row), f_max)] for row in rows], dtype=torch.long)


def _removal_entry(ks: list[int], own: list[float], rnd: list[float], k: int) -> dict[str, Any]:
    at_own, at_rnd = curve_at(ks, own, k), curve_at(ks, rnd, k)
    return {
        "k": ks,
        "own": own,
        "random": rnd,
        "k_eval": min(k, ks[-1]),
        f"own_at_{k}": at_own,
        f"random_at_{k}": at_rnd,
        f"ratio_at_{k}": at_own / at_rnd if at_rnd > 0 else None,
        "own_auc": float(np.mean(own)),
        "random_auc": float(np.mean(rnd)),
    }
