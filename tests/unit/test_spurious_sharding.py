"""The spurious-signal audit split over shards gives exactly the single run's result.

A tiny ResNet trained with a magenta square on every circle (the planted shortcut of
test_spurious_signal): the audit with a hinted region, a per-image region, discovery, the colour-cast
test and every gradient method, run once and as uneven shards whose partials travel through JSON, must
agree to the last digit and still find the shortcut.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from auditors.audits.base import ShardMeta
from auditors.audits.context import AuditContext, ResolvedRegion
from auditors.audits.spurious_signal.config import SpuriousConfig
from auditors.audits.spurious_signal.saliency_pass import block_size
from auditors.registry import get_auditor
from auditors.report import AuditResult
from tests.fixtures.models import get_planted

TASK = (
    "synthetic:shapes?classes=4&size=32&n=1600&artifact=square&color=255,0,255&artifact_class=0"
    "&fraction=1&seed=3"
)
BOX = (25, 25, 6, 6)
CONFIG: dict[str, Any] = {
    "n_images": 96,
    "methods": ["gradient_squared", "smoothgrad", "integrated_gradients"],
    "n_samples": 3,
    "steps": 4,
    "n_overlays": 5,
    "n_random_boxes": 4,
}


def _context(out: Path) -> AuditContext:
    p = get_planted("occulta_resnet_tiny", TASK, 10)
    test: Any = p.test
    carrier = int(torch.nonzero(test.has_artifact)[0])
    return AuditContext(
        model=p.model,
        images=test.images,
        labels=test.labels,
        mean=p.mean,
        std=p.std,
        class_names=test.class_names,
        out_dir=out,
        regions=[ResolvedRegion("corner", BOX), ResolvedRegion("one-image", BOX, image_index=carrier)],
    )


def _comparable(result: AuditResult) -> dict[str, Any]:
    return result.model_dump(mode="json", exclude={"seconds"})


def test_uneven_shards_merge_into_the_single_run_and_still_find_the_shortcut(tmp_path: Path) -> None:
    audit = get_auditor("spurious_signal")
    config = SpuriousConfig.model_validate(CONFIG)
    whole = audit.run(_context(tmp_path / "whole"), config)
    ctx = _context(tmp_path / "shards")
    b = block_size(96)
    assert b > 1  # blocks of several images: the cut points below must respect them
    # Uneven, and cutting inside the overlay rows and between the tests' owners.
    ranges = [range(0, b), range(b, 20 * b), range(20 * b, 96)]
    assert [r.start for r in audit.plan_shards(ctx.n_images, config, 4)] == [0, 8 * b, 16 * b, 24 * b]
    partials = [json.loads(json.dumps(audit.run_shard(ctx, config, r))) for r in reversed(ranges)]
    assert sum(len(p["tests"]) for p in partials) == len({k for p in partials for k in p["tests"]})
    assert all(len(json.dumps(p)) < 200_000 for p in partials)  # summaries, not saliency maps
    merged = audit.merge(ShardMeta.from_context(ctx), config, partials)
    assert _comparable(merged) == _comparable(whole)
    assert merged.verdict == "fail"
    boxes = {(f.class_name, tuple(f.box or [])) for f in merged.findings if f.kind == "spurious_region"}
    assert ("circle", (25.0, 25.0, 6.0, 6.0)) in boxes
    assert merged.metrics["regions"]["one-image"]["confirmed"]
    for art in merged.artifacts:  # .npz files carry their write time; the rest must match byte for byte
        if art.path.endswith(".npz"):
            continue
        assert (tmp_path / "shards" / art.path).read_bytes() == (tmp_path / "whole" / art.path).read_bytes()


def test_a_shard_of_a_large_input_keeps_its_class_hotspots_small(tmp_path: Path) -> None:
    """At 224 px the per-class hotspot sums travel as thumbnails, so a shard's partial stays small
    whatever the input size, and the merged figure is drawn back at the input's size."""
    import timm

    import auditors.zoo.architectures  # noqa: F401  (registers the tiny architectures with timm)
    from auditors.audits.partials import unpack_arrays
    from auditors.audits.spurious_signal.saliency_pass import HOT_SIDE

    torch.manual_seed(0)
    model = timm.create_model("occulta_resnet_tiny", num_classes=3).eval()
    gen = torch.Generator().manual_seed(1)
    ctx = AuditContext(
        model=model,
        images=torch.rand(6, 3, 224, 224, generator=gen),
        labels=torch.tensor([0, 1, 2, 0, 1, 2]),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        class_names=["a", "b", "c"],
        out_dir=tmp_path,
    )
    audit = get_auditor("spurious_signal")
    cfg = SpuriousConfig.model_validate(
        {"n_images": 6, "methods": ["gradient"], "discovery": False, "global_test": False, "n_overlays": 1}
    )
    partials = [json.loads(json.dumps(audit.run_shard(ctx, cfg, r))) for r in audit.plan_shards(6, cfg, 2)]
    sizes = [len(json.dumps(p)) for p in partials]
    hot = [a["hot_sum"] for a in (unpack_arrays(p["saliency"]["arrays"]) for p in partials) if "hot_sum" in a]
    assert hot and all(max(h.shape[-2:]) <= HOT_SIDE for h in hot), [h.shape for h in hot]
    assert max(sizes) < 400_000, sizes
    merged = audit.merge(ShardMeta.from_context(ctx), cfg, partials)
    assert "class_hotspots" in [a.name for a in merged.artifacts]
