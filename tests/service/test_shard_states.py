"""The sharded job's states on real PostgreSQL: a job waiting for its shards is never re-queued by the
sweep (its shards may only be waiting in the queue); the sweep recovers its shards one by one and
settles it exactly as the merge would; the merge is claimed once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from occulta import jobs
from occulta.db import AuditJob, AuditShardRecord, utcnow
from occulta.jobs import shards
from occulta.jobs.task_names import MERGE_SHARDS, RUN_AUDIT, RUN_SHARD
from tests.service.rows import add_job

pytestmark = pytest.mark.service

STALE = timedelta(seconds=60)
LONG_AGO = timedelta(seconds=600)


def _sharded_job(sessions, tenant_id: str, n: int = 3) -> str:  # type: ignore[no-untyped-def]
    job_id = add_job(sessions, tenant_id)
    with sessions() as s:
        assert jobs.claim(s, job_id, worker="w", stale_after=STALE, max_attempts=3) is not None
        ranges = [range(i * 10, i * 10 + 10) for i in range(n)]
        shards.plan(s, job_id=job_id, tenant_id=tenant_id, audit="test_noop", ranges=ranges)
        assert jobs.start_sharded(s, job_id, progress=0.0, message="waiting for shards")
    return job_id


def _age(sessions, job_id: str, *, shard_index: int | None = None, **values) -> None:  # type: ignore[no-untyped-def]
    old = utcnow() - LONG_AGO
    with sessions() as s:
        if shard_index is None:
            s.execute(update(AuditJob).where(AuditJob.id == job_id).values(heartbeat_at=old, **values))
        else:
            s.execute(
                update(AuditShardRecord)
                .where(AuditShardRecord.job_id == job_id, AuditShardRecord.shard_index == shard_index)
                .values(heartbeat_at=old, **values)
            )
        s.commit()


def _sweep(sessions):  # type: ignore[no-untyped-def]
    with sessions() as s:
        return jobs.sweep(
            s,
            stale_after=STALE,
            hard_limit=timedelta(hours=1),
            max_attempts=3,
            resend_queued_after=timedelta(hours=2),
        )


def _status(sessions, job_id: str) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        row = s.get(AuditJob, job_id)
        assert row is not None
        return row.status, row.phase


def _claim_shard(sessions, job_id: str, index: int):  # type: ignore[no-untyped-def]
    with sessions() as s:
        return shards.claim(s, job_id, "test_noop", index, worker="w", stale_after=STALE)


def test_a_job_whose_shards_wait_in_the_queue_is_not_requeued(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = _sharded_job(sessions, alice.tenant_id)
    _age(sessions, job_id)  # no shard has started: nothing beats the job's heartbeat
    result = _sweep(sessions)
    assert job_id not in result.requeued + result.timed_out + result.failed
    assert [m for m in result.messages() if m[0] == job_id] == []
    assert _status(sessions, job_id) == ("running", "shards")


def test_a_redelivered_run_message_does_not_claim_a_job_waiting_for_shards(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = _sharded_job(sessions, alice.tenant_id)
    _age(sessions, job_id)
    with sessions() as s:
        assert jobs.claim(s, job_id, worker="w2", stale_after=STALE, max_attempts=3) is None
    assert _status(sessions, job_id) == ("running", "shards")


def test_the_sweep_resends_only_the_shard_whose_worker_died(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = _sharded_job(sessions, alice.tenant_id)
    assert _claim_shard(sessions, job_id, 0) is not None
    assert _claim_shard(sessions, job_id, 1) is not None
    _age(sessions, job_id, shard_index=1)  # its worker stopped beating
    _age(sessions, job_id)
    result = _sweep(sessions)
    assert (job_id, RUN_SHARD, [job_id, "test_noop", 1]) in result.messages()
    assert not any(m[0] == job_id and m[1] in (RUN_AUDIT, MERGE_SHARDS) for m in result.messages())
    assert _claim_shard(sessions, job_id, 1) is not None  # queued again, so claimable
    assert _claim_shard(sessions, job_id, 0) is None  # still held by its live worker


def test_a_job_whose_shards_are_done_but_whose_merge_never_came_is_merged_once(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = _sharded_job(sessions, alice.tenant_id, n=2)
    for index in range(2):
        claim = _claim_shard(sessions, job_id, index)
        with sessions() as s:
            assert shards.complete(s, claim.id, {"start": index * 10, "stop": index * 10 + 10})
    _age(sessions, job_id)
    first, again = _sweep(sessions), _sweep(sessions)
    assert job_id in first.merges_resent
    assert job_id not in again.merges_resent  # re-sent once, not on every sweep
    with sessions() as s:
        assert jobs.claim_merge(s, job_id, stale_after=STALE)
        assert not jobs.claim_merge(s, job_id, stale_after=STALE)  # a duplicate merge message loses
    assert _status(sessions, job_id) == ("running", "merge")


def test_the_sweep_settles_a_waiting_job_as_the_merge_would(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    cancelled = _sharded_job(sessions, alice.tenant_id, n=2)
    failed = _sharded_job(sessions, alice.tenant_id, n=2)
    with sessions() as s:
        shards.cancel(s, shards.find(s, cancelled, "test_noop", 0))  # type: ignore[arg-type]
        shards.fail(s, shards.find(s, failed, "test_noop", 1), error="boom")  # type: ignore[arg-type]
    _age(sessions, cancelled)
    _age(sessions, failed)
    result = _sweep(sessions)
    assert {cancelled, failed} <= set(result.settled)
    assert _status(sessions, cancelled)[0] == "cancelled" and _status(sessions, failed)[0] == "failed"


def test_a_transient_error_in_the_merge_lets_the_retry_claim_it_again(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = _sharded_job(sessions, alice.tenant_id, n=1)
    with sessions() as s:
        assert jobs.claim_merge(s, job_id, stale_after=STALE)
        assert not jobs.requeue(s, job_id, message="x")  # a sharded job is never put back whole
        assert jobs.unclaim_merge(s, job_id)
        assert jobs.claim_merge(s, job_id, stale_after=STALE)
