"""The missingness-bias verdict, scaled to the number of classes K and judged with its uncertainty.

A fixed rule does not travel across K: an entropy drop of 1 nat is most of ln 4 = 1.39 but a seventh of
ln 1000 = 6.91, and "a class takes 10x its clean share" can never happen with 4 classes at 25% each.
So, at the attractor fraction (half the patches removed):

- the entropy drop is measured as a share of ln K, (H(clean) - H(masked)) / ln K, with a paired
  bootstrap interval over images;
- each class c may take at most limit_c = min(max(floor, ratio x clean_c), clean_c + cap x (1 - clean_c))
  of the predictions: "ratio times its clean share" where that is possible, and otherwise "more than
  `cap` of the predictions it did not already have", so the rule can fire for every K from 2 to 1000;
  each share carries a Wilson interval at a Bonferroni-corrected level (K classes are looked at).

A strategy fails when an interval lies wholly above its limit, passes when every interval lies at or
below, and is inconclusive otherwise or when fewer than `min_n` images were seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from auditors.methods.class_entropy import class_shares, entropy
from auditors.methods.removal import distribution_change
from auditors.stats import Decision, Estimate, bootstrap_interval, decide, wilson_interval


def entropy_drop_share(
    clean: np.ndarray, masked: np.ndarray, k: int, *, seed: int, n_boot: int = 1000
) -> Estimate:
    """(H(clean) - H(masked)) / ln K over the same images, with a paired bootstrap interval."""
    clean, masked = np.asarray(clean, dtype=np.int64), np.asarray(masked, dtype=np.int64)
    log_k = math.log(max(2, k))

    def drop(ix: np.ndarray) -> float:
        rows = np.asarray(ix, dtype=np.int64)  # bootstrap_interval hands the units back as floats
        return (entropy(class_shares(clean[rows], k)) - entropy(class_shares(masked[rows], k))) / log_k

    units = np.arange(clean.size)
    lo, hi = bootstrap_interval(units, statistic=drop, n_boot=n_boot, seed=seed)
    return Estimate(value=drop(units), lo=lo, hi=hi, n=int(clean.size))


def share_limits(clean_share: np.ndarray, *, floor: float, ratio: float, cap: float) -> np.ndarray:
    """The largest share each class may take once patches are removed (see the module docstring)."""
    c = np.asarray(clean_share, dtype=np.float64)
    return np.minimum(np.maximum(floor, ratio * c), c + cap * (1.0 - c))


@dataclass(frozen=True)
class AttractorTest:
    """The class most over its limit, its share with the corrected interval, and the verdict over all
    classes."""

    cls: int
    share: Estimate
    limit: float
    decision: Decision


def attractor_test(
    masked: np.ndarray, limits: np.ndarray, *, min_n: int, alpha: float = 0.05
) -> AttractorTest:
    """Does any class take more than its limit? Wilson intervals at level 1 - alpha/K for each class."""
    k = limits.size
    n = int(np.asarray(masked).size)
    counts = np.bincount(np.asarray(masked, dtype=np.int64), minlength=k)[:k]
    z = NormalDist().inv_cdf(1.0 - alpha / (2.0 * k))
    estimates = []
    for c in range(k):
        lo, hi = wilson_interval(int(counts[c]), n, z=z)
        estimates.append(Estimate(value=counts[c] / max(1, n), lo=lo, hi=hi, n=n, level=1.0 - alpha / k))
    decisions = [decide(e, fail_above=float(limits[c]), min_n=min_n) for c, e in enumerate(estimates)]
    worst = int(np.argmax([e.value - limits[c] for c, e in enumerate(estimates)]))
    if "fail" in decisions:
        worst = max(
            (c for c in range(k) if decisions[c] == "fail"), key=lambda c: estimates[c].lo - limits[c]
        )
        decision: Decision = "fail"
    elif all(d == "pass" for d in decisions):
        decision = "pass"
    else:
        decision = "inconclusive"
    return AttractorTest(worst, estimates[worst], float(limits[worst]), decision)


def combine(*decisions: Decision) -> Decision:
    """Any fail fails; all pass passes; otherwise the data cannot tell."""
    if "fail" in decisions:
        return "fail"
    return "pass" if all(d == "pass" for d in decisions) else "inconclusive"


@dataclass(frozen=True)
class Rules:
    """The thresholds, each relative to K or to a class's clean share (see the module docstring)."""

    entropy_drop_share_max: float = 0.2
    class_share_floor: float = 0.05
    class_share_ratio: float = 10.0
    class_share_cap: float = 0.5
    min_images: int = 30


@dataclass(frozen=True)
class StrategyJudgement:
    """One strategy at the attractor fraction: both statistics, their decisions and the verdict."""

    entropy_drop: Estimate
    entropy_decision: Decision
    attractor: AttractorTest
    change: float  # total variation distance between clean and masked class shares
    verdict: Decision

    def as_dict(self, class_names: list[str]) -> dict[str, object]:
        return {
            "entropy_drop_share": self.entropy_drop.as_dict(),
            "entropy_decision": self.entropy_decision,
            "attractor_test": {
                "class": class_names[self.attractor.cls],
                "limit": round(self.attractor.limit, 6),
                "decision": self.attractor.decision,
                **self.attractor.share.as_dict(),
            },
            "distribution_change": round(self.change, 6),
            "verdict": self.verdict,
        }


def judge_strategy(
    clean: np.ndarray, masked: np.ndarray, k: int, rules: Rules, *, seed: int
) -> StrategyJudgement:
    """The verdict for one strategy from the clean and the masked predictions of the same images."""
    clean, masked = np.asarray(clean, dtype=np.int64), np.asarray(masked, dtype=np.int64)
    drop = entropy_drop_share(clean, masked, k, seed=seed)
    ent = decide(drop, fail_above=rules.entropy_drop_share_max, min_n=rules.min_images)
    limits = share_limits(
        class_shares(clean, k),
        floor=rules.class_share_floor,
        ratio=rules.class_share_ratio,
        cap=rules.class_share_cap,
    )
    attr = attractor_test(masked, limits, min_n=rules.min_images)
    return StrategyJudgement(
        drop, ent, attr, distribution_change(clean, masked, k), combine(ent, attr.decision)
    )
