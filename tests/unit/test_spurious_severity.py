"""Severity (shortcut vs reaction) and the low-level data screen of the spurious-signal audit."""

from __future__ import annotations

import torch

from auditors.audits.spurious_signal.lowlevel import judge_lowlevel, screen
from auditors.audits.spurious_signal.severity import annotate, judge
from auditors.zoo.photos import photo_images
from auditors.zoo.planted import task_images
from auditors.zoo.triggers import Trigger

BOX_REMOVAL = {"effect": 0.4, "random_effect": 0.05, "n": 30, "removal": {"p_value": 0.001}}
NO_COST = {"effect": 0.04, "random_effect": 0.05, "n": 30, "removal": {"p_value": 0.6}}


def test_a_shortcut_needs_both_counterfactuals() -> None:
    assert judge(False, BOX_REMOVAL, 0.05)[0] == "none"
    assert judge(True, BOX_REMOVAL, 0.05)[0] == "shortcut"
    level, why = judge(True, NO_COST, 0.05)
    assert level == "sensitivity" and "no more than the null" in why
    # The class's own images do not carry it: it cannot depend on it.
    assert (
        judge(True, {"effect": 0.0, "random_effect": 0.0, "n": 0, "removal": None}, 0.05)[0] == "sensitivity"
    )
    # A global change's removal (value vs its mirror's null_mean) is read the same way.
    assert judge(True, {"value": 0.3, "null_mean": 0.01, "p_value": 0.002, "n": 20}, 0.05)[0] == "shortcut"
    assert judge(True, {"value": 0.3, "null_mean": 0.4, "p_value": 0.002, "n": 20}, 0.05)[0] == "sensitivity"


def test_a_box_s_removal_is_judged_by_images_that_leave_the_class() -> None:
    # The demo's clean control: removing the square costs its circles 0.24 confidence, none of them
    # stops being a circle; the planted model's circles turn into another class.
    clean = {"effect": 0.24, "random_effect": 0.003, "n": 24, "removal": {"p_value": 0.0003}}
    clean |= {"lost": 0.0, "random_lost": 0.0, "lost_p_value": 1.0}
    assert judge(True, clean, 0.05)[0] == "sensitivity"
    # 4 of 24 leaving the class, even significantly, is not a loss of min_flip with 95% confidence.
    assert judge(True, clean | {"lost": 4 / 24, "lost_p_value": 0.01}, 0.05)[0] == "sensitivity"
    planted = clean | {"lost": 0.8, "random_lost": 0.02, "lost_p_value": 0.0002}
    level, why = judge(True, planted, 0.05)
    assert level == "shortcut" and "80%" in why


def test_annotate_narrows_confirmed_to_shortcuts_and_gives_fitting_advice() -> None:
    reaction = {"confirmed": True, "removal": NO_COST}
    assert annotate(reaction, 0.05) == "sensitivity"
    assert reaction["confirmed"] is False and reaction["stamp_confirmed"] is True
    assert "augment" in reaction["advice"]
    shortcut = {"confirmed": True, "removal": BOX_REMOVAL}
    assert annotate(shortcut, 0.05) == "shortcut" and shortcut["confirmed"] is True
    assert "retrain" in shortcut["advice"]


def test_the_screen_finds_a_blurred_class_but_not_a_photograph_s_own_content() -> None:
    x, y = task_images("shapes", 400, size=32, classes=4, seed=5)
    idx = (y == 0).nonzero().flatten()
    x[idx] = Trigger("blur").apply(x[idx], idx.tolist())[0]
    kept, _ = screen(x, y, [0, 1, 2, 3], max_tests=6)
    assert any(r["class_index"] == 0 and r["statistic"] == "detail" and r["shift"] < 0 for r in kept)
    assert all(r["class_index"] == 0 for r in kept)
    # Real photographs differ by class in raw sharpness and contrast (a flat sky, a busy street); the
    # contrast-relative statistics do not pick that up as a source.
    px, py = photo_images(400, size=32, classes=4, seed=5)
    assert screen(px, py, [0, 1, 2, 3], max_tests=6)[0] == []


