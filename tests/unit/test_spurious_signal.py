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
from auditors.audits.spurious_signal.config import SpuriousConfig
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
    # A magenta square turns squares, triangles and crosses into circles.
    assert region["flip"]["value"] >= 0.9
    assert region["flip"]["p_value"] < 0.05 and region["flip"]["n"] >= 50
    assert region["removal"]["effect"] > region["removal"]["random_effect"] + 0.5
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
    assert findings[0].evidence["flip"]["value"] >= 0.9
    assert findings[0].evidence["content"]["strength"] >= 0.95  # the same magenta square on every circle
    # A candidate is confirmed exactly when its corrected stamp p-value and its excess flip say so.
    for cand in result.metrics["candidates"]:
        assert cand["confirmed"] == (cand["flip"]["p_value"] < 0.05 and cand["excess_flip"] >= 0.1)


def test_artifact_on_half_the_circles_is_caught_by_the_stamp_where_clean_saliency_is_silent(
    tmp_path: Path,
) -> None:
    p = _planted("square", 0.5)
    rgb, alpha = artifact_patch(p.test.spec)  # type: ignore[attr-defined]
    result = _run(p, tmp_path, hints=[ResolvedRegion("corner", BOX, rgb, alpha)], discovery=False)
    region = result.metrics["regions"]["corner"]
    assert result.verdict == "fail" and region["confirmed"]
    assert region["class"] == "circle" and region["flip"]["value"] >= 0.5
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
    # The mark is on about half the circles: its signature says so, and only its carriers are removed.
    assert 0.3 <= findings[0].evidence["content"]["strength"] <= 0.7
    assert findings[0].evidence["removal"]["n"] == findings[0].evidence["content"]["n_carriers"]
    assert all(c["box"] == list(BOX) for c in result.metrics["candidates"] if c["confirmed"])


def test_model_without_artifact_raises_no_alarm_with_or_without_a_hint(tmp_path: Path) -> None:
    p = _planted("none", 1)
    rgb, alpha = artifact_patch(p.test.spec.with_(artifact="square"))  # type: ignore[attr-defined]
    hinted = _run(p, tmp_path / "hint", hints=[ResolvedRegion("corner", BOX, rgb, alpha)], discovery=False)
    assert hinted.verdict == "pass" and not _spurious(hinted)
    region = hinted.metrics["regions"]["corner"]
    assert region["flip"]["value"] < 0.5 and not region["confirmed"] and not region["flagged_by_saliency"]
    masks = p.test.object_masks  # type: ignore[attr-defined]
    blind = _run(p, tmp_path / "blind", object_masks=masks)
    assert blind.verdict == "pass" and not _spurious(blind)
    assert all(not c["confirmed"] for c in blind.metrics["candidates"])
    assert all("content" in c and "flip" in c for c in blind.metrics["candidates"])
    # No class of the clean data is tinted beyond chance, so no colour cast goes to the model test.
    screen = blind.metrics["colour_screen"]
    assert len(screen["z"]) == 4 and all(z < screen["min_z"] for z in screen["z"].values())
    # The pass says how faint a cast would escape the screen at this sample.
    assert set(screen["resolution"]) == set(screen["z"]) and all(r > 0 for r in screen["resolution"].values())
    assert "cannot show at this sample" in blind.summary
    assert not any(g["confirmed"] for g in blind.metrics["global"]) and blind.metrics["out_of_scope"]
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
    assert region["stamp"] == f"box content of image {idx}" and region["confirmed"]


def test_vit_runs_end_to_end_with_token_dropping(tmp_path: Path) -> None:
    """Smoke: the ViT path (token dropping) through discovery, its stamp and removal tests.

    A briefly trained ViT keeps this cheap; the full planted ViT (8 epochs on 1600 images) confirms the
    corner the same way but costs ~11 s.
    """
    p = get_planted("occulta_vit_tiny", TASK.format(a="square", f=1).replace("n=1600", "n=320"), 2)
    masks = p.test.object_masks  # type: ignore[attr-defined]
    result = _run(p, tmp_path, object_masks=masks, strategy="token_drop")
    assert result.metrics["strategy"] == "token_drop" and result.metrics["patch_size"] == 8
    [cand] = [c for c in result.metrics["candidates"] if c["class"] == "circle"]
    assert cand["box"] == list(BOX)  # the magenta square's own box, found from its content
    assert 0 <= cand["flip"]["lo"] <= cand["flip"]["value"] <= cand["flip"]["hi"] <= 1


def test_a_model_that_predicts_one_class_everywhere_leaves_that_class_untestable_not_a_crash(tmp_path):
    """When every image is predicted as class c, no image is left to stamp c's colour cast onto: that
    test has n = 0 and cannot confirm anything (a random-weight model in the scaling bench did this)."""
    import timm

    import auditors.zoo.architectures  # noqa: F401  (registers the tiny architectures with timm)
    from auditors.registry import get_auditor, parse_config
    from auditors.zoo.synthetic import generate, parse_synthetic

    torch.manual_seed(0)
    model = timm.create_model("occulta_resnet_tiny", num_classes=4).eval()
    with torch.no_grad():
        model.get_classifier().bias[1] += 8.0  # 'square' wins on every image
    data = generate(parse_synthetic("synthetic:shapes?classes=4&size=32&n=64&seed=3"))
    ctx = AuditContext(
        model=model,
        images=data.images,
        labels=data.labels,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        class_names=["circle", "square", "triangle", "cross"],
        out_dir=tmp_path,
    )
    cfg = parse_config("spurious_signal", {"n_images": 64, "methods": ["gradient"]})
    result = get_auditor("spurious_signal").run(ctx, cfg)
    # Every whole-image test that reached 'square' had no image to move (the colour test screens it
    # first: its mean colour is no more tinted than chance).
    assert "square" in result.metrics["colour_screen"]["z"]
    tested = [
        g for key in ("global", "lowlevel", "patterns") for g in result.metrics[key] if g["class"] == "square"
    ]
    assert all(g["n"] == 0 and g["flip"]["n"] == 0 for g in tested), tested
    assert result.verdict == "pass", result.summary
