"""The job state machine on real PostgreSQL: CAS claims, attempts, cancellation, timeouts, sweep."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from occulta import jobs
from occulta.db import AuditJob, utcnow
from occulta.errors import ConflictError, NotFoundError
from tests.service.rows import add_job

pytestmark = pytest.mark.service

STALE = timedelta(seconds=60)


def _get(sessions, job_id: str) -> AuditJob:  # type: ignore[no-untyped-def]
    with sessions() as s:
        row = s.get(AuditJob, job_id)
        assert row is not None
        return row


def _age_heartbeat(sessions, job_id: str, seconds: int, started: int | None = None) -> None:  # type: ignore[no-untyped-def]
    values = {"heartbeat_at": utcnow() - timedelta(seconds=seconds)}
    if started is not None:
        values["started_at"] = utcnow() - timedelta(seconds=started)
    with sessions() as s:
        s.execute(update(AuditJob).where(AuditJob.id == job_id).values(**values))
        s.commit()


def test_claim_moves_queued_to_running_and_counts_the_attempt(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(sessions, alice.tenant_id)
    with sessions() as s:
        claim = jobs.claim(s, job_id, worker="w1", stale_after=STALE, max_attempts=3)
    assert claim is not None and claim.attempt == 1 and claim.tenant_id == alice.tenant_id
    row = _get(sessions, job_id)
    assert row.status == "running" and row.worker == "w1" and row.started_at is not None


def test_a_second_claim_of_a_running_job_loses(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(sessions, alice.tenant_id)
    with sessions() as s1, sessions() as s2:
        assert jobs.claim(s1, job_id, worker="w1", stale_after=STALE, max_attempts=3) is not None
        assert jobs.claim(s2, job_id, worker="w2", stale_after=STALE, max_attempts=3) is None
    assert _get(sessions, job_id).worker == "w1"


def test_an_abandoned_running_job_can_be_claimed_again(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(sessions, alice.tenant_id)
    with sessions() as s:
        jobs.claim(s, job_id, worker="w1", stale_after=STALE, max_attempts=3)
    _age_heartbeat(sessions, job_id, 120)
    with sessions() as s:
        claim = jobs.claim(s, job_id, worker="w2", stale_after=STALE, max_attempts=3)
    assert claim is not None and claim.attempt == 2


def test_a_job_out_of_attempts_fails_instead_of_running(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(sessions, alice.tenant_id, attempts=3)
    with sessions() as s:
        assert jobs.claim(s, job_id, worker="w", stale_after=STALE, max_attempts=3) is None
    row = _get(sessions, job_id)
    assert row.status == "failed" and "3 attempts" in (row.error or "")


def test_heartbeat_and_finish_only_apply_to_a_running_job(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(sessions, alice.tenant_id)
    with sessions() as s:
        assert not jobs.heartbeat(s, job_id, progress=0.5, message="x")
        jobs.claim(s, job_id, worker="w", stale_after=STALE, max_attempts=3)
        assert jobs.heartbeat(s, job_id, progress=0.5, message="halfway")
        assert jobs.finish(s, job_id, "succeeded", verdict="pass")
        assert not jobs.finish(s, job_id, "failed", error="late")
    row = _get(sessions, job_id)
    assert (row.status, row.verdict, row.progress, row.error) == ("succeeded", "pass", 1.0, None)


def test_cancel_of_a_queued_job_is_immediate(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(sessions, alice.tenant_id)
    with sessions() as s:
        assert jobs.request_cancel(s, job_id, tenant_id=alice.tenant_id) == "cancelled"
        assert jobs.claim(s, job_id, worker="w", stale_after=STALE, max_attempts=3) is None
    assert _get(sessions, job_id).status == "cancelled"


def test_cancel_of_a_running_job_sets_the_flag_the_worker_polls(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(sessions, alice.tenant_id)
    with sessions() as s:
        jobs.claim(s, job_id, worker="w", stale_after=STALE, max_attempts=3)
        assert not jobs.cancel_requested(s, job_id)
        assert jobs.request_cancel(s, job_id, tenant_id=alice.tenant_id) == "running"
        assert jobs.cancel_requested(s, job_id)
        assert jobs.finish(s, job_id, "cancelled")
        with pytest.raises(ConflictError, match="already finished"):
            jobs.request_cancel(s, job_id, tenant_id=alice.tenant_id)


def test_cancel_is_scoped_to_the_tenant(sessions, alice, bob) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(sessions, alice.tenant_id)
    with sessions() as s, pytest.raises(NotFoundError):
        jobs.request_cancel(s, job_id, tenant_id=bob.tenant_id)
    assert _get(sessions, job_id).status == "queued"


def test_sweep_requeues_stale_jobs_and_times_out_those_past_the_hard_limit(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    stale, overdue, exhausted, healthy = (add_job(sessions, alice.tenant_id) for _ in range(4))
    with sessions() as s:
        for job_id in (stale, overdue, exhausted, healthy):
            jobs.claim(s, job_id, worker="w", stale_after=STALE, max_attempts=3)
    _age_heartbeat(sessions, stale, 120)
    _age_heartbeat(sessions, overdue, 120, started=7200)
    _age_heartbeat(sessions, exhausted, 120)
    with sessions() as s:
        s.execute(update(AuditJob).where(AuditJob.id == exhausted).values(attempts=3))
        s.commit()
        result = jobs.sweep(
            s,
            stale_after=STALE,
            hard_limit=timedelta(hours=1),
            max_attempts=3,
            resend_queued_after=timedelta(hours=2),
        )
    assert stale in result.requeued and overdue in result.timed_out and exhausted in result.failed
    assert healthy not in result.requeued + result.timed_out + result.failed
    assert [_get(sessions, j).status for j in (stale, overdue, exhausted, healthy)] == [
        "queued",
        "timed_out",
        "failed",
        "running",
    ]


def test_sweep_resends_a_queued_job_whose_message_was_lost(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    lost = add_job(sessions, alice.tenant_id, heartbeat_at=utcnow() - timedelta(hours=3))
    fresh = add_job(sessions, alice.tenant_id, heartbeat_at=utcnow())
    with sessions() as s:
        result = jobs.sweep(
            s,
            stale_after=STALE,
            hard_limit=timedelta(hours=1),
            max_attempts=3,
            resend_queued_after=timedelta(hours=2),
        )
        again = jobs.sweep(
            s,
            stale_after=STALE,
            hard_limit=timedelta(hours=1),
            max_attempts=3,
            resend_queued_after=timedelta(hours=2),
        )
    assert lost in result.requeued and fresh not in result.requeued
    assert lost not in again.requeued  # re-sent once, not on every sweep
