"""Sample sizes from power: the n at which each rule decides, the defaults sized by it, and what an
undecided report and the estimate say (docs/audits.md, "Sample sizes from power")."""

from __future__ import annotations

import numpy as np
import pytest

from auditors.audits.lime_consistency.config import LimeConfig
from auditors.audits.lime_consistency.verdict import verdict_of
from auditors.audits.sis.config import SISConfig
from auditors.audits.sis.merge import _verdict as sis_verdict
from auditors.cost import Calibration, decision_plan, estimate
from auditors.passes import RunShape
from auditors.registry import get_auditor
from auditors.stats import (
    Estimate,
    decide,
    interval_n_to_decide,
    proportion,
    ratio_of_means,
    ratio_planning_n,
    wilson_n_to_decide,
    wilson_planning_n,
    wilson_power,
)


@pytest.mark.parametrize(
    ("share", "threshold"), [(1.0, 0.5), (0.0, 0.5), (0.75, 0.5), (0.25, 0.5), (0.3, 0.2)]
)
def test_wilson_n_is_the_first_n_at_which_the_proportion_rule_decides(share, threshold):
    n = wilson_n_to_decide(share, threshold)
    assert n is not None

    def verdict(m: int) -> str:
        return decide(proportion(round(share * m), m), fail_above=threshold, min_n=1)

    want = "fail" if share > threshold else "pass"
    assert verdict(n) == want
    if share in (0.0, 1.0):  # whole counts: the continuous share is exact, so n - 1 must not decide
        assert verdict(n - 1) == "inconclusive"


def test_all_confident_images_tiny_decide_at_four_and_a_share_on_the_limit_never():
    assert wilson_n_to_decide(1.0, 0.5) == 4 and wilson_n_to_decide(0.0, 0.5) == 4
    assert wilson_n_to_decide(0.5, 0.5) is None
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        wilson_n_to_decide(1.5, 0.5)


def test_planning_n_is_the_first_n_with_the_asked_power_and_power_is_the_exact_binomial_sum():
    n = wilson_planning_n(0.75, 0.5)
    assert n is not None and wilson_power(0.75, 0.5, n) >= 0.8 > wilson_power(0.75, 0.5, n - 1)
    # Exact: the sum over every count of the binomial probability of a count whose interval decides.
    rng = np.random.default_rng(0)
    counts = rng.binomial(n, 0.75, size=20_000)
    simulated = np.mean([decide(proportion(int(c), n), fail_above=0.5, min_n=1) == "fail" for c in counts])
    assert abs(simulated - wilson_power(0.75, 0.5, n)) < 0.02
    assert wilson_planning_n(0.5, 0.5) is None


def test_interval_n_scales_the_half_width_on_the_thresholds_side():
    # 0.2 [0.0, 0.6] on 8: the upper half-width 0.4 must shrink to 0.3, so n = 8 x (4/3)^2 = 14.2 -> 15.
    assert interval_n_to_decide(Estimate(0.2, 0.0, 0.6, 8), 0.5) == 15
    # 1.0 [0.0, 5.0] on 8: the lower half-width 1.0 must drop below 0.5: more than 32.
    assert interval_n_to_decide(Estimate(1.0, 0.0, 5.0, 8), 0.5) == 33
    assert interval_n_to_decide(Estimate(0.14, 0.0, 0.43, 8), 0.5) == 8, "already decides"
    assert interval_n_to_decide(Estimate(0.5, 0.0, 1.0, 8), 0.5) is None
    assert interval_n_to_decide(Estimate(float("inf"), 0.0, float("inf"), 8), 0.5) is None


