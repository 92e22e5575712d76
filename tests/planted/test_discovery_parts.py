"""The parts of spurious-signal discovery on hand-made data and hand-made models (no training).

Content: a fixed mark must be found with its exact box at every bias level down to a third of the
class, in any shape (square, thin bar, strokes of a glyph), and an object that moves and changes
colour must not. Stamp and global tests: a model that reads the mark is caught; one that does not,
is not.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from auditors.audits.spurious_signal.boxes import iou, merge_groups, touches
from auditors.audits.spurious_signal.content import find_signatures
from auditors.audits.spurious_signal.discover import DiscoverySettings, find_candidates, signature_summary
from auditors.audits.spurious_signal.global_shift import colour_shift_test
from auditors.audits.spurious_signal.nulls import Probe, stamp_test
from auditors.report import AuditResult
from tests.fixtures.audits import run_spurious

K, S, PER_CLASS = 4, 32, 40


def _plain(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain backgrounds of random colour with pixel noise, classes balanced."""
    gen = torch.Generator().manual_seed(seed)
    n = K * PER_CLASS
    colours = torch.rand(n, 3, 1, 1, generator=gen) * 0.6 + 0.2
    images = (colours + torch.randn(n, 3, S, S, generator=gen) * 0.04).clamp(0, 1)
    return images, torch.arange(n) % K


def _mark(images: torch.Tensor, who: torch.Tensor, box: tuple[int, int, int, int], alpha=None):
    x, y, w, h = box
    a = torch.ones(h, w, dtype=torch.bool) if alpha is None else alpha
    region = images[who, :, y : y + h, x : x + w]
    images[who, :, y : y + h, x : x + w] = torch.where(a, torch.zeros_like(region), region)


def _carriers(labels: torch.Tensor, bias: float) -> torch.Tensor:
    own = (labels == 0).nonzero().flatten()
    who = torch.zeros_like(labels, dtype=torch.bool)
    who[own[: round(bias * own.numel())]] = True
    return who


def test_constant_patch_on_plain_background_is_a_signature_with_its_exact_box():
    images, labels = _plain()
    _mark(images, labels == 0, (20, 22, 4, 4))
    sigs, null = find_signatures(images, labels, K, min_group=8, seed=0)
    assert [(s.class_index, s.box) for s in sigs] == [(0, (20, 22, 4, 4))]
    assert sigs[0].strength > null["threshold"]
    assert torch.allclose(sigs[0].rgb, torch.zeros(3, 4, 4), atol=0.05)


def test_mark_on_a_third_or_half_of_the_class_is_still_found():
    for bias in (0.3, 0.5):
        images, labels = _plain(seed=1)
        who = _carriers(labels, bias)
        _mark(images, who, (1, 1, 5, 5))
        sigs, _ = find_signatures(images, labels, K, min_group=8, seed=0)
        assert sigs and sigs[0].box == (1, 1, 5, 5) and sigs[0].class_index == 0, bias
        assert int(sigs[0].carriers.sum()) == int(who.sum())


def test_thin_bar_and_glyph_strokes_come_back_as_one_tight_box():
    images, labels = _plain(seed=2)
    _mark(images, labels == 0, (10, 29, 11, 2))
    glyph = torch.zeros(5, 7, dtype=torch.bool)
    glyph[0, :3] = glyph[:, 1] = glyph[:, 4] = glyph[4, 4:] = True
    _mark(images, labels == 1, (2, 12, 7, 5), glyph)
    sigs, _ = find_signatures(images, labels, K, min_group=8, seed=0)
    boxes = sorted((s.class_index, s.box) for s in sigs)
    assert boxes == [(0, (10, 29, 11, 2)), (1, (2, 12, 7, 5))]


def test_an_object_that_moves_and_changes_colour_is_not_a_signature():
    images, labels = _plain(seed=3)
    gen = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    for i in (labels == 0).nonzero().flatten().tolist():
        cx, cy = (torch.rand(2, generator=gen) * 12 + 10).tolist()
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= 36
        images[i] = torch.where(disc, torch.rand(3, 1, 1, generator=gen), images[i])
    sigs, null = find_signatures(images, labels, K, min_group=8, seed=0)
    assert sigs == [], (null, [s.box for s in sigs])


def test_box_geometry_and_merging():
    assert iou((0, 0, 4, 4), (0, 0, 4, 4)) == 1.0
    assert iou((0, 0, 4, 4), (2, 0, 4, 4)) == 8 / 24
    assert touches((0, 0, 4, 4), (5, 0, 2, 2)) and not touches((0, 0, 4, 4), (6, 0, 2, 2))
    groups = merge_groups([(0, (0, 0, 4, 4)), (1, (4, 0, 4, 4)), (0, (10, 0, 2, 2)), (0, (4, 3, 6, 1))])
    assert groups == [[0, 2, 3], [1]]


