"""Fair dispatch: tenants share the workers in turn, not first come first served.

A new audit is committed `queued` but not yet sent: it waits in its tenant's line (`dispatched_at` is
NULL). The dispatcher releases audits onto the one Celery queue only while the fleet has room (`slots`
audits in flight, sent or running), each time to the tenant with the fewest audits in flight, the one
served longest ago on a tie (round robin over per-tenant lines). Audits launched by a person on the
dashboard (`INTERACTIVE`) go first. So a tenant that queued 500 audits holds its share of the workers,
and another tenant's one audit is sent at the next free slot: within one audit's duration.

Released means: `dispatched_at` set and the message staged in the outbox in one transaction, so
everything `occulta.jobs.outbox` guarantees still holds (a broker outage delays, never loses; claims
are CAS, so a duplicate release runs nothing twice). Dispatch runs after each submit, on the API's
relay tick and in the beat sweep; concurrent dispatchers on PostgreSQL take turns (an advisory lock
held for the round's transaction).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.orm import Session

from occulta.db.base import utcnow
from occulta.db.models import QUEUED, RUNNING, AuditJob
from occulta.errors import RateLimitedError
from occulta.jobs import outbox
from occulta.jobs.memory_fit import ModelFacts, check_fits
from occulta.jobs.task_names import RUN_AUDIT

if TYPE_CHECKING:
    from occulta.settings import Settings

BATCH = 0
INTERACTIVE = 1
_LOCK_KEY = 0x0CC017A  # pg_advisory_xact_lock key of the dispatcher


@dataclass(frozen=True)
class Policy:
    """How the fleet is shared (from `Settings`: `Policy.of(settings)`)."""

    slots: int = 1_000_000  # audits in flight (sent or running) at once: the fleet's worker slots
    tenant_max_running: int = 0  # audits of one tenant in flight at once; 0: no cap beyond fairness
    tenant_max_active: int = 0  # queued + running audits one tenant may hold; 0: unlimited
    retry_after: int = 30  # seconds a refused submitter is told to wait
    worker_memory_gib: float | None = None  # the workers' GPU memory, when known

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            slots=int(settings.dispatch_slots),
            tenant_max_running=int(settings.tenant_max_running),
            tenant_max_active=int(settings.tenant_max_active),
            retry_after=int(settings.tenant_retry_after_seconds),
            worker_memory_gib=settings.worker_gpu_memory_gib,
        )


@dataclass(frozen=True)
class Waiting:
    """The head of a tenant's line: an audit not yet released."""

    job_id: str
    tenant_id: str
    priority: int
    created_at: datetime


def admit(session: Session, tenant_id: str, policy: Policy, model: ModelFacts) -> None:
    """Refuse a new audit: 422 when the model cannot run on the workers' GPUs, 429 when the tenant
    already holds its limit of queued and running audits."""
    check_fits(model, policy.worker_memory_gib)
    if policy.tenant_max_active <= 0:
        return
    active = session.scalar(
        select(func.count())
        .select_from(AuditJob)
        .where(AuditJob.tenant_id == tenant_id, AuditJob.status.in_((QUEUED, RUNNING)))
    )
    if int(active or 0) >= policy.tenant_max_active:
        raise RateLimitedError(
            f"this tenant already has {active} audits queued or running, the limit is "
            f"{policy.tenant_max_active}; retry after {policy.retry_after} s, or cancel some",
            retry_after=policy.retry_after,
        )


