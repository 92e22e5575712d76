"""Job transitions (see `occulta.jobs` for the state machine).

Two workers that receive the same message (Redis redelivery, a sweep re-send) cannot both run it: the
loser's compare-and-set matches no row. A running single-task job whose heartbeat is older than
`stale_after` counts as abandoned (its worker died) and may be claimed again; attempts are capped. A
job waiting for its shards is never claimed again: the sweep recovers its shards instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from occulta.db.base import utcnow
from occulta.db.models import CANCELLED, FAILED, MERGE, QUEUED, RUNNING, SHARDS, SUCCEEDED, TERMINAL, AuditJob
from occulta.errors import ConflictError, NotFoundError


@dataclass(frozen=True)
class Claim:
    """What a worker needs after winning a claim (no ORM object leaves the session)."""

    job_id: str
    tenant_id: str
    attempt: int


def stale_running(now: datetime, stale_after: timedelta):  # type: ignore[no-untyped-def]
    """Running in one task (not waiting for shards) with a heartbeat older than `stale_after`."""
    return and_(
        AuditJob.status == RUNNING, AuditJob.phase.is_(None), AuditJob.heartbeat_at < now - stale_after
    )


def claim(
    session: Session, job_id: str, *, worker: str, stale_after: timedelta, max_attempts: int
) -> Claim | None:
    """Move a job to `running` if it is queued (or running but abandoned); None when another worker
    holds it, it is finished, or it does not exist. A job out of attempts is failed instead."""
    now = utcnow()
    claimable = or_(AuditJob.status == QUEUED, stale_running(now, stale_after))
    result = session.execute(
        update(AuditJob)
        .where(AuditJob.id == job_id, claimable, AuditJob.attempts < max_attempts)
        .values(
            status=RUNNING,
            attempts=AuditJob.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            worker=worker,
            message="starting",
            error=None,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        session.commit()
        row = session.execute(
            select(AuditJob.tenant_id, AuditJob.attempts).where(AuditJob.id == job_id)
        ).one()
        return Claim(job_id=job_id, tenant_id=row.tenant_id, attempt=row.attempts)
    # Out of attempts: the job would otherwise stay claimable forever.
    session.execute(
        update(AuditJob)
        .where(AuditJob.id == job_id, claimable, AuditJob.attempts >= max_attempts)
        .values(status=FAILED, finished_at=now, error=f"gave up after {max_attempts} attempts")
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return None


def heartbeat(session: Session, job_id: str, *, progress: float, message: str) -> bool:
    """Record liveness and progress; False when the job is no longer running under this worker's
    feet (finished, or re-queued by the sweep), so the caller can stop."""
    result = session.execute(
        update(AuditJob)
        .where(AuditJob.id == job_id, AuditJob.status == RUNNING)
        .values(heartbeat_at=utcnow(), progress=min(max(progress, 0.0), 1.0), message=message[:2000])
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def cancel_requested(session: Session, job_id: str) -> bool:
    """Polled by the worker between batches: a cancel request, or the job left `running`."""
    row = session.execute(
        select(AuditJob.status, AuditJob.cancel_requested).where(AuditJob.id == job_id)
    ).one_or_none()
    session.rollback()  # end the read transaction so the next poll sees fresh data
    return row is None or row.status != RUNNING or bool(row.cancel_requested)


def request_cancel(session: Session, job_id: str, *, tenant_id: str) -> str:
    """Cancel a job: a queued one at once, a running one by setting the flag its worker polls.
    Returns the status after the request; a finished job is a conflict."""
    now = utcnow()
    scoped = and_(AuditJob.id == job_id, AuditJob.tenant_id == tenant_id)
    queued = session.execute(
        update(AuditJob)
        .where(scoped, AuditJob.status == QUEUED)
        .values(status=CANCELLED, cancel_requested=True, finished_at=now, message="cancelled before start")
        .execution_options(synchronize_session=False)
    )
    if queued.rowcount == 1:  # type: ignore[attr-defined]
        session.commit()
        return CANCELLED
    running = session.execute(
        update(AuditJob)
        .where(scoped, AuditJob.status == RUNNING)
        .values(cancel_requested=True, message="cancelling")
        .execution_options(synchronize_session=False)
    )
    session.commit()
    if running.rowcount == 1:  # type: ignore[attr-defined]
        return RUNNING
    status = session.execute(select(AuditJob.status).where(scoped)).scalar_one_or_none()
    if status is None:
        raise NotFoundError(f"audit {job_id} not found")
    raise ConflictError(f"audit {job_id} already finished ({status}); nothing to cancel")


def finish(
    session: Session,
    job_id: str,
    status: str,
    *,
    verdict: str | None = None,
    error: str | None = None,
    message: str = "",
) -> bool:
    """Running → a final state; False when the job was not running (e.g. the sweep took it)."""
    if status not in TERMINAL:
        raise ValueError(f"not a final state: {status}")
    values: dict[str, object] = {"status": status, "finished_at": utcnow(), "message": message[:2000]}
    if status == SUCCEEDED:
        values["progress"] = 1.0
    if verdict is not None:
        values["verdict"] = verdict
    if error is not None:
        values["error"] = error[:4000]
    result = session.execute(
        update(AuditJob)
        .where(AuditJob.id == job_id, AuditJob.status == RUNNING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def start_sharded(session: Session, job_id: str, *, progress: float, message: str) -> bool:
    """Running in one task -> waiting for its shards (the fan-out committed the shard rows)."""
    return _set(
        session,
        job_id,
        and_(AuditJob.status == RUNNING, AuditJob.phase.is_(None)),
        phase=SHARDS,
        heartbeat_at=utcnow(),
        progress=progress,
        message=message[:2000],
    )


def claim_merge(session: Session, job_id: str, *, stale_after: timedelta) -> bool:
    """Waiting for shards -> merging, once: a duplicate merge message (a chord fired twice, a sweep
    re-send) loses, unless the merging worker died (stale heartbeat)."""
    now = utcnow()
    merging_abandoned = and_(AuditJob.phase == MERGE, AuditJob.heartbeat_at < now - stale_after)
    # From no phase too: the fan-out sends the chord before it records the phase (a failed send must
    # leave the job re-queueable), so a quick set of shards may finish first.
    waiting = or_(AuditJob.phase.is_(None), AuditJob.phase == SHARDS)
    return _set(
        session,
        job_id,
        and_(AuditJob.status == RUNNING, or_(waiting, merging_abandoned)),
        phase=MERGE,
        heartbeat_at=now,
        message="merging shards",
    )


def unclaim_merge(session: Session, job_id: str) -> bool:
    """Merging -> waiting for shards, so the retried merge (after a transient error) can claim it."""
    return _set(session, job_id, and_(AuditJob.status == RUNNING, AuditJob.phase == MERGE), phase=SHARDS)


def _set(session: Session, job_id: str, condition, **values: object) -> bool:  # type: ignore[no-untyped-def]
    result = session.execute(
        update(AuditJob)
        .where(AuditJob.id == job_id, condition)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def requeue(session: Session, job_id: str, *, message: str) -> bool:
    """Running in one task → queued, for a transient failure the worker retries (attempts stay
    counted). A job waiting for shards stays: its shards are retried on their own."""
    result = session.execute(
        update(AuditJob)
        .where(AuditJob.id == job_id, AuditJob.status == RUNNING, AuditJob.phase.is_(None))
        .values(status=QUEUED, message=message[:2000])
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
