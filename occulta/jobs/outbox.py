"""The transactional outbox: a task message is a row written in the same transaction as the work it
starts (a new job, a re-queued job, a re-sent shard), and a relay hands due rows to the broker.

Why: committing a job and then sending its message are two systems; if the broker is down (or the
process dies) between them, the job would sit `queued` until the sweep's redelivery horizon (over an
hour). With the outbox the message survives in the database and the relay sends it within seconds of
the broker's return. A row is deleted once the broker took it; a failed send is retried with a
capped backoff. Rows are locked `FOR UPDATE SKIP LOCKED`, so several relays (API replicas, the beat
sweep) never send one row twice at once; a duplicate after a crash is harmless, claims are CAS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from occulta.db.base import utcnow
from occulta.db.models import QUEUED, AuditJob, OutboxMessage

# send(task_name, args): raises when the broker did not take the message.
Send = Callable[[str, list[Any]], None]
MAX_BACKOFF_SECONDS = 5.0


def add(session: Session, *, job_id: str, task: str, args: list[Any], hold: timedelta = timedelta(0)) -> None:
    """Stage a message in the caller's transaction; it is sent only if that transaction commits. With
    `hold`, background relays leave it alone that long: the caller sends it itself right after commit
    (`relay(..., job_id=...)`), and a relay picking it up meanwhile would only race that send."""
    due = utcnow() + hold
    session.add(OutboxMessage(job_id=job_id, task=task, args=args, attempts=0, next_attempt_at=due))


def backoff(attempts: int) -> timedelta:
    """0.5 s, 1 s, 2 s, 4 s, then every 5 s: a broker back from an outage is used within seconds."""
    return timedelta(seconds=min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class RelayResult:
    sent: int
    failed: int  # sends that raised this round (0 or 1: a batch stops at the first failure)
    error: str | None = None


def relay(
    session: Session, send: Send, *, job_id: str | None = None, first_send: bool = False, limit: int = 100
) -> RelayResult:
    """Send every due row (of one job, or all), oldest first; stop at the first failure (the broker is
    down: trying the rest now only waits out more connect timeouts) and push that row's next attempt
    back. `first_send`: the submitter's own send right after commit, of its rows never tried yet,
    held or not."""
    query = select(OutboxMessage)
    if job_id is not None:
        query = query.where(OutboxMessage.job_id == job_id)
    if first_send:
        query = query.where(OutboxMessage.attempts == 0)
    else:
        query = query.where(OutboxMessage.next_attempt_at <= utcnow())
    rows = session.scalars(
        query.order_by(OutboxMessage.id).limit(limit).with_for_update(skip_locked=True)
    ).all()
    sent = 0
    for row in rows:
        try:
            send(row.task, list(row.args))
        except Exception as exc:
            row.attempts += 1
            row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            row.next_attempt_at = utcnow() + backoff(row.attempts)
            session.commit()
            return RelayResult(sent=sent, failed=1, error=row.last_error)
        # For a queued job `heartbeat_at` is when its message was sent (the sweep's re-send clock).
        session.execute(
            update(AuditJob)
            .where(AuditJob.id == row.job_id, AuditJob.status == QUEUED)
            .values(heartbeat_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        session.delete(row)
        sent += 1
    session.commit()
    return RelayResult(sent=sent, failed=0)


def pending(session: Session) -> int:
    """Rows not yet sent (for health checks and tests)."""
    count = len(session.scalars(select(OutboxMessage.id)).all())
    session.rollback()
    return count