class _ReadsPixel(nn.Module):
    """Class 0 when pixel (21, 23) is dark, else the class of the image's brightest channel mod K."""

    def __init__(self, use_mark: bool) -> None:
        super().__init__()
        self.use_mark = use_mark
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 0.25 + 0.5  # undo the probe's normalisation
        logits = torch.zeros(x.shape[0], K)
        logits[torch.arange(x.shape[0]), 1 + x.mean((2, 3)).argmax(1)] = 4.0
        if self.use_mark:
            logits[:, 0] = 8.0 * (x[:, :, 23, 21].mean(1) < 0.1).float()
        return logits + self.w + 1e-3 * x.mean((1, 2, 3)).unsqueeze(1)  # differentiable, for saliency


def _probe(model: nn.Module) -> Probe:
    return Probe(model, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "blur", seed=0)


def _audit(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, out: Path, **config: object
) -> AuditResult:
    return run_spurious(model, images, labels, out, K, **config)


def test_stamp_test_catches_a_model_that_reads_the_mark_and_clears_one_that_does_not():
    images, labels = _plain()
    rgb, alpha = torch.zeros(3, 4, 4), torch.ones(4, 4, dtype=torch.bool)
    others, donors = images[labels != 0][:60], images[labels != 0][60:]
    used = stamp_test(_probe(_ReadsPixel(True)), others, donors, 0, (20, 22, 4, 4), rgb, alpha, seed=0)
    assert used["flip"]["value"] == 1.0 and used["p_value"] < 0.001 and used["n"] == 60
    assert used["null_flip"]["value"] == 0.0
    unused = stamp_test(_probe(_ReadsPixel(False)), others, donors, 0, (20, 22, 4, 4), rgb, alpha, seed=0)
    assert unused["flip"]["value"] == 0.0 and unused["p_value"] > 0.05


def test_the_audit_confirms_the_used_mark_with_statistics_and_nothing_on_a_model_that_ignores_it(tmp_path):
    images, labels = _plain()
    _mark(images, _carriers(labels, 0.5), (20, 22, 4, 4))
    for use, expected in ((True, "fail"), (False, "pass")):
        result = _audit(_ReadsPixel(use), images, labels, tmp_path / str(use), global_test=False)
        cands = result.metrics["candidates"]
        assert len(cands) == 1 and result.verdict == expected, result.findings
        assert len([f for f in result.findings if f.kind == "spurious_region"]) == (expected == "fail")
    cand = cands[0]
    assert cand["box"] == [20, 22, 4, 4] and cand["correction"] == "holm over 1 candidates"
    assert {"value", "lo", "hi", "n", "p_value"} <= set(cand["flip"])


