"""Shard transitions: `queued → running → done | failed | cancelled` per image range of an audit.

(The sharding arithmetic, plan/run/merge of one audit, is the audit's: `auditors.audits.base`.) Like a
job's, every transition is one compare-and-set UPDATE, so a redelivered shard message (Redis
redelivery, a re-planned job, a sweep re-send) finds its shard done or held and does nothing; a shard
released for a retry goes back to `queued` and only that shard runs again. Partials are stored on the
row. For a queued shard `heartbeat_at` is when its message was last sent (see `occulta.jobs.sweep`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from occulta.db.base import utcnow
from occulta.db.models import CANCELLED, DONE, FAILED, QUEUED, RUNNING, AuditShardRecord

__all__ = ["DONE", "SHARD_SHARE", "ShardClaim"]
# Share of the job's progress bar that the shards fill; the merge and unsharded audits take the rest.
SHARD_SHARE = 0.9


@dataclass(frozen=True)
class ShardClaim:
    """Plain values for the worker that won a shard."""

    id: int
    job_id: str
    audit: str
    index: int
    start: int
    stop: int
    attempt: int


def plan(session: Session, *, job_id: str, tenant_id: str, audit: str, ranges: list[range]) -> None:
    """Record the shards of one audit once; a re-plan (a redelivered job) keeps the existing rows, so
    shards already done stay done."""
    exists = session.scalar(
        select(AuditShardRecord.id).where(AuditShardRecord.job_id == job_id, AuditShardRecord.audit == audit)
    )
    now = utcnow()
    if exists is None:
        for i, r in enumerate(ranges):
            session.add(
                AuditShardRecord(
                    job_id=job_id,
                    tenant_id=tenant_id,
                    audit=audit,
                    shard_index=i,
                    start=r.start,
                    stop=r.stop,
                    status=QUEUED,
                    heartbeat_at=now,
                )
            )
    session.commit()


def to_run(session: Session, job_id: str) -> list[tuple[str, int]]:
    """(audit, index) of every shard not yet done, in order: what a (re-)fan-out must send."""
    rows = session.execute(
        select(AuditShardRecord.audit, AuditShardRecord.shard_index)
        .where(AuditShardRecord.job_id == job_id, AuditShardRecord.status != DONE)
        .order_by(AuditShardRecord.audit, AuditShardRecord.shard_index)
    ).all()
    session.rollback()
    return [(r.audit, r.shard_index) for r in rows]


def claim(
    session: Session, job_id: str, audit: str, index: int, *, worker: str, stale_after: timedelta
) -> ShardClaim | None:
    """Queued (or running with a stale heartbeat: its worker died) → running; None otherwise."""
    now = utcnow()
    key = and_(
        AuditShardRecord.job_id == job_id,
        AuditShardRecord.audit == audit,
        AuditShardRecord.shard_index == index,
    )
    claimable = or_(
        AuditShardRecord.status == QUEUED,
        and_(AuditShardRecord.status == RUNNING, AuditShardRecord.heartbeat_at < now - stale_after),
    )
    result = session.execute(
        update(AuditShardRecord)
        .where(key, claimable)
        .values(
            status=RUNNING,
            attempts=AuditShardRecord.attempts + 1,
            heartbeat_at=now,
            worker=worker,
            progress=0.0,
            error=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    row = session.execute(
        select(
            AuditShardRecord.id, AuditShardRecord.start, AuditShardRecord.stop, AuditShardRecord.attempts
        ).where(key)
    ).one()
    session.rollback()
    return ShardClaim(row.id, job_id, audit, index, row.start, row.stop, row.attempts)


def find(session: Session, job_id: str, audit: str, index: int) -> int | None:
    """The row id of one shard (for the task's outcome hooks, which get only the message's args)."""
    shard_id = session.scalar(
        select(AuditShardRecord.id).where(
            AuditShardRecord.job_id == job_id,
            AuditShardRecord.audit == audit,
            AuditShardRecord.shard_index == index,
        )
    )
    session.rollback()
    return shard_id


def _move(session: Session, shard_id: int, source: tuple[str, ...], **values: Any) -> bool:
    result = session.execute(
        update(AuditShardRecord)
        .where(AuditShardRecord.id == shard_id, AuditShardRecord.status.in_(source))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def beat(session: Session, shard_id: int, progress: float) -> bool:
    return _move(session, shard_id, (RUNNING,), heartbeat_at=utcnow(), progress=min(max(progress, 0.0), 1.0))


def complete(session: Session, shard_id: int, partial: dict[str, Any]) -> bool:
    """Running → done with its partial; False if the shard was taken from this worker meanwhile."""
    return _move(
        session, shard_id, (RUNNING,), status=DONE, progress=1.0, partial=partial, finished_at=utcnow()
    )


def release(session: Session, shard_id: int, *, error: str) -> bool:
    """Running → queued, so the retry of this one shard can claim it again."""
    return _move(
        session, shard_id, (RUNNING,), status=QUEUED, progress=0.0, error=error[:4000], heartbeat_at=utcnow()
    )


def fail(session: Session, shard_id: int, *, error: str) -> bool:
    return _move(
        session, shard_id, (RUNNING, QUEUED), status=FAILED, error=error[:4000], finished_at=utcnow()
    )


def cancel(session: Session, shard_id: int) -> bool:
    return _move(session, shard_id, (RUNNING, QUEUED), status=CANCELLED, finished_at=utcnow())


def counts(session: Session, job_id: str) -> Counter[str]:
    """How many shards of the job are in each state."""
    rows = session.execute(select(AuditShardRecord.status).where(AuditShardRecord.job_id == job_id)).scalars()
    out = Counter(rows)
    session.rollback()
    return out


Outcome = Literal["cancelled", "failed", "waiting", "ready"]


def outcome(session: Session, job_id: str, *, cancel_requested: bool) -> tuple[Outcome, Counter[str]]:
    """What a job's shards add up to, for the merge and the sweep alike: `cancelled` (asked, or a shard
    was), `failed` (a shard failed for good), `waiting` (some still queued or running), `ready`."""
    n = counts(session, job_id)
    if cancel_requested or n[CANCELLED]:
        return "cancelled", n
    if n[FAILED]:
        return "failed", n
    if n[QUEUED] or n[RUNNING]:
        return "waiting", n
    return "ready", n


def progress(session: Session, job_id: str) -> tuple[float, str]:
    """Job progress while sharded: (shards done + in-shard fractions) / shards, scaled to SHARD_SHARE."""
    rows = session.execute(
        select(AuditShardRecord.status, AuditShardRecord.progress).where(AuditShardRecord.job_id == job_id)
    ).all()
    session.rollback()
    if not rows:
        return 0.0, "sharded"
    done = sum(1 for r in rows if r.status == DONE)
    fraction = sum(1.0 if r.status == DONE else float(r.progress) for r in rows) / len(rows)
    return SHARD_SHARE * fraction, f"shards: {done} of {len(rows)} done"


def partials(session: Session, job_id: str, audit: str) -> list[dict[str, Any]]:
    """Every done shard's partial for one audit, in image order."""
    rows = session.scalars(
        select(AuditShardRecord.partial)
        .where(
            AuditShardRecord.job_id == job_id,
            AuditShardRecord.audit == audit,
            AuditShardRecord.status == DONE,
        )
        .order_by(AuditShardRecord.start)
    ).all()
    session.rollback()
    return [dict(p) for p in rows if p is not None]


def audits_sharded(session: Session, job_id: str) -> list[str]:
    names = session.scalars(
        select(AuditShardRecord.audit).where(AuditShardRecord.job_id == job_id).distinct()
    ).all()
    session.rollback()
    return sorted(names)