def test_judge_lowlevel_applies_holm_the_flip_rule_and_severity() -> None:
    base = {"class_index": 0, "statistic": "detail", "shift": -3.0, "class_level": -3.0, "others_level": 1.0}
    strong = base | {
        "flip": {"value": 0.6, "lo": 0.5, "hi": 0.7, "n": 100, "null_mean": 0.02},
        "removal": {"value": 0.3, "null_mean": 0.0, "p_value": 0.001, "n": 30},
        "p_value": 0.001,
    }
    weak = base | {
        "class_index": 1,
        "flip": {"value": 0.05, "lo": 0.02, "hi": 0.1, "n": 100, "null_mean": 0.02},
        "removal": {"value": 0.0, "null_mean": 0.0, "p_value": 0.5, "n": 30},
        "p_value": 0.2,
    }
    results, shortcuts = judge_lowlevel([strong, weak], ["a", "b"], 0.05, 0.1)
    assert [r["class"] for r in shortcuts] == ["a"]
    assert results[1]["severity"] == "none" and results[0]["flip"]["p_value"] == 0.002


def test_a_signal_that_alone_turns_most_other_images_into_the_class_is_a_shortcut() -> None:
    # A partly biased model that also learned the object: removing the mark costs its class little,
    # yet the mark alone sends 70% of other classes' images to the class (sufficiency).
    level, why = judge(True, NO_COST, 0.05, flip=0.7)
    assert level == "shortcut" and "70%" in why and "sufficient" in why
    # A minority reaction stays a note; an unconfirmed stamp stays nothing, however large its flip.
    assert judge(True, NO_COST, 0.05, flip=0.37)[0] == "sensitivity"
    assert judge(False, NO_COST, 0.05, flip=0.9)[0] == "none"
    # annotate reads the flip from the candidate's stamp estimate.
    strong = {"confirmed": True, "removal": NO_COST, "flip": {"value": 0.55}}
    assert annotate(strong, 0.05) == "shortcut" and strong["confirmed"] is True


def test_a_minority_mark_is_a_shortcut_when_the_model_learned_that_very_mark() -> None:
    """Below sufficiency, a mark that beats a similar mark (same size, shape, colours, contrast) and
    whose removal costs the class confidence is a shortcut; a reaction to any such patch is not."""
    costs = {"effect": 0.22, "random_effect": 0.01, "n": 20, "removal": {"p_value": 0.001}}
    costs |= {"lost": 0.05, "random_lost": 0.0, "lost_p_value": 0.3}
    learned = {"flip": {"value": 0.1}, "p_value": 0.002, "excess": 0.3}
    level, why = judge(True, costs, 0.05, flip=0.4, similar=learned)
    assert level == "shortcut" and "this very mark" in why and "30%" in why
    # The demo's clean control: a solid square's similar mark is the square itself (excess 0).
    any_patch = {"flip": {"value": 0.32}, "p_value": 1.0, "excess": 0.0}
    assert judge(True, costs, 0.05, flip=0.32, similar=any_patch)[0] == "sensitivity"
    # Beating the similar mark is not enough when removing the mark costs the class nothing.
    assert judge(True, NO_COST, 0.05, flip=0.4, similar=learned)[0] == "sensitivity"
    # Nor a small excess, however significant.
    small = learned | {"excess": 0.05}
    assert judge(True, costs, 0.05, flip=0.4, similar=small)[0] == "sensitivity"
    # annotate reads the similar mark from the candidate.
    cand = {"confirmed": True, "removal": costs, "flip": {"value": 0.4}, "similar_mark": learned}
    assert annotate(cand, 0.05) == "shortcut"


def test_a_class_pattern_is_sufficient_only_when_its_removal_costs_the_class() -> None:
    """A class's mean detail can be its object's own: adding it alone may move most other images, yet
    a clean model loses little when it is taken off. A pattern needs that cost to be sufficient."""
    no_cost = {"value": 0.14, "null_mean": 0.17, "p_value": 0.06, "n": 12, "lost": 0.25, "random_lost": 0.1}
    no_cost |= {"lost_p_value": 0.2}
    content = {"confirmed": True, "statistic": "pattern", "removal": no_cost, "flip": {"value": 0.52}}
    assert annotate(content, 0.05) == "sensitivity"
    costs = no_cost | {"value": 0.3, "null_mean": 0.02, "p_value": 0.001}
    trigger = {"confirmed": True, "statistic": "pattern", "removal": costs, "flip": {"value": 0.6}}
    assert annotate(trigger, 0.05) == "shortcut" and "sufficient" in trigger["why"]
    # A statistic moved alone (a JPEG level) stays sufficient: removing a compression is not undone.
    jpeg = {"confirmed": True, "statistic": "blockiness", "removal": no_cost, "flip": {"value": 0.87}}
    assert annotate(jpeg, 0.05) == "shortcut"


