"""The contract every registered audit keeps, generated from the registry (as timm generates its model
tests): metadata without torch, a config that survives JSON, the same result for the same seed, and,
for a shardable audit, the same result sharded as in one piece. A new audit is covered on registration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from auditors.audits.base import ShardMeta
from auditors.audits.context import AuditContext
from auditors.registry import audit_class, audit_infos, get_auditor
from auditors.report import AuditResult

NAMES = sorted(audit_infos())
SHARDABLE = [n for n in NAMES if audit_infos()[n].shardable]
CLASSES = ["circle", "square", "triangle", "cross"]


def test_every_audits_metadata_is_readable_without_torch() -> None:
    code = (
        "import sys; from auditors.registry import audit_infos; infos = audit_infos(); "
        "assert 'torch' not in sys.modules, 'metadata imported torch'; print(len(infos))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_names_the_class_that_registers_it(name: str) -> None:
    info = audit_infos()[name]
    cls = audit_class(name)
    assert cls.name == name and cls.shardable == info.shardable
    for f in info.form_fields:
        assert f.field in cls.Config.model_fields, f"form field {f.field} is not a {name} config field"


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips_through_json(name: str) -> None:
    cls = audit_class(name)
    for raw in ({}, audit_infos()[name].smoke_config, audit_infos()[name].demo_config):
        config = cls.Config.model_validate(raw)
        again = cls.Config.model_validate(json.loads(config.model_dump_json()))
        assert again == config


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    import timm

    import auditors.zoo.architectures  # noqa: F401  (registers the tiny architectures with timm)

    torch.manual_seed(0)
    return timm.create_model("occulta_resnet_tiny", num_classes=len(CLASSES)).eval()


def _context(model: torch.nn.Module, out: Path, seed: int = 3) -> AuditContext:
    from auditors.zoo.synthetic import generate, parse_synthetic

    data = generate(parse_synthetic("synthetic:shapes?classes=4&size=32&n=12&artifact=square&seed=9"))
    return AuditContext(
        model=model,
        images=data.images,
        labels=data.labels,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        class_names=CLASSES,
        out_dir=out,
        seed=seed,
    )


def _comparable(result: AuditResult) -> dict[str, Any]:
    """The result without timing: what must not change between two runs with one seed."""
    return result.model_dump(mode="json", exclude={"seconds"})


@pytest.mark.parametrize("name", NAMES)
def test_a_fixed_seed_gives_the_same_result(name: str, model: torch.nn.Module, tmp_path: Path) -> None:
    config = audit_class(name).Config.model_validate(audit_infos()[name].smoke_config)
    first = get_auditor(name).run(_context(model, tmp_path / "a"), config)
    second = get_auditor(name).run(_context(model, tmp_path / "b"), config)
    assert first.verdict != "error", first.error
    assert first.name == name and first.config["seed"] in (3, None)
    assert _comparable(first) == _comparable(second)


@pytest.mark.parametrize("name", SHARDABLE)
def test_sharded_and_single_runs_give_the_same_result(
    name: str, model: torch.nn.Module, tmp_path: Path
) -> None:
    audit = get_auditor(name)
    config = audit.Config.model_validate(audit_infos()[name].smoke_config)
    whole = audit.run(_context(model, tmp_path / "whole"), config)
    ctx = _context(model, tmp_path / "shards")
    ranges = audit.plan_shards(ctx.n_images, config, 3)
    assert len(ranges) > 1
    partials = [
        json.loads(json.dumps(audit.run_shard(ctx, config, r))) for r in ranges
    ]  # as a worker stores them
    merged = audit.merge(ShardMeta.from_context(ctx), config, partials)
    assert _comparable(merged) == _comparable(whole)
