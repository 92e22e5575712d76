"""Audit jobs on the request side, for the REST routes and the dashboard alike: submit (validate the
battery, create the job once per Idempotency-Key, stage its message in the outbox, wake the relay),
cancel, list with a keyset cursor, and read what the worker stored (results, report, artifacts)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auditors.regions import Region
from auditors.report import Report
from occulta import jobs
from occulta.db import ArtifactRecord, AuditJob, AuditResultRecord, new_id, utcnow
from occulta.db.models import STATUSES
from occulta.errors import ConflictError, NotFoundError, OccultaError
from occulta.jobs import outbox
from occulta.jobs.task_names import RUN_AUDIT
from occulta.service.battery import Accepted, accept
from occulta.service.estimates import estimate_of
from occulta.service.scope import get_owned
from occulta.storage import ObjectStore, audit_prefix, validate_relative_path

# How long the relay leaves a new job's message to the request that sends it right after commit.
SEND_HOLD = timedelta(seconds=10)
# The stored report files by download name: (object name, media type).
REPORT_FILES = {
    "report": ("report.json", "application/json"),
    "report.html": ("report.html", "text/html"),
    "report.md": ("summary.md", "text/markdown; charset=utf-8"),
}


class Relay(Protocol):
    """What submitting needs from the queue: send a job's outbox rows now, or leave them to the relay
    (never raises: the job is committed either way)."""

    def flush(self, job_id: str) -> None: ...


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Submission:
    """What submitting answers: the job, whether this request created it (else: an Idempotency-Key
    replay), and the estimate of its cost (`service.estimates`), from the rows read to validate it."""

    job: AuditJob
    created: bool
    estimate: dict[str, Any]


def submit_audit(
    session: Session,
    relay: Relay,
    store: ObjectStore | None,
    *,
    tenant_id: str,
    model_id: str,
    dataset_id: str,
    audits: list[str],
    configs: dict[str, dict[str, Any]],
    seed: int,
    samples: int | None,
    regions: Sequence[Region] | None,
    idempotency_key: str | None,
) -> Submission:
    """The job row and its outbox message commit together, then the message is sent (or left to the
    relay when the broker is down), so a broker outage only delays the audit. With an Idempotency-Key,
    the same body returns the first job (created=False) and a different body is a conflict: a retried
    CI request must never start a second audit. The battery is validated once (`battery.accept`), and
    the estimate comes from what that read (`store` None: passes only, no calibration)."""
    plain = [r.model_dump(mode="json", exclude_none=True) for r in regions or []] or None
    body = {
        "model_id": model_id,
        "dataset_id": dataset_id,
        "audits": audits,
        "config": configs,
        "seed": seed,
        "samples": samples,
        "regions": plain,
    }
    digest = request_hash(body)

    def accepted() -> Accepted:
        return accept(
            session,
            tenant_id=tenant_id,
            model_id=model_id,
            dataset_id=dataset_id,
            audits=audits,
            configs=configs,
            regions=plain,
        )

    if idempotency_key is not None:
        existing = _by_key(session, tenant_id, idempotency_key)
        if existing is not None:
            job = _replay(existing, digest, idempotency_key)
            return Submission(job, False, estimate_of(store, accepted(), samples))
    battery = accepted()
    job = AuditJob(
        id=new_id("aud"),
        tenant_id=tenant_id,
        model_id=model_id,
        dataset_id=dataset_id,
        audits=audits,
        configs=battery.configs_json,
        regions=plain,
        seed=seed,
        samples=samples,
        idempotency_key=idempotency_key,
        request_hash=digest,
        message="queued",
        heartbeat_at=utcnow(),  # for a queued job: when its message was sent (see jobs.sweep)
    )
    session.add(job)
    try:
        session.flush()  # the outbox row references the job
        outbox.add(session, job_id=job.id, task=RUN_AUDIT, args=[job.id], hold=SEND_HOLD)
        session.commit()
    except IntegrityError:
        # Two requests with one key raced; the loser answers with the winner's job.
        session.rollback()
        existing = _by_key(session, tenant_id, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return Submission(
            _replay(existing, digest, idempotency_key or ""), False, estimate_of(store, battery, samples)
        )
    relay.flush(job.id)
    return Submission(job, True, estimate_of(store, battery, samples))


def _by_key(session: Session, tenant_id: str, key: str) -> AuditJob | None:
    return session.scalars(
        select(AuditJob).where(AuditJob.tenant_id == tenant_id, AuditJob.idempotency_key == key)
    ).one_or_none()


def _replay(job: AuditJob, digest: str, key: str) -> AuditJob:
    if job.request_hash != digest:
        raise ConflictError(f"Idempotency-Key {key!r} was already used with a different request body")
    return job


def encode_cursor(job: AuditJob) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        return datetime.fromisoformat(created), str(job_id)
    except (ValueError, TypeError) as exc:
        raise OccultaError("invalid cursor: pass the `next_cursor` of the previous page") from exc


def list_audits(
    session: Session,
    *,
    tenant_id: str,
    status: str | None = None,
    model_id: str | None = None,
    verdict: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[AuditJob], str | None]:
    """Newest first, keyset-paginated on (created_at, id) so pages stay stable while jobs are added."""
    if status is not None and status not in STATUSES:
        raise OccultaError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    query = select(AuditJob).where(AuditJob.tenant_id == tenant_id)
    if status:
        query = query.where(AuditJob.status == status)
    if model_id:
        query = query.where(AuditJob.model_id == model_id)
    if verdict:
        query = query.where(AuditJob.verdict == verdict)
    if cursor:
        created, last_id = _decode_cursor(cursor)
        query = query.where(
            or_(AuditJob.created_at < created, and_(AuditJob.created_at == created, AuditJob.id < last_id))
        )
    rows = list(
        session.scalars(query.order_by(AuditJob.created_at.desc(), AuditJob.id.desc()).limit(limit + 1))
    )
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def history_by_model(
    session: Session, *, tenant_id: str, model_ids: Sequence[str], limit: int
) -> dict[str, list[AuditJob]]:
    """Each model's newest `limit` audits, newest first, in one query (a page listing N models must
    not run N queries)."""
    if not model_ids:
        return {}
    rank = (
        func.row_number()
        .over(partition_by=AuditJob.model_id, order_by=(AuditJob.created_at.desc(), AuditJob.id.desc()))
        .label("rank")
    )
    ranked = (
        select(AuditJob.id, rank)
        .where(AuditJob.tenant_id == tenant_id, AuditJob.model_id.in_(list(model_ids)))
        .subquery()
    )
    rows = session.scalars(
        select(AuditJob)
        .join(ranked, ranked.c.id == AuditJob.id)
        .where(ranked.c.rank <= limit)
        .order_by(AuditJob.created_at.desc(), AuditJob.id.desc())
    )
    out: dict[str, list[AuditJob]] = {m: [] for m in model_ids}
    for job in rows:
        out.setdefault(job.model_id or "", []).append(job)
    return out


def results_by_job(session: Session, *, job_ids: Sequence[str]) -> dict[str, list[AuditResultRecord]]:
    """Each job's saved results in the order they finished, for many jobs in one query."""
    out: dict[str, list[AuditResultRecord]] = {j: [] for j in job_ids}
    if not job_ids:
        return out
    query = select(AuditResultRecord).where(AuditResultRecord.job_id.in_(list(job_ids)))
    for row in session.scalars(query.order_by(AuditResultRecord.id)):
        out[row.job_id].append(row)
    return out


