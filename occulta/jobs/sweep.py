"""The sweep (a periodic task): find work nobody is doing and put it back, through the outbox.

Single-task jobs with a stale heartbeat lost their worker: past the hard time limit they are
`timed_out` (rerunning would hit it again), out of attempts `failed`, otherwise back to `queued` and
re-sent. A job waiting for its shards is never re-queued (its shards may only be waiting in the
queue); instead its shards are recovered one by one: a running shard with a stale heartbeat goes back
to `queued` and is re-sent, a queued shard whose message went out longer ago than the broker's own
redelivery horizon is re-sent, and once the shards add up (`shards.outcome`) a job whose merge never
came is merged, cancelled or failed. The sweep task stages `SweepResult.messages()` in the outbox and
relays them (a crash in between is covered by the re-send horizon: claims are CAS, a re-send is safe).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from occulta.db.base import utcnow
from occulta.db.models import (
    CANCELLED,
    FAILED,
    MERGE,
    QUEUED,
    RUNNING,
    SHARDS,
    TIMED_OUT,
    AuditJob,
    AuditShardRecord,
)
from occulta.jobs import shards
from occulta.jobs.job import finish, stale_running
from occulta.jobs.task_names import MERGE_SHARDS, RUN_AUDIT, RUN_SHARD

Message = tuple[str, str, list[Any]]  # (job id, task name, args)


@dataclass(frozen=True)
class SweepResult:
    requeued: list[str]  # jobs to send again
    timed_out: list[str]
    failed: list[str]
    shards_resent: list[Message] = field(default_factory=list)
    merges_resent: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)  # sharded jobs cancelled or failed by their shards

    def messages(self) -> list[Message]:
        """Every task message this sweep decided to send."""
        jobs = [(job_id, RUN_AUDIT, [job_id]) for job_id in self.requeued]
        merges = [(job_id, MERGE_SHARDS, [job_id]) for job_id in self.merges_resent]
        return jobs + list(self.shards_resent) + merges


def sweep(
    session: Session,
    *,
    stale_after: timedelta,
    hard_limit: timedelta,
    max_attempts: int,
    resend_queued_after: timedelta,
) -> SweepResult:
    now = utcnow()
    stale = stale_running(now, stale_after)
    timed_out = _cas(
        session,
        AuditJob,
        and_(stale, AuditJob.started_at < now - hard_limit),
        {"status": TIMED_OUT, "finished_at": now, "error": "worker lost after the hard time limit"},
    )
    failed = _cas(
        session,
        AuditJob,
        and_(stale, AuditJob.attempts >= max_attempts),
        {
            "status": FAILED,
            "finished_at": now,
            "error": f"worker lost; gave up after {max_attempts} attempts",
        },
    )
    requeued = _cas(
        session,
        AuditJob,
        stale,
        {"status": QUEUED, "heartbeat_at": now, "message": "re-queued: worker heartbeat stopped"},
    )
    # For a queued job `heartbeat_at` is when its message was last sent; a lost message is re-sent
    # after the broker's redelivery horizon (the outbox covers sends that never happened).
    waiting = _cas(
        session,
        AuditJob,
        and_(
            AuditJob.status == QUEUED,
            AuditJob.dispatched_at.is_not(None),  # one still in its tenant's line waits its turn
            or_(AuditJob.heartbeat_at.is_(None), AuditJob.heartbeat_at < now - resend_queued_after),
        ),
        {"heartbeat_at": now},
    )
    again = sorted(set(requeued) | set(waiting))
    session.commit()
    shard_ids = _recover_shards(session, now, stale_after, resend_queued_after, max_attempts)
    merges, settled = _settle_sharded(session, now, stale_after)
    return SweepResult(
        requeued=again,
        timed_out=timed_out,
        failed=failed,
        shards_resent=shard_ids,
        merges_resent=merges,
        settled=settled,
    )


def _recover_shards(
    session: Session, now: datetime, stale_after: timedelta, resend_after: timedelta, max_attempts: int
) -> list[Message]:
    """Re-send the shards of waiting jobs whose worker died or whose message is presumed lost."""
    waiting_job = select(AuditJob.id).where(AuditJob.status == RUNNING, AuditJob.phase == SHARDS)
    in_waiting_job = AuditShardRecord.job_id.in_(waiting_job)
    stale = and_(AuditShardRecord.status == RUNNING, AuditShardRecord.heartbeat_at < now - stale_after)
    _cas(
        session,
        AuditShardRecord,
        and_(in_waiting_job, stale, AuditShardRecord.attempts >= max_attempts),
        {
            "status": FAILED,
            "finished_at": now,
            "error": f"worker lost; gave up after {max_attempts} attempts",
        },
    )
    lost = _cas(
        session,
        AuditShardRecord,
        and_(in_waiting_job, stale),
        {
            "status": QUEUED,
            "heartbeat_at": now,
            "progress": 0.0,
            "error": "re-queued: worker heartbeat stopped",
        },
    )
    unsent = _cas(
        session,
        AuditShardRecord,
        and_(
            in_waiting_job,
            AuditShardRecord.status == QUEUED,
            AuditShardRecord.heartbeat_at < now - resend_after,
        ),
        {"heartbeat_at": now},
    )
    session.commit()
    rows = session.execute(
        select(AuditShardRecord.job_id, AuditShardRecord.audit, AuditShardRecord.shard_index)
        .where(AuditShardRecord.id.in_(sorted(set(lost) | set(unsent))))
        .order_by(AuditShardRecord.id)
    ).all()
    session.rollback()
    return [(r.job_id, RUN_SHARD, [r.job_id, r.audit, r.shard_index]) for r in rows]


def _settle_sharded(session: Session, now: datetime, stale_after: timedelta) -> tuple[list[str], list[str]]:
    """Jobs waiting for shards (or whose merging worker died) with a stale heartbeat: nothing is running
    for them. Their shards decide, exactly as the merge would: cancelled, failed, or merge now."""
    rows = session.execute(
        select(AuditJob.id, AuditJob.cancel_requested).where(
            AuditJob.status == RUNNING,
            AuditJob.phase.in_((SHARDS, MERGE)),
            AuditJob.heartbeat_at < now - stale_after,
        )
    ).all()
    session.rollback()
    merges, settled = [], []
    for row in rows:
        verdict, n = shards.outcome(session, row.id, cancel_requested=bool(row.cancel_requested))
        if verdict == "cancelled":
            message = f"cancelled; {n[shards.DONE]} of {n.total()} shards done"
            if finish(session, row.id, CANCELLED, message=message):
                settled.append(row.id)
        elif verdict == "failed":
            if finish(session, row.id, FAILED, error="a shard failed", message="failed"):
                settled.append(row.id)
        elif verdict == "ready":
            touched = session.execute(
                update(AuditJob)
                .where(AuditJob.id == row.id, AuditJob.heartbeat_at < now - stale_after)
                .values(heartbeat_at=now, phase=SHARDS)
                .execution_options(synchronize_session=False)
            )
            if touched.rowcount == 1:  # type: ignore[attr-defined]
                merges.append(row.id)
            session.commit()
    return merges, settled


def _cas(session: Session, table, condition, values: dict[str, object]) -> list:  # type: ignore[no-untyped-def]
    """Apply `values` to every row of `table` (jobs or shards) matching `condition`, one CAS update per
    row, and return the ids whose update won (a row another process moved in between is skipped)."""
    won = []
    for row_id in session.scalars(select(table.id).where(condition)).all():
        result = session.execute(
            update(table)
            .where(table.id == row_id, condition)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            won.append(row_id)
    return won