def test_a_box_with_no_room_for_random_boxes_has_no_removal_null_and_is_no_error() -> None:
    """A moving mark's box that covers most of the image leaves no random box of its size overlapping
    it by at most a quarter: those images have no null, and with none left the removal does not run
    and severity says why (it used to meet a NaN and fail the whole audit)."""
    from torch import nn

    from auditors.audits.spurious_signal.nulls import Probe, removal_test

    class Dark(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([10 * (0.5 - x.mean((1, 2, 3))), torch.zeros(x.shape[0])], 1)

    probe = Probe(Dark(), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "mean", seed=0)
    images = torch.rand(4, 3, 32, 32) * 0.4
    big, small = (2, 2, 28, 28), (2, 2, 6, 6)
    none = removal_test(probe, images, 0, [big] * 4, n_random=8, seed=0)
    assert none["n"] == 0 and none["removal"] is None and none["n_random_boxes"] == 0
    level, why = judge(True, none, 0.05, flip=0.3)
    assert level == "sensitivity" and "no room" in why
    mixed = removal_test(probe, images, 0, [big, small, big, small], n_random=8, seed=0)
    assert mixed["n"] == 2 and mixed["n_random_boxes"] == 8 and mixed["random_lost"] == mixed["random_lost"]


def test_a_removal_cost_is_tested_on_the_evidence_where_confident_images_hide_it_in_p() -> None:
    """Nine carriers confident from their object too lose 1.7 nats each when the signal is taken off
    (0.995 to 0.97: a drop of 0.025 in p), one unsure carrier gains: the mean drop of p(class) is
    below its null, the log-odds show the cost."""
    from auditors.audits.spurious_signal.nulls import log_odds, whole_image_result

    def probs(p: list[float]) -> torch.Tensor:
        t = torch.tensor(p).view(-1, 1)
        return torch.cat([t, 1 - t], 1)

    before = probs([0.995] * 9 + [0.6])
    removed = probs([0.97] * 9 + [0.75])
    null = probs([0.995] * 9 + [0.5])
    moved = probs([0.9] * 10)
    out = whole_image_result(0, moved, probs([0.1] * 10), before, removed, null, seed=0)
    rem = out["removal"]
    assert rem["value"] < rem["null_mean"] + 0.01  # in p the cost is all but invisible
    assert rem["log_odds_drop"] > 1.0 and rem["log_odds_null"] < 0.1
    assert rem["p_value"] < 0.01
    assert torch.allclose(log_odds(torch.tensor([0.5, 0.99])), torch.tensor([0.0, 4.59512]), atol=1e-4)


def test_a_solid_mark_is_a_shortcut_only_when_it_is_sufficient() -> None:
    """The demo's clean control on one machine: its black square turned 34% of other images (17% for
    the nulls) and removing it made 6 of 24 circles leave the class (1% for random boxes). A model that
    reacts to any dark patch toward 'circle' does that; nothing about a solid mark tells it from one
    that learned it, so only sufficiency convicts a solid mark. The same loss on a mark with structure
    still does."""
    lost = {"effect": 0.26, "random_effect": 0.004, "n": 24, "removal": {"p_value": 0.0003}}
    lost |= {"lost": 0.25, "random_lost": 0.005, "lost_p_value": 0.016}
    solid = {"flip": {"value": 0.34}, "p_value": 1.0, "excess": 0.0, "solid": True}
    level, why = judge(True, lost, 0.05, flip=0.34, similar=solid)
    assert level == "sensitivity" and "one solid colour" in why and "25%" in why
    assert judge(True, lost, 0.05, flip=0.88, similar=solid)[0] == "shortcut"
    assert judge(True, lost, 0.05, flip=0.34, similar=solid | {"solid": False})[0] == "shortcut"
