"""Marks that move (`motif`, `moving`) on hand-made data and hand-made models (no training): a tag in a
different corner of each image is found with its size and places, a fixed mark is left to the content
search, and the audit fails only a model that reads the tag."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from auditors.audits.spurious_signal.motif import find_motifs, heat_map
from auditors.report import AuditResult
from tests.fixtures.audits import run_spurious

K, S, PER_CLASS = 4, 32, 40
TAG = torch.tensor([[0.1] * 4, [0.1, 1.0, 0.1, 0.1], [0.1, 1.0, 0.1, 0.1], [0.1, 1.0, 1.0, 0.1], [0.1] * 4])


def _images(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy backgrounds of random colour, classes balanced."""
    gen = torch.Generator().manual_seed(seed)
    n = K * PER_CLASS
    colours = torch.rand(n, 3, 1, 1, generator=gen) * 0.5 + 0.3
    return (colours + torch.randn(n, 3, S, S, generator=gen) * 0.05).clamp(0, 1), torch.arange(n) % K


def _tagged(bias: float, moving: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """The tag (a white L on a dark 4 x 5 plate) on a `bias` share of class 0, in a corner drawn per image
    and jittered by up to 2 px (or always at one place); returns the images, labels and places."""
    images, labels = _images()
    gen = torch.Generator().manual_seed(1)
    own = (labels == 0).nonzero().flatten()
    places = []
    for i in own[: round(bias * own.numel())].tolist():
        corner = int(torch.randint(4, (1,), generator=gen)) if moving else 3
        jx, jy = (int(v) for v in torch.randint(3, (2,), generator=gen)) if moving else (0, 0)
        x = 1 + jx if corner in (0, 2) else S - 4 - 1 - jx
        y = 1 + jy if corner in (0, 1) else S - 5 - 1 - jy
        images[i, :, y : y + 5, x : x + 4] = TAG
        places.append((x, y))
    return images, labels, places


def test_a_tag_in_another_corner_of_each_image_is_found_with_its_size_and_places() -> None:
    images, labels, places = _tagged(0.5)
    motifs, null = find_motifs(images, labels, K, min_group=8, alpha=0.05, n_perm=20, seed=0)
    assert [m.class_index for m in motifs] == [0], (motifs, null)
    m = motifs[0]
    assert m.size == (4, 5) and m.share == 0.5 and m.others_share == 0.0
    assert sorted(m.positions) == sorted(places)
    assert sum(map(sum, heat_map(m, S, S))) == len(places)
    assert m.zone[2] >= 24 and m.zone[3] >= 24  # it occupies the four corners


def test_a_mark_at_one_place_is_left_to_the_content_search() -> None:
    images, labels, _ = _tagged(1.0, moving=False)
    motifs, _ = find_motifs(images, labels, K, min_group=8, alpha=0.05, n_perm=20, seed=0)
    assert motifs == []


def test_plain_images_have_no_moving_mark() -> None:
    images, labels = _images(seed=3)
    motifs, _ = find_motifs(images, labels, K, min_group=8, alpha=0.05, n_perm=20, seed=0)
    assert motifs == []


class _ReadsTag(nn.Module):
    """Class 0 when a bright pixel sits on a dark one anywhere (the tag's stroke on its plate), else the
    class of its mean colour: a model that learned the tag wherever it is."""

    def __init__(self, reads: bool) -> None:
        super().__init__()
        self.reads = reads
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 0.25 + 0.5  # undo the probe's normalisation
        grey = x.mean(1, keepdim=True)
        logits = torch.zeros(x.shape[0], K)
        logits[torch.arange(x.shape[0]), 1 + x.mean((2, 3)).argmax(1)] = 4.0
        if self.reads:
            dark = -torch.nn.functional.max_pool2d(-grey, 3, stride=1, padding=1)  # darkest neighbour
            stroke = ((grey > 0.9) & (dark < 0.2)).flatten(1).any(1).float()
            logits[:, 0] = 8.0 * stroke
        return logits + self.w + 1e-3 * x.mean((1, 2, 3)).unsqueeze(1)


def _audit(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, out: Path) -> AuditResult:
    return run_spurious(model, images, labels, out, K)


def test_the_audit_fails_a_model_that_reads_the_moving_tag_with_a_moving_finding(tmp_path: Path) -> None:
    images, labels, _ = _tagged(0.5)
    result = _audit(_ReadsTag(True), images, labels, tmp_path)
    moving = [
        f for f in result.findings if f.kind == "spurious_region" and f.evidence["placement"] == "moving"
    ]
    assert result.verdict == "fail" and [f.class_name for f in moving] == ["c0"], result.findings
    ev = moving[0].evidence
    assert ev["mark_size"] == [4, 5] and ev["removal"]["lost_class"] > ev["removal"]["random_lost_class"]
    assert "moves from image to image" in moving[0].summary
    assert {e["role"] for e in ev["examples"]} == {"in_class", "stamped", "removed"}
    assert all((tmp_path / e["image"]).is_file() for e in ev["examples"])


def test_the_audit_passes_a_model_that_ignores_it(tmp_path: Path) -> None:
    images, labels, _ = _tagged(0.5)
    result = _audit(_ReadsTag(False), images, labels, tmp_path)
    assert result.verdict == "pass", result.findings
    assert [c["class"] for c in result.metrics["moving"]] == ["c0"]  # tested, not confirmed


def test_images_whose_patches_never_repeat_have_no_moving_mark() -> None:
    """Uniform noise: no 3 x 3 code is in two images, so the search has nothing to test (and does not
    fail on an empty set of codes)."""
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.rand(40, 3, 24, 24, generator=gen), torch.arange(40) % K
    motifs, null = find_motifs(images, labels, K, min_group=8, alpha=0.05, n_perm=20, seed=0)
    assert motifs == [] and null["observed_max"] == 0.0


def test_a_ruler_s_span_covers_the_whole_ruler_in_each_image() -> None:
    """A ruler's ticks repeat along it, so the mark grown from one code is one stretch of it; the span
    (every place the code occurs) is the ruler itself, whatever its start and length."""
    from auditors.zoo.triggers import Trigger

    images, labels = _images()
    own = (labels == 0).nonzero().flatten()
    ruled, truth = Trigger("ruler").apply(images[own], own.tolist())
    images[own] = ruled
    motifs, _ = find_motifs(images, labels, K, min_group=8, alpha=0.05, n_perm=20, seed=0)
    assert motifs and motifs[0].class_index == 0
    m = motifs[0]
    boxes = dict(zip(own.tolist(), truth, strict=True))
    carriers = m.carriers.nonzero().flatten().tolist()
    assert len(carriers) >= 0.9 * own.numel()

    def cover(span: tuple[int, int, int, int], ruler: tuple[int, int, int, int]) -> float:
        x, y, w, h = span
        rx, ry, rw, rh = ruler
        ix = max(0, min(x + w, rx + rw) - max(x, rx))
        iy = max(0, min(y + h, ry + rh) - max(y, ry))
        return ix * iy / (rw * rh)

    spans = [cover(s, boxes[i]) for s, i in zip(m.spans, carriers, strict=True)]
    marks = [cover(b, boxes[i]) for b, i in zip(m.boxes(), carriers, strict=True)]
    assert sum(spans) / len(spans) >= 0.9 > sum(marks) / len(marks)
