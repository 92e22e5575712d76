"""One audit over several workers, on the real stack (PostgreSQL, Redis, S3, two Celery worker
processes): the merged report equals a single run, one failing shard is retried alone, and a cancel
stops the shards that have not run yet."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from occulta.client import OccultaClient
from occulta.db import AuditShardRecord, make_engine, make_session_factory
from tests.fixtures.service import TinyModel, prod_env, run_stack

pytestmark = [pytest.mark.service, pytest.mark.timeout(240)]

SHARD_SIZE = 64  # the 256-image tiny dataset -> 4 shards
CONFIG = {"missingness_bias": {"strategies": ["black", "noise", "layer_mask"], "fractions": [0.0, 0.5]}}
SLOW = {"missingness_bias": {"strategies": ["black", "grey", "noise", "blur", "layer_mask"]}}
# The rest of the battery, each split over the same two workers (LIME and SIS: 8 picked images in 4
# shards of 2; the spurious audit: its 32-image sample with discovery on).
BATTERY = {
    "lime_consistency": {"n_images": 8, "n_samples": 64, "strategies": ["noise"], "max_k": 6, "n_show": 2},
    "sis": {"n_images": 8, "method": "gradient", "gradient_k": 64, "n_show": 2, "batch_rows": 2},
    "spurious_signal": {"n_images": 32, "methods": ["gradient"], "max_candidates": 2, "n_overlays": 2},
}


@pytest.fixture(scope="module")
def stack(pg_migrated, redis_url, s3_endpoint, tmp_path_factory) -> Iterator:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("sharded")
    env = prod_env(pg_url=pg_migrated, redis_url=redis_url, s3_endpoint=s3_endpoint, data_dir=tmp / "data")
    env |= {
        "OCCULTA_SHARD_SIZE": str(SHARD_SIZE),
        "SHARD_FAULT_DIR": str(tmp),
        "SHARD_FAIL_ONCE_AT": str(SHARD_SIZE),  # shard 1 fails on its first attempt
    }
    logs = tmp / "logs"
    with run_stack(
        env, log_dir=logs, workers=2, worker_args=["--include", "tests.service.shard_faults"]
    ) as st:
        _wait_ready(logs, 2)
        st.log_dir = logs  # type: ignore[attr-defined]
        yield st


def _wait_ready(logs: Path, n: int, timeout: float = 60) -> None:
    """Both workers consuming before the first job, so the shards really spread over two processes."""
    deadline = time.monotonic() + timeout
    names = ["worker.log", *(f"worker{i}.log" for i in range(1, n))]
    while time.monotonic() < deadline:
        if all((logs / f).is_file() and b" ready." in (logs / f).read_bytes() for f in names):
            return
        time.sleep(0.2)
    raise RuntimeError("workers not ready: " + " | ".join((logs / f).read_text()[-2000:] for f in names))


def _shards(pg_url: str, job_id: str) -> list[AuditShardRecord]:
    engine = make_engine(pg_url)
    try:
        with make_session_factory(engine)() as s:
            rows = s.scalars(
                select(AuditShardRecord)
                .where(AuditShardRecord.job_id == job_id)
                .order_by(AuditShardRecord.start)
            ).all()
            return list(rows)
    finally:
        engine.dispose()


def _dump_logs(stack) -> None:  # type: ignore[no-untyped-def]
    for f in sorted(stack.log_dir.glob("*.log")):
        print(f"--- {f.name}\n{f.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def sharded_job(stack, tiny_model: TinyModel) -> dict:  # type: ignore[no-untyped-def]
    with OccultaClient(stack.url, stack.key, retries=0) as client:
        model = client.upload_model(tiny_model.card, tiny_model.weights)
        dataset = client.register_dataset(tiny_model.data_ref)
        audit = client.create_audit(
            model_id=model.id,
            dataset_id=dataset.id,
            audits=["missingness_bias"],
            config=CONFIG,
            seed=5,
        )
        try:
            final = client.wait(audit.id, timeout=150, interval=0.5)
        except Exception:
            _dump_logs(stack)
            raise
        if final.status != "succeeded":
            _dump_logs(stack)
        report = client.get_report(audit.id)
    return {"id": audit.id, "status": final, "report": report, "model_id": model.id, "dataset_id": dataset.id}


def test_a_sharded_audit_over_two_workers_equals_the_single_run(  # type: ignore[no-untyped-def]
    sharded_job, tiny_model, pg_migrated, tmp_path
) -> None:
    from occulta.runner import run_battery

    assert sharded_job["status"].status == "succeeded", sharded_job["status"]
    rows = _shards(pg_migrated, sharded_job["id"])
    assert [(r.start, r.stop, r.status) for r in rows] == [(i * 64, i * 64 + 64, "done") for i in range(4)]
    assert len({r.worker for r in rows}) == 2, [r.worker for r in rows]
    single = run_battery(
        card_path=tiny_model.card,
        data_ref=tiny_model.data_ref,
        audits=["missingness_bias"],
        audit_configs=CONFIG,
        out_dir=tmp_path,
        device="cpu",
        seed=5,
    )
    sharded = sharded_job["report"].audit("missingness_bias")
    expected = single.audit("missingness_bias")
    assert sharded is not None and expected is not None
    assert sharded.metrics == expected.metrics
    assert (sharded.verdict, sharded.summary, sharded.findings) == (
        expected.verdict,
        expected.summary,
        expected.findings,
    )
    assert sharded_job["report"].dataset.n_images == 256


def test_a_shard_that_fails_once_is_retried_alone(sharded_job, pg_migrated) -> None:  # type: ignore[no-untyped-def]
    rows = _shards(pg_migrated, sharded_job["id"])
    assert [r.attempts for r in rows] == [1, 2, 1, 1]
    assert sharded_job["status"].status == "succeeded"


def test_cancel_stops_the_remaining_shards(stack, sharded_job, pg_migrated) -> None:  # type: ignore[no-untyped-def]
    http = httpx.Client(base_url=stack.url, headers=stack.headers, timeout=30)
    r = http.post(
        "/v1/audits",
        json={
            "model_id": sharded_job["model_id"],
            "dataset_id": sharded_job["dataset_id"],
            "audits": ["missingness_bias"],
            "config": SLOW,
            "seed": 1,
        },
    )
    assert r.status_code in (200, 201, 202), r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rows = _shards(pg_migrated, job_id)
        if any(row.status == "done" for row in rows) or any(row.progress > 0.3 for row in rows):
            break
        time.sleep(0.2)
    assert http.post(f"/v1/audits/{job_id}/cancel").status_code == 202
    while time.monotonic() < deadline:
        status = http.get(f"/v1/audits/{job_id}").json()
        if status["status"] not in ("queued", "running"):
            break
        time.sleep(0.3)
    http.close()
    assert status["status"] == "cancelled", status
    rows = _shards(pg_migrated, job_id)
    assert len(rows) == 4
    assert sum(row.status == "done" for row in rows) < 4
    assert all(row.status in ("done", "cancelled") for row in rows), [row.status for row in rows]


@pytest.fixture(scope="module")
def sharded_battery(stack, sharded_job) -> dict:  # type: ignore[no-untyped-def]
    """LIME, SIS and the spurious audit in one job, sharded over the two workers."""
    with OccultaClient(stack.url, stack.key, retries=0) as client:
        audit = client.create_audit(
            model_id=sharded_job["model_id"],
            dataset_id=sharded_job["dataset_id"],
            audits=list(BATTERY),
            config=BATTERY,
            seed=7,
        )
        final = client.wait(audit.id, timeout=200, interval=0.5)
        if final.status != "succeeded":
            _dump_logs(stack)
        return {"id": audit.id, "status": final, "report": client.get_report(audit.id)}


@pytest.mark.timeout(400)
def test_every_audit_of_the_battery_sharded_over_two_workers_equals_the_single_run(  # type: ignore[no-untyped-def]
    sharded_battery, tiny_model, pg_migrated, tmp_path
) -> None:
    from auditors.registry import audit_infos
    from occulta.runner import run_battery

    assert all(audit_infos()[name].shardable for name in BATTERY)
    assert sharded_battery["status"].status == "succeeded", sharded_battery["status"]
    rows = _shards(pg_migrated, sharded_battery["id"])
    assert {r.audit for r in rows} == set(BATTERY)
    assert all(r.status == "done" for r in rows)
    assert len({r.worker for r in rows}) == 2, [r.worker for r in rows]
    single = run_battery(
        card_path=tiny_model.card,
        data_ref=tiny_model.data_ref,
        audits=list(BATTERY),
        audit_configs=BATTERY,
        out_dir=tmp_path,
        device="cpu",
        seed=7,
    )
    for name in BATTERY:
        got, want = sharded_battery["report"].audit(name), single.audit(name)
        assert got is not None and want is not None, name
        assert got.metrics == want.metrics, name
        assert (got.verdict, got.summary, got.findings, got.estimate, got.n) == (
            want.verdict,
            want.summary,
            want.findings,
            want.estimate,
            want.n,
        ), name
        assert [a.name for a in got.artifacts] == [a.name for a in want.artifacts], name
    # What the merge read from the shards' facts instead of loading the model and every image.
    got_report = sharded_battery["report"]
    assert (got_report.sample, got_report.model, got_report.dataset) == (
        single.sample,
        single.model,
        single.dataset,
    )
    assert got_report.environment.versions == single.environment.versions