def pick(
    heads: dict[str, list[Waiting]],
    in_flight: dict[str, int],
    last_served: dict[str, float],
    free: int,
    *,
    tenant_max_running: int = 0,
) -> list[Waiting]:
    """The next `free` audits to release, in order (pure: the simulation bench drives this too).
    `heads`: each tenant's waiting audits in line order; `last_served`: when each tenant last had an
    audit released (any increasing number)."""
    lines = {t: list(queue) for t, queue in heads.items() if queue}
    flying = defaultdict(int, in_flight)
    served = dict(last_served)
    clock = max(served.values(), default=0.0)
    chosen: list[Waiting] = []
    while len(chosen) < free:
        open_lines = [
            t for t in lines if lines[t] and (tenant_max_running <= 0 or flying[t] < tenant_max_running)
        ]
        if not open_lines:
            break
        tenant = min(
            open_lines,
            key=lambda t: (
                -lines[t][0].priority,
                flying[t],
                served.get(t, float("-inf")),
                lines[t][0].created_at,
            ),
        )
        chosen.append(lines[tenant].pop(0))
        flying[tenant] += 1
        clock += 1.0
        served[tenant] = clock
    return chosen


def in_line():  # type: ignore[no-untyped-def]
    """Queued audits not yet released."""
    return and_(AuditJob.status == QUEUED, AuditJob.dispatched_at.is_(None))


def dispatch(session: Session, policy: Policy) -> list[str]:
    """Release the audits the fleet has room for (see the module docstring); returns their ids, whose
    outbox rows are committed and due now (the caller may `relay.flush` them, or leave it to the relay)."""
    if session.get_bind().dialect.name == "postgresql":
        # One dispatcher at a time counts the free slots (a round takes milliseconds): two at once
        # would both see the same room and send more than the fleet has.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    flying_rows = session.execute(
        select(AuditJob.tenant_id, func.count())
        .where(
            or_(
                AuditJob.status == RUNNING,
                and_(AuditJob.status == QUEUED, AuditJob.dispatched_at.is_not(None)),
            )
        )
        .group_by(AuditJob.tenant_id)
    ).all()
    in_flight = {str(t): int(n) for t, n in flying_rows}
    free = policy.slots - sum(in_flight.values())
    if free <= 0:
        session.rollback()
        return []
    heads = _heads(session, free)
    if not heads:
        session.rollback()
        return []
    last_served = {}
    for tenant in heads:  # one probe of the (tenant_id, dispatched_at) index each: few tenants wait at once
        when = session.scalar(select(func.max(AuditJob.dispatched_at)).where(AuditJob.tenant_id == tenant))
        if when is not None:
            last_served[tenant] = when.timestamp()
    chosen = pick(heads, in_flight, last_served, free, tenant_max_running=policy.tenant_max_running)
    now = utcnow()
    released = []
    for waiting in chosen:
        won = session.execute(
            update(AuditJob)
            .where(AuditJob.id == waiting.job_id, in_line())
            .values(dispatched_at=now, heartbeat_at=now, message="queued: sent to the workers")
            .execution_options(synchronize_session=False)
        )
        if won.rowcount == 1:  # type: ignore[attr-defined]
            outbox.add(session, job_id=waiting.job_id, task=RUN_AUDIT, args=[waiting.job_id])
            released.append(waiting.job_id)
    session.commit()
    return released


def _heads(session: Session, per_tenant: int) -> dict[str, list[Waiting]]:
    """Up to `per_tenant` waiting audits of each tenant, interactive first, then oldest first."""
    rank = (
        func.row_number()
        .over(
            partition_by=AuditJob.tenant_id,
            order_by=(AuditJob.priority.desc(), AuditJob.created_at, AuditJob.id),
        )
        .label("rank")
    )
    ranked = (
        select(AuditJob.id, AuditJob.tenant_id, AuditJob.priority, AuditJob.created_at, rank)
        .where(in_line())
        .subquery()
    )
    rows = session.execute(
        select(ranked.c.id, ranked.c.tenant_id, ranked.c.priority, ranked.c.created_at)
        .where(ranked.c.rank <= per_tenant)
        .order_by(ranked.c.tenant_id, ranked.c.rank)
    ).all()
    heads: dict[str, list[Waiting]] = defaultdict(list)
    for row in rows:
        heads[str(row.tenant_id)].append(Waiting(row.id, row.tenant_id, int(row.priority), row.created_at))
    return dict(heads)
