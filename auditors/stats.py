"""Statistics behind every verdict: intervals, null distributions and multiple-testing corrections.

A verdict from a fixed threshold on one number says nothing about how sure it is. Audits here judge an
effect against a *null distribution* drawn on the same images (random boxes, random stamps, random
permutations), correct for testing many candidates at once, and carry the sample size and a confidence
interval, so a reader (and the gate) can tell "no effect" from "too few images to tell".

numpy only: the functions take plain arrays and return plain floats, so they are cheap to test and the
same in a shard and in a single run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

Alternative = Literal["greater", "less", "two-sided"]
Decision = Literal["pass", "fail", "inconclusive"]

# Two-sided 95% normal quantile; every interval here is a 95% interval unless a caller says otherwise.
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """An effect with its uncertainty: what every verdict in a report rests on.

    `value` is the point estimate, [`lo`, `hi`] its confidence interval at `level`, `n` the number of
    independent units (images, usually) behind it, and `p_value` the (corrected, where stated) p-value
    of the test against the null, when there is one.
    """

    value: float
    lo: float
    hi: float
    n: int
    level: float = 0.95
    p_value: float | None = None
    null_mean: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def wilson_interval(successes: int, n: int, *, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion: sane at 0/n and n/n and for small n, unlike the
    normal approximation, which is why flip rates and unchanged fractions use it."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(successes: int, n: int, *, z: float = Z95) -> Estimate:
    """A proportion with its Wilson interval."""
    lo, hi = wilson_interval(successes, n, z=z)
    return Estimate(value=successes / n if n else 0.0, lo=lo, hi=hi, n=n)


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    *,
    statistic: Callable[[np.ndarray], float] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` (default: the mean, vectorised) over the units in
    `values`, resampled with replacement. Seeded, so a report is reproducible."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    if a.size == 1:
        v = float(a[0]) if statistic is None else float(statistic(a))
        return v, v
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    stats = a[idx].mean(axis=1) if statistic is None else np.array([statistic(a[row]) for row in idx])
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def mean_estimate(values: Sequence[float] | np.ndarray, *, seed: int = 0, level: float = 0.95) -> Estimate:
    """The mean of per-unit values with a bootstrap interval."""
    a = np.asarray(values, dtype=np.float64)
    lo, hi = bootstrap_interval(a, seed=seed, level=level)
    return Estimate(value=float(a.mean()) if a.size else math.nan, lo=lo, hi=hi, n=int(a.size), level=level)


def ratio_of_means(
    numerator: Sequence[float] | np.ndarray,
    denominator: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """mean(numerator) / mean(denominator) over paired units, with a paired percentile bootstrap
    interval (e.g. LIME's unchanged share after removing its own top features over a random order's).
    A resample whose denominator is 0 counts as +inf, so the interval is honest about it."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    if num.shape != den.shape:
        raise ValueError("numerator and denominator need one value per unit each")

    def ratio(a: np.ndarray, b: np.ndarray) -> float:
        mb = float(b.mean()) if b.size else 0.0
        ma = float(a.mean()) if a.size else 0.0
        return ma / mb if mb > 0 else (math.inf if ma > 0 else 0.0)

    if num.size == 0:
        return Estimate(value=math.nan, lo=math.nan, hi=math.nan, n=0, level=level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num.size, size=(n_boot, num.size))
    means_a, means_b = num[idx].mean(axis=1), den[idx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        stats = np.where(
            means_b > 0, means_a / np.where(means_b > 0, means_b, 1.0), np.where(means_a > 0, np.inf, 0.0)
        )
    alpha = (1.0 - level) / 2.0
    ranked = np.sort(stats)  # order statistics, not interpolation: +inf resamples stay +inf
    lo = float(ranked[math.floor(alpha * (n_boot - 1))])
    hi = float(ranked[math.ceil((1.0 - alpha) * (n_boot - 1))])
    return Estimate(value=ratio(num, den), lo=lo, hi=hi, n=int(num.size), level=level)


def empirical_p_value(
    observed: float, null: Sequence[float] | np.ndarray, *, alternative: Alternative = "greater"
) -> float:
    """p-value of `observed` against samples of its null distribution, (1 + #as-extreme) / (1 + m).

    The +1 counts the observation itself (Phipson & Smyth 2010), so p is never 0 and m null draws can
    at best give 1/(m+1): a caller that needs p < 0.01 after correction must draw enough nulls.
    """
    null_a = np.asarray(null, dtype=np.float64)
    m = null_a.size
    if m == 0:
        return 1.0
    if alternative == "greater":
        k = int(np.sum(null_a >= observed))
    elif alternative == "less":
        k = int(np.sum(null_a <= observed))
    else:
        centre = float(np.mean(null_a))
        k = int(np.sum(np.abs(null_a - centre) >= abs(observed - centre)))
    return (1.0 + k) / (1.0 + m)


def sign_flip_p_value(
    differences: Sequence[float] | np.ndarray,
    *,
    n_perm: int = 4000,
    seed: int = 0,
    alternative: Alternative = "greater",
) -> float:
    """Paired permutation test of mean(differences) = 0 by random sign flips (exact when 2^n is small).

    Used where each image gives a paired difference, e.g. a candidate box's removal effect minus a
    random box's on the same image: no normality assumed, valid for small n.
    """
    d = np.asarray(differences, dtype=np.float64)
    n = d.size
    if n == 0:
        return 1.0
    observed = float(d.mean())
    if n <= 12:
        signs = ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1) * 2 - 1
    else:
        rng = np.random.default_rng(seed)
        signs = rng.integers(0, 2, size=(n_perm, n)) * 2 - 1
    null = (signs * np.abs(d)[None, :]).mean(axis=1)
    if n <= 12:  # the exact distribution already contains the observed sign pattern
        if alternative == "greater":
            return float(np.mean(null >= observed - 1e-12))
        if alternative == "less":
            return float(np.mean(null <= observed + 1e-12))
        return float(np.mean(np.abs(null) >= abs(observed) - 1e-12))
    if alternative == "two-sided":
        return empirical_p_value(abs(observed), np.abs(null), alternative="greater")
    return empirical_p_value(observed, null, alternative=alternative)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error control, valid under any dependence):
    the right correction when several candidate regions are tested on the same images."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return [float(x) for x in adjusted]


