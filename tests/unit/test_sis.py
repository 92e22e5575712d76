"""BackSelect, SIS and the overinterpretation audit (docs/audits.md, "SIS and overinterpretation"), checked against planted truths."""

from __future__ import annotations

import json
import math

import pytest
import torch

from auditors.audits.base import ShardMeta
from auditors.audits.context import AuditContext
from auditors.audits.sis.config import SISConfig
from auditors.audits.sis.controls import random_subsets
from auditors.engine import masked_logits, normalize
from auditors.methods.backselect import (
    BackSelectResult,
    backselect,
    backselect_subset,
    gradient_backselect,
    sis_from_order,
    step_sizes,
    subset_keep,
)
from auditors.registry import get_auditor, parse_config

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
PIXELS_REF = "synthetic:shapes?classes=2&size=16&n=600&artifact=pixels&box=4,4,8,8&seed=5"


def _pixels_only_task(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shapes whose label is *only* whether five fixed pixels are stamped (the shape is noise)."""
    from auditors.zoo.synthetic import generate, parse_synthetic, stamp

    spec = parse_synthetic(PIXELS_REF)
    data = generate(spec.with_(artifact="none", seed=seed))
    labels = (torch.rand(len(data.labels), generator=torch.Generator().manual_seed(seed)) < 0.5).long()
    images = data.images.clone()
    images[labels == 1] = stamp(images[labels == 1], spec)
    return images, labels


def _planted_pixels() -> set[int]:
    from auditors.zoo.synthetic import artifact_patch, parse_synthetic

    spec = parse_synthetic(PIXELS_REF)
    x, y, _, _ = spec.resolved_box
    _, alpha = artifact_patch(spec)
    return {(y + py) * spec.size + x + px for py, px in alpha.nonzero().tolist()}


@pytest.fixture(scope="module")
def pixels_model():
    import timm

    import auditors.zoo.architectures  # noqa: F401
    from auditors.zoo.training import train_classifier

    torch.manual_seed(0)
    model = timm.create_model("occulta_resnet_tiny", num_classes=2)
    images, labels = _pixels_only_task(5)
    train_classifier(model, images, labels, mean=MEAN, std=STD, epochs=10, seed=0)
    test_images, test_labels = _pixels_only_task(6)
    return model.eval(), test_images, test_labels


def _f(model, images, keep, target) -> torch.Tensor:
    logits = masked_logits(model, images, keep, "mean", mean=MEAN, std=STD)
    return torch.softmax(logits, 1).gather(1, target.view(-1, 1)).squeeze(1)


def test_exact_sis_of_a_pixel_planted_model_is_tiny_sits_on_the_pixels_and_is_sufficient(pixels_model):
    model, images, labels = pixels_model
    x = images[labels == 1][:2]
    res = backselect(model, x, mean=MEAN, std=STD)
    assert torch.all(res.target == 1) and torch.all(res.f_full >= 0.99)
    assert torch.all(res.f_masked < 0.5), "the fully masked input must be far below tau"
    truth = _planted_pixels()
    sis = sis_from_order(res, 0.99)
    for s in sis:
        assert s is not None and 1 <= len(s) <= 5
        assert set(s.tolist()) <= truth, (
            f"SIS {sorted(s.tolist())} is not on the planted pixels {sorted(truth)}"
        )
    f_sis = _f(model, x, subset_keep(sis, 16, 16), res.target)  # type: ignore[arg-type]
    assert torch.all(f_sis >= 0.99), f"SIS alone must keep f >= tau; got {f_sis.tolist()}"


def test_backselect_first_step_removes_the_pixel_a_direct_search_would(pixels_model):
    model, images, _ = pixels_model
    x = images[:1]
    res = backselect(model, x, mean=MEAN, std=STD)
    # Independent reference: paint each pixel with the mean colour by hand, one model call per pixel.
    cands = x.repeat(256, 1, 1, 1)
    cands.view(256, 3, 256)[torch.arange(256), :, torch.arange(256)] = torch.tensor(MEAN)
    with torch.no_grad():
        probs = torch.softmax(model(normalize(cands, torch.tensor(MEAN), torch.tensor(STD))), 1)[
            :, res.target[0]
        ]
    assert int(res.order[0, 0]) == int(probs.argmax())
    torch.testing.assert_close(res.f_after[0, 0], probs.max(), atol=1e-5, rtol=0)
    assert sorted(res.order[0].tolist()) == list(range(256)), "every pixel is removed exactly once"


def test_gradient_backselect_keeps_the_planted_pixels_to_the_end(pixels_model):
    model, images, labels = pixels_model
    x = images[labels == 1][:4]
    res = gradient_backselect(model, x, mean=MEAN, std=STD, k=16)
    ends = torch.tensor(step_sizes(256, 16)).cumsum(0) - 1
    assert res.order.shape == (4, 256) and torch.isfinite(res.f_after[:, ends]).all()
    assert sorted(res.order[0].tolist()) == list(range(256)), "every pixel is removed exactly once"
    truth = _planted_pixels()
    for order, s in zip(res.order, sis_from_order(res, 0.99), strict=True):
        assert len(set(order[-16:].tolist()) & truth) >= 2
        assert s is not None and len(s) <= 48 and set(s.tolist()) & truth


@pytest.mark.parametrize(("n", "k"), [(256, 16), (1024, 100), (224 * 224, 100), (7, 100)])
def test_gradient_steps_resolve_sis_sizes_to_one_percent_and_finer_as_the_subset_shrinks(n, k):
    """An SIS size is read off between steps, so no step may exceed 1% of the pixels, and a step is
    at most a tenth of the pixels still present (an SIS of 20 pixels is known to within 2)."""
    steps = step_sizes(n, k)
    assert sum(steps) == n and min(steps) >= 1
    assert max(steps) <= max(1, min(k, n // 100))
    remaining = n - torch.tensor(steps).cumsum(0) + torch.tensor(steps)  # pixels present before each step
    assert all(s <= max(1, -(-r // 10)) for s, r in zip(steps, remaining.tolist(), strict=True))
    assert len(steps) <= n / max(1, min(k, n // 100)) + 10 * math.log(n) + 10, "still a few hundred steps"


def test_sis_walks_backwards_to_the_last_confident_point():
    order = torch.tensor([[3, 1, 0, 2]])
    f_after = torch.tensor([[0.995, 0.991, 0.4, 0.1]])
    res = BackSelectResult(order, f_after, torch.tensor([0.999]), torch.tensor([0]), "exact")
    assert sis_from_order(res, 0.99)[0].tolist() == [0, 2]  # type: ignore[union-attr]
    assert sis_from_order(res, 0.999)[0].tolist() == [3, 1, 0, 2]  # type: ignore[union-attr]
    assert sis_from_order(res, 0.9999) == [None]  # f(x) < tau: no SIS
    assert [s.tolist() for s in backselect_subset(res, 0.5)] == [[0, 2]]
    assert len(backselect_subset(BackSelectResult(torch.zeros(1, 1024).long(), *([None] * 4)), 0.05)[0]) == 52


def _ctx(planted, tmp_path) -> AuditContext:
    t = planted.test
    return AuditContext(
        model=planted.model,
        images=t.images[:16],
        labels=t.labels[:16],
        mean=planted.mean,
        std=planted.std,
        class_names=t.class_names,
        out_dir=tmp_path,
    )


def test_sis_audit_runs_end_to_end_on_planted_resnet(planted_resnet, tmp_path):
    cfg = parse_config("sis", {"n_images": 6, "tau": 0.9, "n_show": 3})
    res = get_auditor("sis").run(_ctx(planted_resnet, tmp_path), cfg)
    m = res.metrics
    selection = m["selection"]
    assert sum(selection["n_per_class"].values()) == m["n_images"] <= selection["n_confident"]
    assert max(selection["n_per_class"].values()) - min(selection["n_per_class"].values()) <= 1 or (
        min(selection["n_confident_per_class"].values()) < 2
    ), "confident images are drawn evenly over the classes"
    assert selection["resolution_pct"] <= 1.0
    assert m["method"] == "gradient", "32x32 on a CPU defaults to Batched Gradient BackSelect"
    assert res.verdict in ("pass", "fail", "inconclusive") and res.summary
    assert m["fully_masked"]["confidence_max"] < 0.9
    assert m["subset_5pct"]["n_pixels"] == 52
    bs, rnd = m["subset_5pct"]["backselect"], m["subset_5pct"]["random"]
    assert bs["target_prob_mean"] > rnd["target_prob_mean"], "backselected pixels beat random ones"
    if m["sufficiency"]["f"]:
        assert m["sufficiency"]["share_ge_tau"] == 1.0
    json.dumps(res.model_dump(mode="json"))
    assert {a.name for a in res.artifacts} == {"sis_masks", "sis_size_histogram"}
    for art in res.artifacts:
        assert (tmp_path / art.path).stat().st_size > 0


def test_sis_audit_flags_overinterpretation_of_the_pixel_planted_model(pixels_model, tmp_path):
    model, images, labels = pixels_model
    keep = labels == 1
    ctx = AuditContext(
        model=model,
        images=images[keep][:5],
        labels=labels[keep][:5],
        mean=MEAN,
        std=STD,
        class_names=["plain", "pixels"],
        out_dir=tmp_path,
    )
    res = get_auditor("sis").run(ctx, SISConfig(n_images=5))
    assert res.metrics["method"] == "exact"
    assert res.metrics["share_confident_sis_le_5pct"] == 1.0 and res.verdict == "fail"
    # 5 of 5: the whole Wilson interval lies above one half, so the verdict is not one lucky image.
    assert res.n == 5 and res.estimate is not None and res.estimate["lo"] > 0.5
    assert res.metrics["selection"]["resolution_pct"] == pytest.approx(100 / 256, abs=1e-3)


def test_sis_from_too_few_confident_images_is_inconclusive(pixels_model, tmp_path):
    model, images, labels = pixels_model
    keep = labels == 1
    ctx = AuditContext(
        model=model,
        images=images[keep][:2],
        labels=labels[keep][:2],
        mean=MEAN,
        std=STD,
        class_names=["plain", "pixels"],
        out_dir=tmp_path,
    )
    res = get_auditor("sis").run(ctx, SISConfig(n_images=2, method="gradient", n_show=0))
    assert res.metrics["share_confident_sis_le_5pct"] == 1.0, "both images overinterpret..."
    assert res.verdict == "inconclusive" and res.n == 2, "...but two images cannot decide it"
    assert "Too few" in res.meaning


def test_retrain_on_subsets_reports_accuracies_next_to_the_original(pixels_model, tmp_path):
    model, images, labels = pixels_model
    # 80 of each class, stamped ones first (the SIS part of the audit looks at the first images).
    first = torch.cat([torch.nonzero(labels == c).squeeze(1)[:80] for c in (1, 0)])
    ctx = AuditContext(
        model=model,
        images=images[first],
        labels=labels[first],
        mean=MEAN,
        std=STD,
        class_names=["plain", "pixels"],
        out_dir=tmp_path,
    )
    cfg = SISConfig(
        n_images=2,
        method="gradient",
        gradient_k=32,
        retrain_on_subsets=True,
        retrain_images=160,
        retrain_epochs=30,
        n_show=0,
    )
    r = get_auditor("sis").run(ctx, cfg).metrics["retrain"]
    assert r["available"] and r["n_train"] == 128 and r["n_test"] == 32
    # The label lives in 5 pixels that BackSelect keeps and random 5% subsets almost never contain.
    assert r["backselect_subset_model_accuracy"] >= 0.9
    assert r["backselect_subset_model_accuracy"] > r["random_subset_model_accuracy"]


def test_sis_sharded_unevenly_with_an_empty_shard_equals_the_single_run(planted_resnet, tmp_path):
    """Some of 16 images are confident at tau 0.9 (11 on one machine, 12 on another: the fixture's
    training is not bit-identical across CPUs), so positions 1 / 3 / 11 / 1 split the pick unevenly
    and the last shard, beyond the pick, is empty. Every shard makes the same pick, its images'
    numbers do not depend on the shard (per-position random subsets, batches of one shape), and the
    partials, through JSON as a worker stores them, merge into the single run."""
    audit = get_auditor("sis")
    cfg = parse_config("sis", {"n_images": 16, "tau": 0.9, "gradient_k": 64, "n_show": 3})
    single = audit.run(_ctx(planted_resnet, tmp_path / "single"), cfg)
    k = single.metrics["n_images"]
    assert 5 <= k <= 15 and single.metrics["sis_size"]["n_with_sis"] == k
    ctx = _ctx(planted_resnet, tmp_path / "sharded")
    ranges = [range(0, 1), range(1, 4), range(4, 15), range(15, 16)]
    partials = [json.loads(json.dumps(audit.run_shard(ctx, cfg, r))) for r in reversed(ranges)]
    assert [len(p["clean"]) for p in reversed(partials)] == [1, 3, k - 4, 0]
    merged = audit.merge(ShardMeta.from_context(ctx), cfg, partials)
    assert merged.metrics == single.metrics
    assert merged.model_dump(mode="json", exclude={"seconds"}) == single.model_dump(
        mode="json", exclude={"seconds"}
    )
    for art in single.artifacts:  # the pictures too: drawn from what the partials carried
        assert (tmp_path / "single" / art.path).read_bytes() == (tmp_path / "sharded" / art.path).read_bytes()
    with pytest.raises(ValueError, match="tile"):
        audit.merge(ShardMeta.from_context(ctx), cfg, partials[1:] + partials[2:3])
    with pytest.raises(ValueError, match="cover"):
        audit.merge(ShardMeta.from_context(ctx), cfg, partials[1:])


def test_sis_plans_shards_over_its_pick_and_keys_random_subsets_by_position():
    audit = get_auditor("sis")
    # Cut only between whole batches of 64 (a smaller shard would still pay for a whole batch).
    cfg = SISConfig(n_images=200)
    assert audit.plan_shards(1000, cfg, 3) == [range(0, 128), range(128, 192), range(192, 200)]
    assert audit.plan_shards(100, cfg, 8) == [range(0, 64), range(64, 100)]
    assert audit.plan_shards(1000, SISConfig(n_images=5), 3) == [range(0, 5)]
    small = SISConfig(n_images=8, batch_rows=2)  # smaller batches: a small pick spreads further
    assert audit.plan_shards(100, small, 3) == [range(0, 4), range(4, 6), range(6, 8)]
    whole = random_subsets(range(6), 64, 4, seed=1, salt=2)
    part = random_subsets(range(3, 5), 64, 4, seed=1, salt=2)
    assert all(torch.equal(a, b) for a, b in zip(whole[3:5], part, strict=True))
    assert all(len(set(s.tolist())) == 4 for s in whole) and not torch.equal(whole[0], whole[1])


def test_exact_sis_with_a_random_fill_sharded_equals_the_single_run(pixels_model, tmp_path):
    """Exact BackSelect runs image by image and a random fill is keyed by position in the pick, so
    two shards of one position each reproduce the single run's SIS and numbers."""
    model, images, labels = pixels_model
    ctx = AuditContext(
        model=model,
        images=images[:8],
        labels=labels[:8],
        mean=MEAN,
        std=STD,
        class_names=["plain", "pixels"],
        out_dir=tmp_path,
        seed=4,
    )
    audit = get_auditor("sis")
    cfg = SISConfig(n_images=2, method="exact", strategy="random_color", n_show=2)
    single = audit.run(ctx, cfg)
    assert single.metrics["n_images"] == 2 and single.metrics["strategy"] == "random_color"
    ranges = [range(0, 1), range(1, 2)]  # finer than the plan would cut: any split must agree
    partials = [json.loads(json.dumps(audit.run_shard(ctx, cfg, r))) for r in ranges]
    merged = audit.merge(ShardMeta.from_context(ctx), cfg, partials)
    assert merged.model_dump(mode="json", exclude={"seconds"}) == single.model_dump(
        mode="json", exclude={"seconds"}
    )
