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
from auditors.registry import audit_charts, audit_class, audit_infos, config_class, get_auditor
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


def test_validating_every_audits_config_imports_no_torch() -> None:
    """The API answers a bad battery with a 422 from the torch-free configs (`AuditInfo.config`)."""
    code = (
        "import sys; from occulta.runner import validate_battery; from auditors.registry import audit_infos; "
        "validate_battery(sorted(audit_infos()), {}); assert 'torch' not in sys.modules, 'validation imported torch'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", NAMES)
def test_metadata_names_the_class_that_registers_it(name: str) -> None:
    info = audit_infos()[name]
    cls = audit_class(name)
    assert cls.name == name and cls.shardable == info.shardable and cls.info is info
    assert info.config, "a config module the API can import without torch"
    assert cls.Config is config_class(name)
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


@pytest.mark.parametrize("name", NAMES)
def test_every_audit_draws_its_charts_from_its_own_package(
    name: str, model: torch.nn.Module, tmp_path: Path
) -> None:
    """The dashboard reads an audit's charts through the registry: one package, no dashboard edit."""
    config = audit_class(name).Config.model_validate(audit_infos()[name].smoke_config)
    result = get_auditor(name).run(_context(model, tmp_path), config)
    charts = audit_charts(name, result.metrics)
    assert bool(charts) == bool(audit_infos()[name].charts), "declared charts must draw, and only they"
    for c in charts:
        assert {"key", "title", "x_label", "y_label", "x", "series"} <= set(c)
        assert c["key"].startswith(f"{name}.")
        assert all(len(s["data"]) == len(c["x"]) for s in c["series"])
    json.dumps(charts)  # pure data: it travels to the page as JSON


def test_a_plug_in_audit_draws_its_own_chart() -> None:
    charts = audit_charts("toy", {"majority_class": "circle", "majority_share": 0.75})
    assert charts[0]["series"] == [{"label": "majority share", "data": [0.75]}]


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


@pytest.mark.parametrize("name", NAMES)
def test_every_audit_reports_its_seed_role_and_seconds_sharded_or_not(
    name: str, model: torch.nn.Module, tmp_path: Path
) -> None:
    """The base stamps them from the metadata and the run, so a worker's sharded merge reports them
    as a single run does (they were once 0 seconds and no seed for some sharded audits)."""
    audit = get_auditor(name)
    info = audit_infos()[name]
    config = audit.Config.model_validate(info.smoke_config)
    ctx = _context(model, tmp_path)
    ranges = audit.plan_shards(ctx.n_images, config, 3)
    partials = [json.loads(json.dumps(audit.run_shard(ctx, config, r))) for r in ranges]
    results = [audit.run(_context(model, tmp_path / "single"), config)]
    results.append(audit.merge(ShardMeta.from_context(ctx), config, partials))
    for result in results:
        assert result.name == name and result.role == info.role
        assert result.config["seed"] == 3  # the run's seed, resolved
        assert result.seconds > 0 or name == "test_noop"  # the no-op audit does no work to time
    assert results[1].seconds >= round(sum(p["seconds"] for p in partials), 3)  # the shards, and the merge
