"""Sharded audits: any split of the images, run anywhere and merged, gives the single-run report."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from auditors.audits.base import FLOW, Audit, ShardMeta
from auditors.audits.context import AuditContext
from auditors.audits.missingness_bias.audit import MissingnessBias
from auditors.audits.missingness_bias.config import MissingnessBiasConfig
from auditors.audits.missingness_bias.shard import image_keep
from auditors.audits.ranges import check_tiling, even_ranges
from auditors.methods.per_image_random import per_image_uniform
from auditors.registry import audit_class, audit_infos, get_auditor

CONFIG = MissingnessBiasConfig(
    strategies=["black", "noise", "random_color", "layer_mask"], fractions=[0.0, 0.3, 0.6]
)


def test_even_ranges_tile_the_images_with_sizes_one_apart() -> None:
    for n, k in ((10, 3), (100, 7), (5, 5), (3, 8), (2000, 1)):
        ranges = even_ranges(n, k)
        assert [i for r in ranges for i in r] == list(range(n))
        sizes = [len(r) for r in ranges]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) > 0
    assert len(even_ranges(3, 8)) == 3
    assert even_ranges(0, 4) == []


def test_check_tiling_refuses_a_missing_or_duplicated_shard() -> None:
    parts = [{"start": 0, "stop": 4}, {"start": 4, "stop": 9}]
    assert [p["start"] for p in check_tiling(list(reversed(parts)), 9)] == [0, 4]
    with pytest.raises(ValueError, match="tile"):
        check_tiling([parts[1]], 9)
    with pytest.raises(ValueError, match="tile"):
        check_tiling([parts[0], parts[0], parts[1]], 9)
    with pytest.raises(ValueError, match="cover 9 of 12"):
        check_tiling(parts, 12)


def test_per_image_draws_do_not_depend_on_the_batch() -> None:
    whole = per_image_uniform(range(50), 16, seed=3, salt=1)
    assert np.array_equal(whole[17:31], per_image_uniform(range(17, 31), 16, seed=3, salt=1))
    assert not np.array_equal(whole, per_image_uniform(range(50), 16, seed=4, salt=1))
    assert not np.array_equal(whole, per_image_uniform(range(50), 16, seed=3, salt=2))
    assert whole.min() >= 0.0 and whole.max() < 1.0 and abs(whole.mean() - 0.5) < 0.05
    keep = image_keep(range(40), (4, 4), 0.5, seed=0, salt=2)
    assert torch.equal(keep[10:25], image_keep(range(10, 25), (4, 4), 0.5, seed=0, salt=2))
    assert torch.all((~keep).flatten(1).sum(1) == 8)


def _ctx(planted, out_dir, n: int = 101) -> AuditContext:  # type: ignore[no-untyped-def]
    return AuditContext(
        model=planted.model,
        images=planted.test.images[:n],
        labels=planted.test.labels[:n],
        mean=planted.mean,
        std=planted.std,
        class_names=planted.test.class_names,
        out_dir=out_dir,
        seed=7,
    )


def _comparable(result) -> dict:  # type: ignore[no-untyped-def]
    return result.model_dump(mode="json", exclude={"seconds"})


@pytest.mark.parametrize("n_shards", [2, 3, 7])
def test_merged_shards_equal_the_single_run(planted_resnet, tmp_path, n_shards: int) -> None:  # type: ignore[no-untyped-def]
    """101 images split 2, 3 and 7 ways (uneven), with random fills and layer masking: the partials go
    through JSON, as they do between workers, and the merge equals the single run exactly."""
    auditor = MissingnessBias()
    single = auditor.run(_ctx(planted_resnet, tmp_path / "single"), CONFIG)
    ctx = _ctx(planted_resnet, tmp_path / f"sharded{n_shards}")
    ranges = auditor.plan_shards(ctx.n_images, CONFIG, n_shards)
    assert len(ranges) == n_shards
    partials = [json.loads(json.dumps(auditor.run_shard(ctx, CONFIG, r))) for r in reversed(ranges)]
    merged = auditor.merge(ShardMeta.from_context(ctx), CONFIG, partials)
    assert merged.metrics == single.metrics
    assert _comparable(merged) == _comparable(single)
    a = np.load(tmp_path / "single" / "missingness_bias" / "predictions.npz")
    b = np.load(tmp_path / f"sharded{n_shards}" / "missingness_bias" / "predictions.npz")
    for key in a.files:
        assert np.array_equal(a[key], b[key]), key


def test_a_merge_with_a_lost_shard_raises(planted_resnet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    auditor = MissingnessBias()
    ctx = _ctx(planted_resnet, tmp_path, n=30)
    cfg = MissingnessBiasConfig(strategies=["black"], fractions=[0.0, 0.5])
    partials = [auditor.run_shard(ctx, cfg, r) for r in auditor.plan_shards(30, cfg, 3)]
    with pytest.raises(ValueError, match="tile"):
        auditor.merge(ShardMeta.from_context(ctx), cfg, [partials[0], partials[2]])


def test_audits_write_hooks_only_and_the_base_owns_the_flow() -> None:
    """The flow (run, plan, shard, merge) is the base class's: an audit on the hooks overrides none of
    it, so the worker's sharded path and a single run are one code path for every audit."""
    for name in audit_infos():
        cls = audit_class(name)
        if getattr(cls, "legacy_flow", False):
            continue
        own = {m for m in FLOW if getattr(cls, m) is not getattr(Audit, m)}
        assert not own, f"{name} overrides {own}"
        assert cls.shardable == audit_infos()[name].shardable, name
        assert cls.info is audit_infos()[name], name
    assert get_auditor("missingness_bias").shard_inputs == "range"
    assert get_auditor("sis").shardable and get_auditor("sis").shard_inputs == "all"


def test_an_audit_that_overrides_the_flow_is_refused_at_definition() -> None:
    from auditors.audits.base import NoPartial

    with pytest.raises(TypeError, match="writes the hooks"):

        class Rogue(Audit[Any, NoPartial]):
            def merge(self, meta, config, partials):  # type: ignore[no-untyped-def,override]
                raise AssertionError