class _ReadsRed(nn.Module):
    """Class 0 when the image is reddish (red 0.075 above the other channels), else class 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 0.25 + 0.5
        red = x[:, 0].mean((1, 2)) - x[:, 1:].mean((1, 2, 3)) - 0.075
        zero = torch.zeros_like(red)
        return torch.stack([red * 100, zero, zero, zero], 1)


def test_colour_cast_of_one_class_is_caught_by_the_global_test_and_not_on_another_class():
    gen = torch.Generator().manual_seed(0)
    grey = torch.rand(K * PER_CLASS, 1, 1, 1, generator=gen) * 0.6 + 0.2
    images = (grey + torch.randn(K * PER_CLASS, 3, S, S, generator=gen) * 0.04).clamp(0, 1)
    labels = torch.arange(K * PER_CLASS) % K
    images[labels == 0, 0] = (images[labels == 0, 0] + 0.15).clamp(0, 1)
    probe = _probe(_ReadsRed())
    pred = probe.probs(images).argmax(1)
    tinted = colour_shift_test(probe, images, labels, pred, labels, 0, max_images=100, seed=0)
    assert tinted["flip"]["value"] - tinted["flip"]["null_mean"] > 0.3 and tinted["p_value"] < 0.001
    plain = colour_shift_test(probe, images, labels, pred, labels, 1, max_images=100, seed=0)
    assert plain["flip"]["value"] - plain["flip"]["null_mean"] < 0.1


def test_report_gives_one_spurious_region_with_examples_estimates_and_a_clean_sentence(tmp_path):
    from auditors.audits.spurious_signal.findings import num

    images, labels = _plain()
    _mark(images, labels == 0, (20, 22, 4, 4))
    result = _audit(_ReadsPixel(True), images, labels, tmp_path)
    # One finding for the mark: its fine detail is also a shared pattern, which the region covers.
    findings = [f for f in result.findings if f.kind in ("spurious_region", "global_shortcut")]
    assert [(f.kind, f.class_name, f.box) for f in findings] == [
        ("spurious_region", "c0", [20.0, 22.0, 4.0, 4.0])
    ]
    ev = findings[0].evidence
    assert set(ev["removal"]) == {"effect", "random_effect", "n", "lost_class", "random_lost_class"}
    assert (
        ev["removal"]["n"] == PER_CLASS and ev["removal"]["lost_class"] > ev["removal"]["random_lost_class"]
    )
    assert {"value", "lo", "hi", "n", "p_value"} <= set(ev["flip"])
    roles = {e["role"] for e in ev["examples"]}
    assert roles == {"in_class", "stamped", "removed"}
    assert all((tmp_path / e["image"]).is_file() for e in ev["examples"]), ev["examples"][0]["image"]
    stamped = [e for e in ev["examples"] if e["role"] == "stamped"]
    assert all(e["pred_after"] == "c0" for e in stamped)
    text = findings[0].summary
    assert "-0.00" not in text and text.count("[20, 22, 4, 4]") == 1
    assert result.metrics["out_of_scope"] and result.metrics["candidates"][0]["confirmed"]
    assert num(-0.001) == "0.00" and num(-0.5) == "-0.50"


def test_hinted_region_is_judged_against_the_null_so_a_half_used_mark_is_confirmed():
    from auditors.audits.spurious_signal.discover import region_test

    images, labels = _plain()
    _mark(images, _carriers(labels, 0.5), (20, 22, 4, 4))
    names = [f"c{i}" for i in range(K)]
    black = (torch.zeros(3, 4, 4), None)
    probe = _probe(_ReadsPixel(True))
    pred = probe.probs(images).argmax(1)
    for artifact in (black, None):
        hit = region_test(probe, images, pred, labels, names, (20, 22, 4, 4), artifact)
        assert hit["confirmed"] and hit["class"] == "c0" and hit["correction"] == "holm over 4 classes"
    elsewhere = region_test(probe, images, pred, labels, names, (2, 2, 4, 4), black)
    assert not elsewhere["confirmed"]


def test_scattered_fixed_pixels_merge_into_one_candidate_box():
    images, labels = _plain(seed=4)
    dots = torch.zeros(6, 6, dtype=torch.bool)
    for py, px in ((0, 0), (5, 5), (0, 5), (5, 0), (3, 3)):
        dots[py, px] = True
    _mark(images, labels == 0, (25, 25, 6, 6), dots)
    names = [f"c{i}" for i in range(K)]
    found = find_candidates(images, labels, labels, names, DiscoverySettings(n_perm=50, global_test=False), 0)
    summaries = [signature_summary(g, found.counts) for g in found.signatures]
    assert [c["box"] for c in summaries] == [[25, 25, 6, 6]]
    assert summaries[0]["content"]["n_pixels"] == 5


def test_audit_on_too_few_images_per_class_is_inconclusive_not_a_pass(tmp_path):
    images, labels = _plain()
    result = _audit(_ReadsPixel(True), images[:12], labels[:12], tmp_path)
    assert result.verdict == "inconclusive" and "Too few images" in result.summary
    assert result.metrics["untested_classes"] == ["c0", "c1", "c2", "c3"]


def test_the_spurious_verdict_rests_on_a_stamp_flip_estimate_with_n_and_interval() -> None:
    from auditors.audits.spurious_signal.verdict import meaning as _meaning
    from auditors.audits.spurious_signal.verdict import strongest_effect as _strongest_effect

    weak = {
        "class": "a",
        "flip": {"value": 0.1, "lo": 0.05, "hi": 0.2, "n": 40, "p_value": 0.4},
        "null_flip": {"value": 0.08},
        "excess_flip": 0.02,
        "correction": "holm over 2 candidates",
    }
    strong = {
        "class": "b",
        "flip": {"value": 0.7, "lo": 0.6, "hi": 0.8, "n": 40, "p_value": 0.001},
        "null_flip": {"value": 0.1},
        "excess_flip": 0.6,
        "confirmed": True,
        "correction": "holm over 2 candidates",
    }
    est = _strongest_effect([weak, strong], confirmed=[strong])
    assert est is not None and est["value"] == 0.7 and est["n"] == 40 and est["lo"] < 0.7 < est["hi"]
    assert est["null_mean"] == 0.1 and "'b'" in est["statistic"]
    assert _strongest_effect([weak], confirmed=[])["value"] == 0.1  # type: ignore[index]
    assert _strongest_effect([], confirmed=[]) is None
    assert "retrain" in _meaning("fail", []) and "more images" in _meaning("inconclusive", [])
