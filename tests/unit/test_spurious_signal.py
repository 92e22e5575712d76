"""The spurious-signal audit against planted truth: a magenta square on class 0 ("circle").

Three tiny ResNets trained on the same task: the artifact on every circle, on half of them, and on
none. The audit must confirm the box (with a hint and by discovery) on the first, catch the second by
its counterfactual even where saliency on clean circles says nothing (PAIR 2022), and stay quiet on
the third, even though pasting a class's own object (its box at the image centre) flips other images.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from auditors.audits.context import AuditContext, ResolvedRegion
from auditors.audits.spurious_signal.audit import SpuriousConfig
from auditors.audits.spurious_signal.discovery import content_consistency
from auditors.regions import Region
from auditors.registry import get_auditor, parse_config
from auditors.report import AuditResult
from auditors.zoo.synthetic import artifact_patch
from tests.fixtures.models import Planted, get_planted

TASK = (
    "synthetic:shapes?classes=4&size=32&n=1600&artifact={a}&color=255,0,255&artifact_class=0"
    "&fraction={f}&seed=3"
)
ARCH, EPOCHS = "occulta_resnet_tiny", 10
BOX = (25, 25, 6, 6)  # the synthetic default box for 32 px: the bottom-right corner
FAST: dict[str, Any] = {"n_images": 96, "n_samples": 4, "steps": 8, "n_overlays": 2, "n_random_boxes": 6}


def _planted(artifact: str, fraction: float) -> Planted:
    return get_planted(ARCH, TASK.format(a=artifact, f=fraction), EPOCHS)


def _run(p: Planted, out: Path, hints: list[Region] | None = None, **config: Any) -> AuditResult:
    """Run the audit; `hints` come as the runner passes them (ctx.regions), `config` as a user writes it."""
    test = p.test
    ctx = AuditContext(
        model=p.model,
        images=test.images,  # type: ignore[attr-defined]
        labels=test.labels,  # type: ignore[attr-defined]
        mean=p.mean,
        std=p.std,
        class_names=test.class_names,  # type: ignore[attr-defined]
        out_dir=out,
        regions=hints or [],
        object_masks=config.pop("object_masks", None),
    )
    auditor = get_auditor("spurious_signal")
    result = auditor.run(ctx, SpuriousConfig.model_validate({**FAST, **config}))
    json.dumps(result.model_dump(mode="json"))  # the report must travel as JSON
    return result


def _iou(a: list[float], b: tuple[int, int, int, int]) -> float:
    ox = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    oy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ox * oy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _spurious(result: AuditResult) -> list[Any]:
    return [f for f in result.findings if f.kind == "spurious_region"]


def test_artifact_on_every_circle_is_confirmed_from_a_hint_with_an_artifact_file(tmp_path: Path) -> None:
    p = _planted("square", 1)
    png = io.BytesIO()
    Image.new("RGB", (12, 12), (255, 0, 255)).save(png, format="PNG")
    hint = {
        "name": "corner",
        "box": [25 / 32, 25 / 32, 6 / 32, 6 / 32],
        "artifact": base64.b64encode(png.getvalue()).decode(),
    }
    result = _run(p, tmp_path, discovery=False, regions=[hint])
    assert result.verdict == "fail"
    [finding] = _spurious(result)
    assert finding.class_name == "circle"
    assert finding.box == [25.0, 25.0, 6.0, 6.0]
    region = result.metrics["regions"]["corner"]
    assert region["stamp"] == "artifact"
    assert region["flip_rate"] >= 0.9  # a magenta square turns squares, triangles and crosses into circles
    assert region["removal_effect"] > region["random_box_effect_p90"] + 0.5
    assert region["top_k_pixels"] == 5  # 0.5% of 1024 pixels
    assert "circle" in region["flagged_by_saliency"]
    assert result.metrics["max_flip_rate"] >= 0.9
    assert finding.evidence["enrichment"] >= 10
    for art in result.artifacts:
        assert (tmp_path / art.path).is_file()


def test_artifact_on_every_circle_is_found_without_a_hint(tmp_path: Path) -> None:
    result = _run(_planted("square", 1), tmp_path)
    assert result.verdict == "fail"
    findings = _spurious(result)
    assert [f.class_name for f in findings] == ["circle"]
    assert _iou(findings[0].box or [], BOX) >= 0.5
    assert findings[0].evidence["flip_rate"] >= 0.9
    assert findings[0].evidence["content_consistency"] >= 0.95  # the same magenta square on every circle
    # Every candidate that was not confirmed failed a counterfactual or the content test: nothing is
    # reported on saliency alone.
    for cand in result.metrics["candidates"]:
        tests = (cand["confirmed_by_flip"], cand["confirmed_by_removal"], cand["confirmed_by_content"])
        assert cand["confirmed"] == all(tests)


def test_artifact_on_half_the_circles_is_caught_by_the_stamp_where_clean_saliency_is_silent(
    tmp_path: Path,
) -> None:
    p = _planted("square", 0.5)
    rgb, alpha = artifact_patch(p.test.spec)  # type: ignore[attr-defined]
    result = _run(p, tmp_path, hints=[ResolvedRegion("corner", BOX, rgb, alpha)], discovery=False)
    region = result.metrics["regions"]["corner"]
    assert result.verdict == "fail" and region["confirmed"]
    assert region["suspected_class"] == "circle" and region["flip_rate"] >= 0.5
    # The PAIR result: on images that do not carry the mark, saliency would not flag the box ...
    clean = region["methods"]["gradient_squared"]["without_artifact"]
    assert clean["share"] < 0.5 and clean["enrichment"] < 10
    # ... while on marked images it concentrates there.
    marked = region["methods"]["integrated_gradients"]["with_artifact"]
    assert marked["enrichment"] > 5 * max(clean["enrichment"], 0.1)


def test_artifact_on_half_the_circles_is_found_without_a_hint_and_the_objects_are_not(tmp_path: Path) -> None:
    p = _planted("square", 0.5)
    result = _run(p, tmp_path, object_masks=p.test.object_masks)  # type: ignore[attr-defined]
    findings = _spurious(result)
    assert [f.class_name for f in findings] == ["circle"]
    assert _iou(findings[0].box or [], BOX) >= 0.5
    # Consistency is measured where the box is decisive: the marked half, not all circles.
    assert findings[0].evidence["content_consistency"] >= 0.95
    assert findings[0].evidence["object_overlap"] == 0
    for cand in result.metrics["candidates"]:
        if cand["object_overlap"] >= 0.3:  # the box is largely the object: its content moves with it
            assert cand["content_consistency"] < 0.8 and not cand["confirmed"]


def test_content_consistency_tells_a_fixed_mark_from_a_moving_object() -> None:
    gen = torch.Generator().manual_seed(0)
    n, side = 40, 8

    def background() -> torch.Tensor:
        colour = torch.rand(n, 3, 1, 1, generator=gen) * 0.6 + 0.2
        return colour + 0.04 * torch.randn(n, 3, side, side, generator=gen)

    reference = background()
    marked = background()
    marked[:, :, 2:6, 2:6] = torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1)
    assert content_consistency(marked, reference) >= 0.95
    half = torch.cat([marked[: n // 2 + 2], background()[: n // 2 - 2]])
    assert content_consistency(half, reference) >= 0.95  # the 50% case: medians see the marked majority
    sparse = background()
    sparse[:, :, 0, :] = 0.0  # one row of eight pixels: 1/8 of the box
    assert content_consistency(sparse, reference) >= 0.9
    objects = background()
    for i in range(n):  # a 4-px square of random colour at a random place
        x, y = (int(v) for v in torch.randint(0, side - 3, (2,), generator=gen))
        objects[i, :, y : y + 4, x : x + 4] = torch.rand(3, 1, 1, generator=gen)
    assert content_consistency(objects, reference) < 0.3
    assert content_consistency(background(), reference) < 0.5  # the same kind of content: no signal


def test_model_without_artifact_raises_no_alarm_with_or_without_a_hint(tmp_path: Path) -> None:
    p = _planted("none", 1)
    rgb, alpha = artifact_patch(p.test.spec.with_(artifact="square"))  # type: ignore[attr-defined]
    hinted = _run(p, tmp_path / "hint", hints=[ResolvedRegion("corner", BOX, rgb, alpha)], discovery=False)
    assert hinted.verdict == "pass" and not _spurious(hinted)
    region = hinted.metrics["regions"]["corner"]
    assert region["flip_rate"] < 0.5 and not region["flagged_by_saliency"]
    masks = p.test.object_masks  # type: ignore[attr-defined]
    blind = _run(p, tmp_path / "blind", object_masks=masks)
    assert blind.verdict == "pass" and not _spurious(blind)
    assert all(not c["confirmed"] for c in blind.metrics["candidates"])
    assert all("content_consistency" in c and "object_overlap" in c for c in blind.metrics["candidates"])
    leak = blind.metrics["mask_leakage"]
    assert {"layer_mask", "black", "blur"} <= set(leak)
    assert all(0 <= v["object_removed"] <= 1 and "leak_vs_native" in v for v in leak.values())


def test_config_regions_accept_fractions_or_pixels_and_unknown_keys_are_refused() -> None:
    frac, px = (
        ResolvedRegion.of(r, 32, 32)
        for r in (
            Region(name="a", box=[0.5, 0.25, 0.25, 0.25]),
            Region(name="b", box=[3, 4, 5, 6], image_index=2),
        )
    )
    assert frac.box == (16, 8, 8, 8) and frac.image_index is None
    assert px.box == (3, 4, 5, 6) and px.image_index == 2
    with pytest.raises(ValueError, match="unknown saliency method"):
        parse_config("spurious_signal", {"methods": ["lrp"]})
    with pytest.raises(ValueError, match="extra"):
        parse_config("spurious_signal", {"regions": [{"name": "a", "box": [0, 0, 1, 1], "colour": "red"}]})


def test_per_image_region_is_judged_on_its_own_image(tmp_path: Path) -> None:
    p = _planted("square", 1)
    test = p.test
    idx = int(torch.nonzero(test.has_artifact)[0])  # type: ignore[attr-defined]
    result = _run(
        p,
        tmp_path,
        hints=[ResolvedRegion("this-image", BOX, image_index=idx)],
        discovery=False,
        methods=["integrated_gradients"],
        n_images=len(test.labels),  # type: ignore[attr-defined]
    )
    region = result.metrics["regions"]["this-image"]
    assert region["image_index"] == idx
    ig = region["methods"]["integrated_gradients"]
    assert sum(g["n"] for g in ig["per_predicted_class"].values()) == 1
    assert region["stamp"] == "box content of the class's images" and region["confirmed"]


def test_vit_runs_end_to_end_with_token_dropping(tmp_path: Path) -> None:
    """Smoke: the ViT path (token dropping, patch-sized windows) through discovery and its content test.

    A briefly trained ViT keeps this cheap; the full planted ViT (8 epochs on 1600 images) confirms the
    corner the same way but costs ~11 s.
    """
    p = get_planted("occulta_vit_tiny", TASK.format(a="square", f=1).replace("n=1600", "n=320"), 2)
    masks = p.test.object_masks  # type: ignore[attr-defined]
    result = _run(p, tmp_path, object_masks=masks, strategy="token_drop", candidate_min_effect=0.0)
    assert result.metrics["strategy"] == "token_drop" and result.metrics["patch_size"] == 8
    assert result.metrics["candidates"]
    for cand in result.metrics["candidates"]:
        assert cand["box"][2] == 16 and -10 < cand["content_consistency"] <= 1
        assert 0 <= cand["object_overlap"] <= 1