def decide(
    estimate: Estimate,
    *,
    fail_above: float,
    min_n: int,
    alpha: float = 0.05,
) -> Decision:
    """A three-way verdict from an effect and its uncertainty.

    - fewer than `min_n` units: `inconclusive` (too few images to say anything);
    - the whole interval above `fail_above` (and, when tested, p < alpha): `fail`;
    - the whole interval at or below it: `pass`;
    - otherwise the data cannot tell: `inconclusive`.
    """
    if estimate.n < min_n:
        return "inconclusive"
    significant = estimate.p_value is None or estimate.p_value < alpha
    if estimate.lo > fail_above and significant:
        return "fail"
    if estimate.hi <= fail_above or not significant:
        return "pass"
    return "inconclusive"


# Power: the n at which a rule decides. A three-way rule is inconclusive while its interval straddles
# the threshold; the interval narrows as 1/sqrt(n), so for an effect of a given size there is an n past
# which it lies wholly on one side. Sample sizes are chosen from these, never by loosening a rule.


def wilson_n_to_decide(share: float, threshold: float, *, z: float = Z95, n_max: int = 100_000) -> int | None:
    """The smallest n whose Wilson interval around a share `share` lies wholly above `threshold` (the
    fail side of `decide`) or wholly at or below it (the pass side): the n at which a proportion rule
    decides when the true share is `share`. None when no n up to `n_max` does (share at the threshold).
    """
    if not 0.0 <= share <= 1.0 or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"share and threshold must lie in [0, 1], got {share} and {threshold}")
    above = share > threshold

    def decides(n: int) -> bool:
        denom = 1.0 + z * z / n
        centre = (share + z * z / (2 * n)) / denom
        half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denom
        return centre - half > threshold if above else centre + half <= threshold

    if share == threshold or not decides(n_max):
        return None
    lo, hi = 0, 1
    while not decides(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # decides(hi) holds, decides(lo) does not (or lo = 0)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if decides(mid) else (mid, hi)
    return hi


def wilson_power(share: float, threshold: float, n: int, *, z: float = Z95) -> float:
    """Exact probability that `decide` on a Wilson interval of n images reaches the verdict a true
    share `share` deserves (fail above `threshold`, pass at or below): the binomial sum over counts."""
    if n <= 0:
        return 0.0
    k = np.arange(n + 1)
    if share in (0.0, 1.0):
        pmf = (k == round(share * n)).astype(np.float64)
    else:
        log_choose = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])
        pmf = np.exp(log_choose + k * math.log(share) + (n - k) * math.log1p(-share))
    bounds = [wilson_interval(int(i), n, z=z) for i in k]
    hit = np.array([lo > threshold if share > threshold else hi <= threshold for lo, hi in bounds])
    return float(pmf[hit].sum())


