"""The merge of a sharded job reads what its shards recorded (`occulta.jobs.facts`) and loads nothing:
with every audit sharded it stages no model or dataset and builds no context, and its report equals a
single run's apart from timings (model, data, sample summary, environment, every audit). A battery with
an audit that cannot be sharded still runs it, on the model the merge then loads. Worker code runs
in-process here against real PostgreSQL and S3; tests/service/test_sharding.py does it with workers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from auditors.registry import parse_config
from auditors.report import Report
from occulta import jobs
from occulta.db import AuditJob, AuditShardRecord, new_id, utcnow
from occulta.jobs import shards
from occulta.storage import audit_prefix
from tests.fixtures.service import TinyModel

pytestmark = pytest.mark.service

SAMPLES, N_SHARDS, SEED = 48, 3, 4
MISSINGNESS = {"strategies": ["black", "layer_mask"], "fractions": [0.0, 0.5], "min_images": 4}
LIME = {"n_images": 4, "n_samples": 32, "strategies": ["noise"], "max_k": 4, "n_show": 1, "min_images": 2}
TIMINGS = {"created_at", "wall_seconds"}


@pytest.fixture
def stored(client, alice, tiny_model: TinyModel) -> dict[str, str]:  # type: ignore[no-untyped-def]
    files = {
        "card": ("card.json", tiny_model.card.read_bytes(), "application/json"),
        "weights": ("w.safetensors", tiny_model.weights.read_bytes(), "application/octet-stream"),
    }
    model = client.post("/v1/models", files=files, headers=alice.headers)
    dataset = client.post("/v1/datasets", json={"ref": tiny_model.data_ref}, headers=alice.headers)
    assert model.status_code in (200, 201) and dataset.status_code == 201, (model.text, dataset.text)
    return {"model": model.json()["id"], "dataset": dataset.json()["id"]}


def _sharded_job(sessions, alice, stored: dict[str, str], configs: dict[str, dict[str, Any]]) -> str:  # type: ignore[no-untyped-def]
    """A claimed job whose shardable audits are planned in N_SHARDS shards, waiting for them."""
    from worker import fanout
    from worker.pipeline import load_inputs

    job_id = new_id("aud")
    with sessions() as s:
        s.add(
            AuditJob(
                id=job_id,
                tenant_id=alice.tenant_id,
                model_id=stored["model"],
                dataset_id=stored["dataset"],
                audits=list(configs),
                configs=configs,
                seed=SEED,
                samples=SAMPLES,
                request_hash="x",
                dispatched_at=utcnow(),
            )
        )
        s.commit()
        assert jobs.claim(s, job_id, worker="w", stale_after=timedelta(minutes=1), max_attempts=3)
        inputs = load_inputs(s, job_id)
        assert inputs is not None and inputs.n_images == SAMPLES
        for name, raw in configs.items():
            auditor = fanout.shardable(name)
            if auditor is not None:
                ranges = auditor.plan_shards(SAMPLES, parse_config(name, raw), N_SHARDS)
                shards.plan(s, job_id=job_id, tenant_id=alice.tenant_id, audit=name, ranges=ranges)
        assert jobs.start_sharded(s, job_id, progress=0.0, message="waiting for shards")
        pending = shards.to_run(s, job_id)
    from worker.tasks.shard import RunShard

    run_shard = _bound(RunShard())
    for audit, index in pending:
        assert run_shard.run(job_id, audit, index) == "done", (audit, index)
    return job_id


def _bound(task: Any) -> Any:
    """The task on an app of its own (nothing is sent: the test calls `run` in this process)."""
    from celery import Celery

    return Celery("occulta-test").register_task(task)


def _merge(job_id: str) -> str:
    from worker.tasks.merge import MergeShards

    return str(_bound(MergeShards()).run(job_id))


def _single(tiny_model: TinyModel, configs: dict[str, dict[str, Any]], out: Path) -> Report:
    from occulta.runner import run_battery

    return run_battery(
        card_path=tiny_model.card,
        data_ref=tiny_model.data_ref,
        audits=list(configs),
        audit_configs=configs,
        out_dir=out,
        device="cpu",
        samples=SAMPLES,
        seed=SEED,
    )


def _comparable(report: Report) -> dict[str, Any]:
    """The report apart from timings: when it was made, its wall time, each audit's seconds."""
    data = report.model_dump(mode="json", exclude=TIMINGS)
    for audit in data["audits"]:
        audit.pop("seconds")
    return data


def _stored_report(store, alice, job_id: str) -> Report:  # type: ignore[no-untyped-def]
    return Report.model_validate_json(store.read_bytes(audit_prefix(alice.tenant_id, job_id) + "report.json"))


def _forbid_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_: Any, **__: Any) -> Any:
        raise AssertionError("the merge staged or loaded what the shards already computed")

    import occulta.runner
    import worker.pipeline

    for name in ("stage_model", "stage_dataset"):
        monkeypatch.setattr(worker.pipeline, name, refused)
    monkeypatch.setattr(occulta.runner, "prepare_run", refused)


@pytest.mark.parametrize(
    "configs",
    [
        {"missingness_bias": MISSINGNESS},  # the carrier's shards hold their own images ("range")
        {"missingness_bias": MISSINGNESS, "lime_consistency": LIME},  # LIME carries: it holds them all
    ],
    ids=["range-carrier", "all-carrier"],
)
def test_the_merge_loads_nothing_and_its_report_equals_the_single_run(  # type: ignore[no-untyped-def]
    sessions, store, alice, stored, tiny_model, worker_resources, monkeypatch, tmp_path, configs
) -> None:
    job_id = _sharded_job(sessions, alice, stored, configs)
    _forbid_loading(monkeypatch)
    assert _merge(job_id) == "succeeded"
    monkeypatch.undo()
    sharded = _stored_report(store, alice, job_id)
    single = _single(tiny_model, configs, tmp_path)
    assert _comparable(sharded) == _comparable(single)
    assert sharded.sample is not None and sharded.sample.n == SAMPLES
    assert all(a.seconds > 0 for a in sharded.audits)
    with sessions() as s:
        job = s.get(AuditJob, job_id)
        assert job is not None and (job.status, job.verdict) == ("succeeded", single.verdict)
        n_shards = s.query(AuditShardRecord).filter_by(job_id=job_id).count()
    assert n_shards == N_SHARDS * len(configs)
    # The calibration the API's estimates use is measured by a shard now that the merge loads no model.
    from occulta.estimate import calibration_key
    from worker.pipeline import load_inputs

    with sessions() as s:
        inputs = load_inputs(s, job_id)
    assert inputs is not None and store.exists(calibration_key(inputs.model_prefix))


def test_an_audit_that_cannot_be_sharded_still_runs_in_the_merge(  # type: ignore[no-untyped-def]
    sessions, store, alice, stored, tiny_model, worker_resources, tmp_path
) -> None:
    configs = {"missingness_bias": MISSINGNESS, "test_noop": {}}
    job_id = _sharded_job(sessions, alice, stored, configs)
    assert _merge(job_id) == "succeeded"
    sharded = _stored_report(store, alice, job_id)
    assert [a.name for a in sharded.audits] == list(configs)
    single = _single(tiny_model, configs, tmp_path)
    assert _comparable(sharded)["sample"] == _comparable(single)["sample"]
    assert sharded.audit("missingness_bias").metrics == single.audit("missingness_bias").metrics  # type: ignore[union-attr]
