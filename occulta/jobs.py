"""The audit job state machine: `queued → running → succeeded | failed | cancelled | timed_out`.

Every transition is one compare-and-set `UPDATE ... WHERE id = ? AND status IN (...)`, so two workers
that receive the same message (Redis redelivery, a sweep re-send) cannot both run it: the loser's
update matches no row. A running job whose heartbeat is older than `stale_after` counts as abandoned
(its worker died) and may be claimed again; attempts are counted and capped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from occulta.db.base import utcnow
from occulta.db.models import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    TIMED_OUT,
    AuditJob,
)
from occulta.errors import ConflictError, NotFoundError

FINISH_STATES = (SUCCEEDED, FAILED, CANCELLED, TIMED_OUT)


@dataclass(frozen=True)
class Claim:
    """What a worker needs after winning a claim (no ORM object leaves the session)."""

    job_id: str
    tenant_id: str
    attempt: int


def _stale_running(now: datetime, stale_after: timedelta):  # type: ignore[no-untyped-def]
    return and_(AuditJob.status == RUNNING, AuditJob.heartbeat_at < now - stale_after)


def claim(
    session: Session, job_id: str, *, worker: str, stale_after: timedelta, max_attempts: int
) -> Claim | None:
    """Move a job to `running` if it is queued (or running but abandoned); None when another worker
    holds it, it is finished, or it does not exist. A job out of attempts is failed instead."""
    now = utcnow()
    claimable = or_(AuditJob.status == QUEUED, _stale_running(now, stale_after))
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
    if status not in FINISH_STATES:
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


def requeue(session: Session, job_id: str, *, message: str) -> bool:
    """Running → queued, for a transient failure the worker retries (attempts stay counted)."""
    result = session.execute(
        update(AuditJob)
        .where(AuditJob.id == job_id, AuditJob.status == RUNNING)
        .values(status=QUEUED, message=message[:2000])
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SweepResult:
    requeued: list[str]  # send these again
    timed_out: list[str]
    failed: list[str]


def sweep(
    session: Session,
    *,
    stale_after: timedelta,
    hard_limit: timedelta,
    max_attempts: int,
    resend_queued_after: timedelta,
) -> SweepResult:
    """Find jobs nobody is working on. Running jobs with a stale heartbeat lost their worker: past the
    hard time limit they are `timed_out` (rerunning would hit it again), out of attempts `failed`,
    otherwise back to `queued`. Queued jobs whose message went out more than `resend_queued_after` ago
    (the broker's own redelivery horizon) are re-sent too, because the API may have died between commit
    and send. Claims are CAS, so a spurious re-send is harmless."""
    now = utcnow()
    stale = _stale_running(now, stale_after)
    timed_out = _cas_ids(
        session,
        and_(stale, AuditJob.started_at < now - hard_limit),
        {"status": TIMED_OUT, "finished_at": now, "error": "worker lost after the hard time limit"},
    )
    failed = _cas_ids(
        session,
        and_(stale, AuditJob.attempts >= max_attempts),
        {
            "status": FAILED,
            "finished_at": now,
            "error": f"worker lost; gave up after {max_attempts} attempts",
        },
    )
    requeued = _cas_ids(
        session,
        stale,
        {"status": QUEUED, "heartbeat_at": now, "message": "re-queued: worker heartbeat stopped"},
    )
    # For a queued job `heartbeat_at` is when its message was last sent.
    waiting = _cas_ids(
        session,
        and_(
            AuditJob.status == QUEUED,
            or_(AuditJob.heartbeat_at.is_(None), AuditJob.heartbeat_at < now - resend_queued_after),
        ),
        {"heartbeat_at": now},
    )
    session.commit()
    return SweepResult(requeued=sorted(set(requeued) | set(waiting)), timed_out=timed_out, failed=failed)


def _cas_ids(session: Session, condition, values: dict[str, object]) -> list[str]:  # type: ignore[no-untyped-def]
    """Apply `values` to every row matching `condition`, one CAS update per row, and return the ids
    whose update won (a row another process moved in between is skipped)."""
    won = []
    for job_id in session.scalars(select(AuditJob.id).where(condition)).all():
        result = session.execute(
            update(AuditJob)
            .where(AuditJob.id == job_id, condition)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            won.append(job_id)
    return won


def is_terminal(status: str) -> bool:
    return status in TERMINAL