def wilson_planning_n(
    share: float, threshold: float, *, power: float = 0.8, z: float = Z95, n_max: int = 2000
) -> int | None:
    """The smallest n at which a proportion rule reaches the right verdict with probability at least
    `power` when the true share is `share` (exact binomial power, `wilson_power`). None when no n up
    to `n_max` does (a share at the threshold never decides)."""
    start = wilson_n_to_decide(share, threshold, z=z)
    if start is None:
        return None
    for n in range(start, n_max + 1):
        if wilson_power(share, threshold, n, z=z) >= power:
            return n
    return None


def interval_n_to_decide(estimate: Estimate, threshold: float) -> int | None:
    """The n at which `estimate`'s interval, narrowing as 1/sqrt(n) around the same value, lies wholly
    above `threshold` or wholly at or below it: planning from the observed effect and spread, with the
    interval's half-width on the threshold's side. `estimate.n` when it already decides; None when the
    value sits on the threshold or is not finite (no n decides)."""
    v, lo, hi, n = estimate.value, estimate.lo, estimate.hi, estimate.n
    if n <= 0 or not all(math.isfinite(x) for x in (v, lo)) or v == threshold:
        return None
    if v > threshold:
        half, gap, strict = v - lo, v - threshold, True
    else:
        if not math.isfinite(hi):
            return None
        half, gap, strict = hi - v, threshold - v, False
    if half < gap or (half == gap and not strict):
        return n
    need = n * (half / gap) ** 2
    return max(n, math.floor(need) + 1 if strict or need != int(need) else int(need))


def ratio_planning_n(
    ratio: float, threshold: float, p_random: float, *, power: float = 0.8, z: float = Z95
) -> int | None:
    """Images at which a paired ratio of means, own/random, decides against `threshold` with
    probability about `power` when the true ratio is `ratio`: n = ((z + z_power) sd / |ratio - t|)^2,
    sd the delta method's standard deviation of the per-image linearisation
    (own_i - ratio x random_i) / p_random, with own_i ~ Bernoulli(ratio x p_random),
    random_i ~ Bernoulli(p_random) and no covariance (pairing only helps). A normal approximation: the
    ratio is skewed right, so on the pass side the bootstrap rule's real power at this n is lower
    (measured in the tests). None when the ratio sits on the threshold."""
    if not 0.0 < p_random <= 1.0 or ratio < 0 or ratio * p_random > 1.0:
        raise ValueError(f"need 0 < p_random <= 1 and 0 <= ratio x p_random <= 1, got {ratio}, {p_random}")
    if ratio == threshold:
        return None
    p_own = ratio * p_random
    var = (p_own * (1 - p_own) + ratio * ratio * p_random * (1 - p_random)) / (p_random * p_random)
    z_power = float(NormalDist().inv_cdf(power))
    return max(1, math.ceil(((z + z_power) * math.sqrt(var) / abs(ratio - threshold)) ** 2))


def power_plan(n: int, n_to_decide: int | None, *, basis: str = "observed effect") -> dict[str, Any]:
    """What an undecided verdict records: the units it rests on, the n at which it would decide at the
    observed effect (None: at the limit, no n decides) and that n's cost as a multiple of this run's
    (audit time grows about linearly in the images explained)."""
    factor = None if n_to_decide is None or n <= 0 else round(n_to_decide / n, 2)
    return {"n": n, "n_to_decide": n_to_decide, "cost_factor": factor, "basis": basis}


def power_sentence(plan: dict[str, Any], *, knob: str = "n_images") -> str:
    """The report's sentence for `power_plan`: the n that would decide and what it costs."""
    need = plan["n_to_decide"]
    if need is None:
        return "the estimate sits on the limit, so no sample size would decide it"
    return (
        f"at the {plan['basis']} about {need} images would decide ({knob} >= {need}, about "
        f"{plan['cost_factor']:g}x this audit's time)"
    )