def test_ratio_planning_n_gives_the_bootstrap_rule_its_power_on_simulated_images():
    """At the planned n (80% power by the delta method), a planning-size effect decides in most simulated
    audits: the fail side as planned, the skewed pass side somewhat less; at a quarter of n, in fewer."""
    t, p_random = 0.5, 0.8
    for ratio, want in ((0.25, "pass"), (1.0, "fail")):
        n = ratio_planning_n(ratio, t, p_random)
        assert n is not None

        def rate(m: int, ratio: float = ratio, want: str = want) -> float:
            rng = np.random.default_rng(0)
            hits = 0
            for rep in range(120):
                own = rng.random(m) < ratio * p_random
                rnd = rng.random(m) < p_random
                est = ratio_of_means(own.astype(float), rnd.astype(float), n_boot=500, seed=rep)
                hits += decide(est, fail_above=t, min_n=1) == want
            return hits / 120

        assert rate(n) >= (0.6 if want == "pass" else 0.8)
        assert rate(max(2, n // 4)) < rate(n)
    assert ratio_planning_n(0.5, 0.5, 0.5) is None


def test_defaults_are_the_planned_n_and_an_explicit_n_is_kept():
    assert SISConfig().n_images == SISConfig().planned_n() == wilson_planning_n(0.75, 0.5) == 26
    assert LimeConfig().n_images == LimeConfig().planned_n() == ratio_planning_n(0.25, 0.5, 0.8) == 34
    assert SISConfig(n_images=3).n_images == 3 and LimeConfig(n_images=5).n_images == 5
    # The plan follows the rule's limit, it never moves it.
    strict = SISConfig(max_small_sis_share=0.2)
    assert strict.max_small_sis_share == 0.2 and strict.n_images == wilson_planning_n(0.45, 0.2)
    # A round trip (a worker's copy of the config) keeps the same n.
    assert SISConfig.model_validate_json(SISConfig().model_dump_json()).n_images == SISConfig().n_images


def test_at_the_default_n_a_planning_size_effect_decides_both_ways():
    cfg = SISConfig()
    n = cfg.n_images
    assert decide(proportion(round(0.75 * n), n), fail_above=0.5, min_n=cfg.min_images) == "fail"
    assert decide(proportion(round(0.25 * n), n), fail_above=0.5, min_n=cfg.min_images) == "pass"


def _lime_metrics() -> dict:
    return {
        "removal": {"own_at_25": 0.1, "random_at_25": 0.5},
        "fill_consistency": {"at_20": 0.9, "colour_free": True},
    }


def test_an_undecided_lime_verdict_says_which_n_would_decide_and_its_cost():
    metrics = _lime_metrics()
    ratio = Estimate(0.2, 0.0, 0.6, 8)
    c = verdict_of(metrics, LimeConfig(), "layer_mask", ratio, ratio, ["layer_mask"])
    verdict, meaning = c.verdict, c.meaning
    assert verdict == "inconclusive"
    assert metrics["power"] == {"n": 8, "n_to_decide": 15, "cost_factor": 1.88, "basis": "observed effect"}
    assert "about 15 images would decide" in meaning and "1.88x this audit's time" in meaning
    decided = _lime_metrics()
    ok = Estimate(0.14, 0.0, 0.43, 8)
    assert (
        verdict_of(decided, LimeConfig(), "layer_mask", ok, ok, []).verdict == "pass"
        and "power" not in decided
    )


def test_too_few_lime_images_ask_for_at_least_min_images():
    metrics = _lime_metrics()
    few = Estimate(0.0, 0.0, 0.0, 3)
    c = verdict_of(metrics, LimeConfig(), "layer_mask", few, few, [])
    verdict, meaning = c.verdict, c.meaning
    assert verdict == "inconclusive" and "Too few images" in meaning
    assert metrics["power"]["n_to_decide"] == LimeConfig().min_images


def _sis_metrics(n_confident: int) -> dict:
    return {
        "fully_masked": {"confidence_max": 0.3, "share_at_or_above_tau": 0.0},
        "subset_5pct": {
            "n_pixels": 51,
            "backselect": {"agreement": 1.0},
            "random": {"agreement": 0.2},
        },
        "sis_size": {"median_pct": 2.0},
        "selection": {"resolution_pct": 1.0, "n_confident": n_confident},
    }


def test_an_undecided_sis_verdict_says_which_n_would_decide_and_whether_the_sample_has_it():
    m = _sis_metrics(n_confident=40)
    c = sis_verdict(m, SISConfig(), proportion(6, 8))
    verdict, meaning = c.verdict, c.meaning
    assert verdict == "inconclusive"
    need = wilson_n_to_decide(6 / 8, 0.5)
    assert m["power"]["n_to_decide"] == need and f"about {need} images would decide" in meaning
    assert "audit more images" not in meaning
    short = _sis_metrics(n_confident=8)
    assert "only 8 confident images" in sis_verdict(short, SISConfig(), proportion(6, 8)).meaning
    assert (
        "power" not in (m2 := _sis_metrics(40))
        and sis_verdict(m2, SISConfig(), proportion(16, 16)).verdict == "fail"
    )


SIS, LIME = get_auditor("sis"), get_auditor("lime_consistency")
AUDITORS = {"sis": SIS, "lime_consistency": LIME}
CAL = Calibration("cpu", 1e-3, 1e-3, 2e-3, 1e-3, 0.05, 32, 0.1)


def test_the_estimate_says_when_a_sample_cannot_decide_and_what_would():
    shape = RunShape(300, 32, 32, 4)
    default = decision_plan(SIS, SISConfig(), shape, CAL)
    assert default is not None and default["decides"] and "note" not in default
    small = decision_plan(SIS, SISConfig(n_images=6), shape, CAL)
    assert small is not None and not small["decides"] and small["n_to_decide"] == SISConfig().n_images
    assert (
        small["seconds_to_decide"]
        > estimate(AUDITORS, {"sis": SISConfig(n_images=6)}, shape, CAL).audits["sis"]["seconds"]
    )
    tiny_data = decision_plan(LIME, LimeConfig(), RunShape(10, 32, 32, 4), CAL)
    assert tiny_data is not None and not tiny_data["decides"] and "the sample has 10" in tiny_data["note"]
    est = estimate(
        AUDITORS, {"lime_consistency": LimeConfig(n_images=4), "sis": SISConfig()}, shape, CAL
    ).as_dict()
    assert est["audits"]["lime_consistency"]["power"]["decides"] is False
    assert len(est["notes"]) == 1 and est["notes"][0].startswith("lime_consistency: 4 images")


def test_an_interval_without_a_finite_side_falls_back_on_the_planned_n():
    metrics = _lime_metrics()
    unbounded = Estimate(0.3, 0.0, float("inf"), 12)
    c = verdict_of(metrics, LimeConfig(), "layer_mask", unbounded, unbounded, [])
    verdict, meaning = c.verdict, c.meaning
    assert verdict == "inconclusive"
    assert metrics["power"]["n_to_decide"] == LimeConfig().planned_n()
    assert metrics["power"]["basis"] == "planning effect" and "at the planning effect about" in meaning


def test_the_terminal_estimate_prints_the_power_note():
    from occulta.estimate import describe

    est = estimate(AUDITORS, {"sis": SISConfig(n_images=6)}, RunShape(300, 32, 32, 4), CAL)
    lines = describe(est)
    assert any(
        line.startswith("  power: sis: 6 images may not decide") and "n_images=26" in line for line in lines
    )
    assert not any(
        "power:" in line
        for line in describe(estimate(AUDITORS, {"sis": SISConfig()}, RunShape(300, 32, 32, 4), CAL))
    )
