"""LIME on the engine and the LIME consistency audit (docs/audits.md, "LIME consistency")."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from auditors.audits.context import AuditContext
from auditors.audits.lime_consistency.config import LimeConfig
from auditors.audits.lime_consistency.metrics import topk_jaccard_curve
from auditors.audits.lime_consistency.verdict import verdict_of as _verdict
from auditors.engine import masked_logits, plain_logits
from auditors.methods.lime import grid_segments, lime_fit, ranking
from auditors.registry import get_auditor, parse_config
from auditors.stats import Estimate


def _reference_lime_coef(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Textbook LIME for one image: cosine kernel of width 0.25 and ridge (alpha=1) with an
    unpenalised intercept, solved as one augmented weighted least-squares system."""
    ones = np.ones(z.shape[1])
    norms = np.linalg.norm(z, axis=1) * np.linalg.norm(ones)
    cos = np.divide(z @ ones, norms, out=np.zeros(len(z)), where=norms > 0)
    w = np.sqrt(np.exp(-((1 - cos) ** 2) / 0.25**2))
    xa = np.hstack([z, np.ones((len(z), 1))])
    penalty = np.eye(xa.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    beta = np.linalg.solve(xa.T @ (w[:, None] * xa) + penalty, xa.T @ (w * y))
    return beta[:-1], float(beta[-1])


def test_batched_ridge_equals_per_image_weighted_least_squares(planted_resnet):
    p = planted_resnet
    images = p.test.images[:3]
    fit = lime_fit(
        p.model, images, mean=p.mean, std=p.std, strategy="mean", patch_size=8, n_samples=96, seed=3
    )
    assert fit.z.shape == (3, 96, 16) and bool(fit.z[:, 0].all()), "row 0 is the clean image"
    clean = torch.softmax(plain_logits(p.model, images, mean=p.mean, std=p.std), 1).amax(1)
    torch.testing.assert_close(fit.y[:, 0].cpu(), clean, atol=1e-5, rtol=0)
    for b in range(3):
        z = fit.z[b].cpu().numpy().astype(np.float64)
        coef, intercept = _reference_lime_coef(z, fit.y[b].cpu().double().numpy())
        np.testing.assert_allclose(fit.coef[b].numpy(), coef, atol=1e-5)
        assert abs(float(fit.intercept[b]) - intercept) < 1e-6


def test_lime_targets_come_from_the_engine_with_the_chosen_strategy(planted_resnet):
    p = planted_resnet
    img = p.test.images[:1]
    fit = lime_fit(p.model, img, mean=p.mean, std=p.std, strategy="black", patch_size=8, n_samples=20, seed=0)
    keep = fit.z[0].view(20, 4, 4)
    logits = masked_logits(p.model, img, keep, "black", mean=p.mean, std=p.std)
    expected = torch.softmax(logits, 1)[:, int(fit.target[0])]
    torch.testing.assert_close(fit.y[0], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("strategy", ["mean", "noise"])
def test_an_images_lime_does_not_depend_on_the_batch_it_is_computed_in(planted_resnet, strategy):
    """Perturbations (and random fills) follow the image's index in the dataset, not its batch
    position, so a shard or a re-sampled run explains image i exactly as a whole run does."""
    p = planted_resnet
    images = p.test.images[:3]
    kw = dict(mean=p.mean, std=p.std, strategy=strategy, patch_size=8, n_samples=48, seed=1)
    batch = lime_fit(p.model, images, **kw).coef
    assert not torch.allclose(batch[0], batch[1]), "different images get different explanations"
    for i in range(3):
        alone = lime_fit(p.model, images[i : i + 1], offset=i, **kw).coef
        torch.testing.assert_close(alone[0], batch[i])
    shifted = lime_fit(p.model, images[1:], offset=1, **kw).coef
    torch.testing.assert_close(shifted, batch[1:])
    assert shifted.shape == (2, 16)


def test_superpixel_padding_features_get_zero_weight_and_rank_last(planted_resnet):
    p = planted_resnet
    images = p.test.images[:2]
    fit = lime_fit(p.model, images, mean=p.mean, std=p.std, strategy="mean", features="slic", n_samples=40)
    n = fit.n_features
    assert int(n.min()) >= 4 and fit.coef.shape[1] == int(n.max())
    order = ranking(fit.coef, n)
    for b in range(2):
        nb = int(n[b])
        assert torch.all(fit.coef[b, nb:] == 0)
        assert set(order[b, nb:].tolist()) == set(range(nb, fit.coef.shape[1]))


def test_lime_top_features_on_planted_resnet_sit_on_the_artifact_box(planted_resnet):
    p = planted_resnet
    idx = torch.nonzero(p.test.has_artifact).squeeze(1)[:4]
    fit = lime_fit(
        p.model, p.test.images[idx], mean=p.mean, std=p.std, strategy="mean", patch_size=4, n_samples=300
    )
    x, y, w, h = p.test.spec.resolved_box
    seg = grid_segments(32, 32, 4)[0]
    box_feats = set(seg[y : y + h, x : x + w].unique().tolist())  # 4 of 64 patches
    top3 = ranking(fit.coef, fit.n_features)[:, :3]
    hits = [len(set(t.tolist()) & box_feats) for t in top3]
    assert sum(hits) >= 2 * len(hits), f"top-3 LIME patches per image on the box: {hits}"


def test_random_rankings_have_low_topk_agreement_and_identical_ones_full():
    order = torch.stack([torch.randperm(64, generator=torch.Generator().manual_seed(i)) for i in range(8)])
    assert topk_jaccard_curve([order, order], [5, 20]) == [1.0, 1.0]
    other = torch.stack(
        [torch.randperm(64, generator=torch.Generator().manual_seed(100 + i)) for i in range(8)]
    )
    assert topk_jaccard_curve([order, other], [20])[0] < 0.35


def _metrics(own: float, rnd: float, cons: float, colour_free: bool = False) -> dict:
    return {
        "removal": {"own_at_25": own, "random_at_25": rnd},
        "fill_consistency": {"at_20": cons, "colour_free": colour_free},
    }


def _est(value: float, lo: float, hi: float, n: int = 16) -> Estimate:
    return Estimate(value=value, lo=lo, hi=hi, n=n)


def test_verdict_rests_on_intervals_and_the_documented_thresholds():
    cfg = LimeConfig()
    informative, agree, disagree = _est(0.3, 0.1, 0.45), _est(0.7, 0.6, 0.8), _est(0.28, 0.2, 0.35)
    assert _verdict(_metrics(0.16, 0.53, 0.7), cfg, "blur", informative, agree, []).verdict == "pass"
    c = _verdict(_metrics(0.16, 0.53, 0.28), cfg, "black", informative, disagree, ["layer_mask"])
    verdict, meaning = c.verdict, c.meaning
    assert (
        verdict == "fail" and "depend on the fill colour" in meaning and meaning.endswith("use layer_mask.")
    )
    # Not twice better than random, surely: fail; maybe: inconclusive; too few images: inconclusive.
    assert _verdict(_metrics(0.25, 0.35, 0.9), cfg, "blur", _est(0.7, 0.55, 0.9), agree, []).verdict == "fail"
    assert (
        _verdict(_metrics(0.2, 0.4, 0.9), cfg, "blur", _est(0.5, 0.2, 0.9), agree, []).verdict
        == "inconclusive"
    )
    few = _verdict(_metrics(0.0, 0.9, 0.9), cfg, "blur", _est(0.0, 0.0, 0.0, n=3), agree, [])
    assert few.verdict == "inconclusive" and "Too few images" in few.meaning


def test_colour_free_lime_is_not_called_consistent_across_fills_it_did_not_agree_on():
    """Token dropping has no colour, so fill consistency is not judged, and not claimed either."""
    cfg = LimeConfig()
    c = _verdict(
        _metrics(0.1, 0.9, 0.28, colour_free=True),
        cfg,
        "token_drop",
        _est(0.1, 0.0, 0.2),
        _est(0.28, 0.2, 0.35),
        ["token_drop"],
    )
    verdict, summary = c.verdict, c.summary
    assert verdict == "pass" and "consistent" not in summary.split(":")[0]
    assert "not judged" in summary and "0.28" in summary


def test_lime_sees_every_class_of_a_class_sorted_sample(planted_resnet, tmp_path):
    t = planted_resnet.test
    # Ten images of each class, class by class, as a folder lists them.
    order = torch.cat([torch.nonzero(t.labels == c).squeeze(1)[:10] for c in range(4)])
    ctx = AuditContext(
        model=planted_resnet.model,
        images=t.images[order],
        labels=t.labels[order],
        mean=planted_resnet.mean,
        std=planted_resnet.std,
        class_names=t.class_names,
        out_dir=tmp_path,
    )
    assert t.labels[order][:16].unique().numel() <= 2, "a prefix would have seen at most two classes"
    cfg = LimeConfig(n_images=8, n_samples=64, fills=["black", "grey"], n_show=0, max_k=10)
    res = get_auditor("lime_consistency").run(ctx, cfg)
    counts = res.metrics["n_per_class"]
    assert sum(counts.values()) == 8 and min(counts.values()) >= 1, counts
    assert res.n == 8 and res.estimate is not None and res.estimate["n"] == 8 and res.meaning


def _ctx(planted, tmp_path, reference=None) -> AuditContext:
    t = planted.test
    return AuditContext(
        model=planted.model,
        images=t.images[:24],
        labels=t.labels[:24],
        mean=planted.mean,
        std=planted.std,
        class_names=t.class_names,
        out_dir=tmp_path,
        reference_model=reference,
    )


def test_lime_consistency_audit_runs_end_to_end_on_planted_resnet(planted_resnet, tmp_path):
    auditor = get_auditor("lime_consistency")
    cfg = parse_config("lime_consistency", {"n_images": 6, "n_samples": 160, "n_show": 2})
    res = auditor.run(_ctx(planted_resnet, tmp_path), cfg)
    m = res.metrics
    assert m["primary_strategy"] == "layer_mask"
    assert res.verdict in ("pass", "fail", "inconclusive") and res.summary
    rem = m["removal"]
    assert len(rem["own"]) == len(rem["random"]) == 49 and rem["k"][0] == 1
    assert rem["own_auc"] < rem["random_auc"], "LIME's ranking must beat a random order on the planted model"
    assert len(m["fill_consistency"]["fills"]) >= 4
    assert 0 <= m["seed_stability"]["jaccard_at_20"] <= 1 and len(m["seed_stability"]["spearman"]) == 6
    json.dumps(res.model_dump(mode="json"))
    for art in res.artifacts:
        assert (tmp_path / art.path).stat().st_size > 0, art.path
    assert {a.name for a in res.artifacts} >= {"heatmaps", "removal_curve", "consistency_curve"}


def test_lime_consistency_compares_with_a_reference_models_lime(planted_resnet, tmp_path):
    import timm

    torch.manual_seed(0)
    other = timm.create_model("occulta_vit_tiny", num_classes=4).eval()  # an unrelated (untrained) model
    cfg = LimeConfig(n_images=4, n_samples=96, fills=["black", "grey"], n_show=0, max_k=30)
    res = get_auditor("lime_consistency").run(_ctx(planted_resnet, tmp_path, other), cfg)
    rem = res.metrics["removal"]
    assert res.metrics["primary_strategy"] == "layer_mask"
    assert rem["reference_strategy"] == "token_drop"  # layer_mask does not apply to a ViT: its own native
    assert len(rem["reference"]) == 30 and 0 <= rem["reference_at_25"] <= 1
    assert rem["reference"] != rem["own"]


def test_unknown_config_keys_and_strategies_are_refused(planted_resnet, tmp_path):
    with pytest.raises(ValueError):
        parse_config("lime_consistency", {"n_sample": 10})
    from auditors.engine import EngineError

    with pytest.raises(EngineError):
        get_auditor("lime_consistency").run(_ctx(planted_resnet, tmp_path), LimeConfig(strategies=["chalk"]))


def _shards_equal_single_run(ctx: AuditContext, raw: dict, bounds: list[int]) -> None:
    from auditors.audits.base import ShardMeta

    audit = get_auditor("lime_consistency")
    cfg = parse_config("lime_consistency", raw)
    whole = audit.run(ctx, cfg)
    ranges = [range(a, b) for a, b in itertools.pairwise(bounds)]
    partials = [json.loads(json.dumps(audit.run_shard(ctx, cfg, r))) for r in ranges]
    merged = audit.merge(ShardMeta.from_context(ctx), cfg, partials[::-1])  # any arrival order
    assert merged.model_dump(mode="json", exclude={"seconds"}) == whole.model_dump(
        mode="json", exclude={"seconds"}
    )


def _planted_context(p, n: int, out, **kw) -> AuditContext:  # type: ignore[no-untyped-def]
    """The first `n` held-out images of a planted model's task, labelled."""
    return AuditContext(
        model=p.model,
        images=p.test.images[:n],
        labels=p.test.labels[:n],
        mean=p.mean,
        std=p.std,
        class_names=list(p.test.class_names),
        out_dir=out,
        **kw,
    )


def test_uneven_lime_shards_with_a_noise_fill_and_a_reference_model_equal_the_single_run(
    planted_resnet, planted_vit, tmp_path
):
    """Noise fills and random orders are keyed by an image's place in the pick, and the reference
    model's ranking travels per image, so any split gives the single run's report."""
    ctx = _planted_context(planted_resnet, 24, tmp_path, seed=4, reference_model=planted_vit.model)
    raw = {"n_images": 7, "n_samples": 48, "strategies": ["noise"], "max_k": 6, "n_show": 2}
    _shards_equal_single_run(ctx, raw, [0, 1, 5, 7])


def test_lime_shards_refuse_a_gap_or_another_config(planted_resnet, tmp_path):
    from auditors.audits.base import ShardMeta

    ctx = _planted_context(planted_resnet, 12, tmp_path)
    audit = get_auditor("lime_consistency")
    cfg = parse_config("lime_consistency", {"n_images": 4, "n_samples": 16, "max_k": 3, "n_show": 0})
    first, last = audit.run_shard(ctx, cfg, range(0, 2)), audit.run_shard(ctx, cfg, range(3, 4))
    with pytest.raises(ValueError, match="tile"):
        audit.merge(ShardMeta.from_context(ctx), cfg, [first, last])
    other = audit.run_shard(ctx, cfg.model_copy(update={"seed": 99}), range(2, 4))
    with pytest.raises(ValueError, match="different settings"):
        audit.merge(ShardMeta.from_context(ctx), cfg, [first, other])
