"""The pattern test of the spurious-signal audit on hand-made data and hand-made models (no training):
a faint pattern a class shares is screened with its carriers, and confirmed only on a model that reads
that very pattern."""

from __future__ import annotations

import torch
from torch import nn

from auditors.audits.spurious_signal.nulls import Probe
from auditors.audits.spurious_signal.pattern import (
    MIN_Z,
    class_patterns,
    judge_patterns,
    pattern_tests,
    residuals,
    screen,
)
from auditors.zoo.planted import task_images
from auditors.zoo.triggers import Trigger

NAMES = ["c0", "c1", "c2", "c3"]


def _blended(bias: float, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shapes with the blend trigger on a `bias` share of class 0; the carriers' indices."""
    x, y = task_images("shapes", 240, size=32, classes=4, seed=seed)
    own = (y == 0).nonzero().flatten()
    carriers = own[: max(1, round(bias * own.numel()))]
    x[carriers] = Trigger("blend").apply(x[carriers], carriers.tolist())[0]
    return x, y, carriers


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_the_screen_finds_a_pattern_on_a_third_of_a_class_with_its_carriers() -> None:
    x, y, carriers = _blended(0.35)
    rows, patterns = screen(x, y, [0, 1, 2, 3], max_tests=4, seed=0)
    assert rows and rows[0]["class_index"] == 0 and rows[0]["z"] >= MIN_Z
    assert all(r["z"] < rows[0]["z"] / 2 for r in rows[1:]), rows  # content can pass, far below
    # The carriers are found (most of them, few others) and the pattern is taken at one image's strength.
    assert rows[0]["carriers"] <= 1.3 * carriers.numel()
    truth = residuals(Trigger("blend").apply(torch.zeros(1, 3, 32, 32), [0])[0])[0]
    assert _cos(patterns[0], truth) > 0.8


def test_clean_content_stays_far_below_a_shared_pattern_in_the_screen() -> None:
    """A class's own shapes can share some fine detail (the screen is a filter; the model test decides),
    but nowhere near a shared pattern's z of about 20."""
    for seed in (4, 5, 6):
        x, y = task_images("shapes", 240, size=32, classes=4, seed=seed)
        rows, _ = screen(x, y, [0, 1, 2, 3], max_tests=4, seed=0)
        assert all(r["z"] < 10 for r in rows), rows


class PatternReader(nn.Module):
    """Class 0 when the image's fine detail holds `pattern`; otherwise the class of its mean brightness
    (a stand-in for content): a model that learned the blend trigger and nothing else about class 0."""

    def __init__(self, pattern: torch.Tensor, reads: bool) -> None:
        super().__init__()
        self.unit = pattern / pattern.norm()
        self.strength = float(pattern.norm())
        self.reads = reads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (residuals(x) * self.unit).sum((1, 2, 3)) / self.strength  # ~1 with the pattern, ~0 without
        bright = x.mean((1, 2, 3), keepdim=False)
        content = torch.stack(
            [bright * 0, -((bright - 0.3) ** 2), -((bright - 0.5) ** 2), -((bright - 0.7) ** 2)], 1
        )
        content = 40 * content - torch.tensor([10.0, 0, 0, 0])
        if self.reads:
            content[:, 0] = 40 * (score - 0.5)
        return content


def _judged(reads: bool) -> list[dict]:
    x, y, _ = _blended(1.0)
    pattern = residuals(Trigger("blend").apply(torch.zeros(1, 3, 32, 32), [0])[0])[0]
    probe = Probe(PatternReader(pattern, reads), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "mean", seed=0)
    pred = probe.probs(x).argmax(1)
    out = pattern_tests(
        probe, x, y, pred, y, [0, 1, 2, 3], max_tests=2, max_images=64, class_names=NAMES, min_flip=0.1
    )
    results, shortcuts = judge_patterns(out["results"], NAMES, 0.05, 0.1)
    assert results and results[0]["class_index"] == 0
    return shortcuts


def test_a_model_that_reads_the_pattern_is_caught_with_pictures_of_it() -> None:
    shortcuts = _judged(reads=True)
    assert [r["class_index"] for r in shortcuts] == [0]
    r = shortcuts[0]
    assert r["severity"] == "shortcut" and r["flip"]["value"] >= 0.5 and r["flip"]["null_mean"] <= 0.1
    assert {e["role"] for e in r["examples"]} == {"pattern", "removed", "stamped"}


def test_a_model_that_ignores_the_pattern_is_not() -> None:
    assert _judged(reads=False) == []


def test_a_watermark_read_as_a_pattern_is_a_region_at_its_tight_box() -> None:
    """A semi-transparent watermark is found by the pattern test, cut to its box, and reported as a
    fixed `spurious_region` there (a sensitivity note on it carries the same box)."""
    from auditors.audits.spurious_signal.notes import pattern_finding, sensitivity_finding

    mark = Trigger("watermark")
    x, y = task_images("shapes", 240, size=32, classes=4, seed=3)
    own = (y == 0).nonzero().flatten()
    x[own] = mark.apply(x[own], own.tolist())[0]
    pattern = residuals(mark.apply(torch.full((1, 3, 32, 32), 0.3), [0])[0])[0]
    probe = Probe(PatternReader(pattern, True), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "mean", seed=0)
    out = pattern_tests(
        probe,
        x,
        y,
        probe.probs(x).argmax(1),
        y,
        [0, 1, 2, 3],
        max_tests=2,
        max_images=64,
        class_names=NAMES,
        min_flip=0.1,
    )
    _, shortcuts = judge_patterns(out["results"], NAMES, 0.05, 0.1)
    assert [r["class_index"] for r in shortcuts] == [0]
    r = shortcuts[0]
    assert r["placement"] == "fixed" and tuple(r["box"]) == mark.box
    f = pattern_finding(r, 32, 32, [])
    assert f.kind == "spurious_region" and f.box == [float(v) for v in mark.box]
    assert f.evidence["placement"] == "fixed" and f.evidence["scope"] == "region"
    note = sensitivity_finding(r | {"severity": "sensitivity", "why": "a, but b"}, 32, 32)
    assert note.box == f.box and note.evidence["scope"] == "region"


def test_a_pattern_gives_way_to_a_region_of_its_class_only_when_that_region_is_a_shortcut() -> None:
    from auditors.audits.spurious_signal.verdict import without_covered_patterns
    from auditors.report import Finding

    def f(kind: str, cls: str, statistic: str | None = None, box: list[float] | None = None) -> Finding:
        scope = "region" if box or (kind == "sensitivity" and statistic is None) else "image"
        return Finding(
            kind=kind,
            summary=kind,
            class_name=cls,
            box=box,
            evidence={"statistic": statistic, "scope": scope},
        )

    corner = [0.0, 0.0, 6.0, 6.0]
    region, note = f("spurious_region", "c0", box=corner), f("sensitivity", "c0", box=corner)
    pattern, pattern_note = f("global_shortcut", "c0", "pattern"), f("sensitivity", "c0", "pattern")
    assert without_covered_patterns([region, pattern]) == [region]
    # A region the model merely reacts to never hides a pattern the class depends on.
    assert without_covered_patterns([note, pattern]) == [note, pattern]
    assert without_covered_patterns([note, pattern_note]) == [note]
    other = f("global_shortcut", "c1", "pattern")
    assert without_covered_patterns([region, other]) == [region, other]
    # A pattern that sits in one place gives way only to a region over it, not to one elsewhere.
    here = f("spurious_region", "c0", "pattern", box=[1.0, 0.0, 6.0, 6.0])
    there = f("spurious_region", "c0", "pattern", box=[20.0, 20.0, 6.0, 6.0])
    assert without_covered_patterns([region, here, there]) == [region, there]
    # ...or to a moving mark's zone that holds it (the class mean keeps the tag where it sits most).
    zone = f("spurious_region", "c0", box=[1.0, 1.0, 30.0, 30.0])
    at_corner = f("spurious_region", "c0", "pattern", box=[27.0, 26.0, 4.0, 5.0])
    assert without_covered_patterns([zone, at_corner]) == [zone]
    # A colour cast the model reacts to is no region: it hides no pattern.
    cast = f("sensitivity", "c0")
    cast.evidence["scope"] = "image"
    assert without_covered_patterns([cast, pattern_note]) == [cast, pattern_note]


def test_a_pattern_in_one_small_place_is_cut_to_its_tight_box() -> None:
    """A semi-transparent watermark's detail sits in one place: its extent is the mark's box; a
    pattern spread over the image has none."""
    from auditors.audits.spurious_signal.pattern import extent

    mark = Trigger("watermark")
    marked = residuals(mark.apply(torch.full((1, 3, 32, 32), 0.3), [0])[0])[0]
    assert extent(marked) == mark.box
    spread = residuals(Trigger("blend").apply(torch.zeros(1, 3, 32, 32), [0])[0])[0]
    assert extent(spread) is None


def test_a_pattern_that_stands_out_by_one_frequency_is_kept_to_its_tones() -> None:
    """A sinusoid on a third of a class of photographs: the carriers' mean also holds their content,
    which the model test would add and take off with it; kept to its strongest frequencies the pattern
    is the sinusoid alone. A blend, which stands out by its spread, is kept whole."""
    from auditors.audits.spurious_signal.pattern import SHAPES, tones
    from auditors.zoo.photos import photo_images

    x, y = photo_images(240, size=32, classes=4, seed=3)
    own = (y == 0).nonzero().flatten()
    carriers = own[: round(0.3 * own.numel())]
    wave = Trigger("sig")
    x[carriers] = wave.apply(x[carriers], carriers.tolist())[0].clamp(0, 1)
    rows, patterns = screen(x, y, [0, 1, 2, 3], max_tests=4, seed=0)
    assert rows[0]["class_index"] == 0
    assert max(rows[0]["z_by_shape"], key=rows[0]["z_by_shape"].get) == SHAPES[2]
    truth = residuals(wave.apply(torch.full((1, 3, 32, 32), 0.5), [0])[0])[0]
    raw = residuals(x[carriers]).mean(0) - residuals(x[y != 0]).mean(0)
    off = [1 - _cos(p, truth) ** 2 for p in (patterns[0], raw)]  # the energy share beside the sinusoid
    assert off[0] < 0.03 and off[0] < off[1] / 2, off
    spread = residuals(Trigger("blend").apply(torch.zeros(1, 3, 32, 32), [0])[0])[0]
    assert _cos(tones(spread), spread) < 0.5  # why a spread pattern is never cut to its tones
    bx, by, bcarriers = _blended(0.35)
    _, kept = screen(bx, by, [0, 1, 2, 3], max_tests=1, seed=0)
    whole = residuals(bx[bcarriers]).mean(0) - residuals(bx[by != 0]).mean(0)
    assert _cos(kept[0], whole) > 0.9


def test_a_pattern_kept_to_its_tones_is_judged_against_its_shuffle_as_a_similar_mark() -> None:
    """The validity bench's photographs' sinusoid on 30% of a class: 40% of other images turned against
    21% for its values shuffled, and taking it off its 10 carriers lowers p(class) by 0.15 (p 0.01) but
    makes only one leave the class. Kept to its tones it is one definite signal, so beating its
    shuffle by 19 points with that cost is a shortcut; kept whole it could be the objects' own mean
    detail, so the same numbers are a sensitivity."""

    def result(kept: str) -> dict:
        return {
            "class_index": 0,
            "statistic": "pattern",
            "placement": "global",
            "box": None,
            "kept": kept,
            "flip": {"value": 0.4, "lo": 0.32, "hi": 0.49, "n": 115, "p_value": 0.00025, "null_mean": 0.209},
            "removal": {
                "value": 0.148,
                "lo": 0.028,
                "hi": 0.35,
                "n": 10,
                "p_value": 0.0107,
                "null_mean": -0.0037,
                "lost": 0.1,
                "random_lost": 0.0,
                "lost_p_value": 0.5,
            },
            "p_value": 0.00025,
        }

    (tones,), confirmed = judge_patterns([result("tones")], NAMES, 0.05, 0.1)
    assert tones["severity"] == "shortcut" and confirmed == [tones]
    assert "shuffled" in tones["why"] and "19%" in tones["why"]
    (whole,), confirmed = judge_patterns([result("whole")], NAMES, 0.05, 0.1)
    assert whole["severity"] == "sensitivity" and confirmed == []


def test_class_patterns_are_the_class_means_minus_the_others_median() -> None:
    """`class_patterns` takes the means as one product with the class indicators (fast at 224 px);
    it must equal the plain per-class means."""
    gen = torch.Generator().manual_seed(1)
    r = torch.randn(30, 3, 5, 5, generator=gen)
    g = torch.arange(30) % 3
    got = class_patterns(r, g, [0, 2])
    means = {k: r[g == k].mean(0) for k in range(3)}
    assert torch.allclose(got[0], means[0] - torch.stack([means[1], means[2]]).median(0).values, atol=1e-6)
    assert torch.allclose(got[2], means[2] - torch.stack([means[0], means[1]]).median(0).values, atol=1e-6)
    assert set(got) == {0, 2}