def get_audit(session: Session, *, tenant_id: str, audit_id: str) -> AuditJob:
    return get_owned(session, AuditJob, audit_id, tenant_id=tenant_id, what="audit")


def cancel_audit(session: Session, *, tenant_id: str, audit_id: str) -> AuditJob:
    """A queued audit is cancelled at once; a running one stops at its next batch; a finished one is a
    conflict. Returns the row as it is after the request."""
    get_audit(session, tenant_id=tenant_id, audit_id=audit_id)
    jobs.request_cancel(session, audit_id, tenant_id=tenant_id)
    session.expire_all()
    return get_audit(session, tenant_id=tenant_id, audit_id=audit_id)


def result_rows(session: Session, *, job_id: str) -> list[AuditResultRecord]:
    """Each saved auditor result of a job, in the order they finished."""
    query = select(AuditResultRecord).where(AuditResultRecord.job_id == job_id)
    return list(session.scalars(query.order_by(AuditResultRecord.id)))


def report_file(
    session: Session, store: ObjectStore, *, tenant_id: str, audit_id: str, which: str
) -> tuple[str, str]:
    """(storage key, media type) of a finished audit's report file; NotFound until it is written."""
    job = get_audit(session, tenant_id=tenant_id, audit_id=audit_id)
    name, media_type = REPORT_FILES[which]
    key = audit_prefix(job.tenant_id, job.id) + name
    if not store.exists(key):
        raise NotFoundError(f"audit {audit_id} has no report yet (status: {job.status})")
    return key, media_type


def load_report(session: Session, store: ObjectStore, *, tenant_id: str, audit_id: str) -> Report:
    """The parsed report of a finished audit (the gate and the dashboard read it through here)."""
    key, _ = report_file(session, store, tenant_id=tenant_id, audit_id=audit_id, which="report")
    return Report.model_validate_json(store.read_bytes(key))


def find_artifact(session: Session, *, tenant_id: str, audit_id: str, path: str) -> ArtifactRecord:
    """One artifact row of the caller's audit; the path is validated before it is looked up."""
    job = get_audit(session, tenant_id=tenant_id, audit_id=audit_id)
    clean = validate_relative_path(path)
    row = session.scalars(
        select(ArtifactRecord).where(ArtifactRecord.job_id == job.id, ArtifactRecord.path == clean)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"audit {audit_id} has no artifact {clean}")
    return row
