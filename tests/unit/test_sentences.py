"""Generated sentences read as English and never contradict the verdicts they are built from: every
combination of per-strategy verdicts and recommended strategy (issue: an EfficientNet report said
"Could not tell whether black, layer_mask bias explanations of this model; layer_mask is safe to use.")."""

from __future__ import annotations

import itertools
import re

import pytest

from auditors.audits.missingness_bias.sentences import either, meaning
from auditors.report import Verdict

STRATEGY_SETS = [["black"], ["black", "layer_mask"], ["black", "mean", "blur"], ["grey", "token_drop"]]
VERDICTS: list[Verdict] = ["pass", "fail", "inconclusive"]


def _cases() -> list[tuple[dict[str, Verdict], str | None]]:
    cases = []
    for strategies in STRATEGY_SETS:
        for combo in itertools.product(VERDICTS, repeat=len(strategies)):
            verdicts = dict(zip(strategies, combo, strict=True))
            for recommended in [None, *strategies]:
                cases.append((verdicts, recommended))
    return cases


def _named(text: str, strategy: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(strategy)}(?![\w-])", text) is not None


@pytest.mark.parametrize(("verdicts", "recommended"), _cases())
def test_the_missingness_meaning_agrees_with_every_strategys_verdict(
    verdicts: dict[str, Verdict], recommended: str | None
) -> None:
    text = meaning(verdicts, recommended, n=64, min_n=30)
    failing = [s for s, v in verdicts.items() if v == "fail"]
    undecided = [s for s, v in verdicts.items() if v == "inconclusive"]
    # Well formed: one sentence, no doubled punctuation, a list never glued with a bare comma.
    assert text.endswith(".") and ".." not in text and ";;" not in text and "  " not in text
    assert not re.search(r"whether \w+, \w+ bias", text)
    # Nothing called safe or to be used unless it passed.
    for s, v in verdicts.items():
        if v != "pass":
            assert f"use {s}." not in text and f"{s} passed" not in text and f"{s} is safe" not in text, text
            assert f"{s} is the recommended" not in text, text
    # Every failing strategy is named as unreliable; every undecided one (when none failed) as undecided.
    if failing:
        assert "unreliable" in text and all(_named(text, s) for s in failing), text
    elif undecided:
        assert text.startswith("Could not tell") and all(_named(text, s) for s in undecided), text
    else:
        assert text.startswith("Removing pixels does not bias"), text
    # A passing recommendation is always offered where something is in doubt.
    if recommended is not None and verdicts[recommended] == "pass" and (failing or undecided):
        assert _named(text, recommended), text


def test_too_few_images_says_so_whatever_the_verdicts() -> None:
    for verdicts, recommended in _cases():
        assert (
            meaning(verdicts, recommended, n=10, min_n=30)
            == "Too few images to tell (10 < 30): audit more images."
        )


def test_the_reported_efficientnet_sentence_no_longer_contradicts_itself() -> None:
    text = meaning({"black": "inconclusive", "layer_mask": "inconclusive"}, "layer_mask", n=64, min_n=30)
    assert text == (
        "Could not tell whether removing pixels with black or layer_mask biases explanations of this model; "
        "audit more images."
    )


def test_lists_read_as_english() -> None:
    assert [either(n) for n in (["a"], ["a", "b"], ["a", "b", "c"])] == ["a", "a or b", "a, b or c"]
