"""Audit jobs on the request side, for the REST routes and the dashboard alike: submit (validate the
battery, create the job once per Idempotency-Key, stage its message in the outbox, wake the relay),
cancel, list with a keyset cursor, and read what the worker stored (results, report, artifacts)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auditors.regions import Region
from auditors.report import AuditResult, Report
from occulta import jobs
from occulta.db import ArtifactRecord, AuditJob, AuditResultRecord, DatasetRecord, ModelRecord, new_id, utcnow
from occulta.db.models import STATUSES
from occulta.errors import AuditConfigError, ConflictError, NotFoundError, OccultaError
from occulta.jobs import fairness
from occulta.service.scope import get_owned
from occulta.storage import ObjectStore, audit_prefix, validate_relative_path

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


def accept_battery(audits: list[str], configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The runner's own check (names known, configs valid), run at request time so a bad battery is a
    422 now rather than a failed job later; returns the configs with defaults filled in as JSON, so the
    worker runs exactly what was accepted."""
    from occulta.runner import validate_battery as check

    if len(set(audits)) != len(audits):
        raise AuditConfigError("`audits` lists the same audit twice")
    try:
        parsed = check(audits, configs)
    except ModuleNotFoundError as exc:
        raise AuditConfigError(f"an audit of {audits} is not installed on this server ({exc.name})") from None
    return {name: config.model_dump(mode="json") for name, config in parsed.items()}


def check_regions(regions: list[dict[str, Any]] | None, card: dict[str, Any]) -> None:
    """Every region must fit the model's input (a 422 now, not a failed job later)."""
    from occulta.runner import parse_regions

    size = card.get("input_size") or []
    parse_regions(regions, (int(size[1]), int(size[2])) if len(size) == 3 else None)


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def submit_audit(
    session: Session,
    relay: Relay,
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
    policy: fairness.Policy | None = None,
    interactive: bool = False,
) -> tuple[AuditJob, bool]:
    """(job, created): the job row commits, then the dispatcher stages its message in the outbox and it
    is sent (or left to the relay when the broker is down), so a broker outage only delays the audit. With an
    Idempotency-Key, the same body returns the first job (created=False) and a different body is a
    conflict: a retried CI request must never start a second audit. The job waits in its tenant's line
    until the fair dispatcher (`occulta.jobs.fairness`, under `policy`) releases it."""
    policy = policy or fairness.Policy()
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
    if idempotency_key is not None:
        existing = _by_key(session, tenant_id, idempotency_key)
        if existing is not None:
            return _replay(existing, digest, idempotency_key), False
    model = get_owned(session, ModelRecord, model_id, tenant_id=tenant_id, what="model")
    get_owned(session, DatasetRecord, dataset_id, tenant_id=tenant_id, what="dataset")
    validated = accept_battery(audits, configs)
    check_regions(plain, model.card)
    fairness.admit(session, tenant_id, policy, model)
    job = AuditJob(
        id=new_id("aud"),
        tenant_id=tenant_id,
        model_id=model_id,
        dataset_id=dataset_id,
        audits=audits,
        configs=validated,
        regions=plain,
        seed=seed,
        samples=samples,
        idempotency_key=idempotency_key,
        request_hash=digest,
        message="queued",
        heartbeat_at=utcnow(),  # for a queued job: when its message was sent (see jobs.sweep)
        priority=fairness.INTERACTIVE if interactive else fairness.BATCH,
    )
    session.add(job)
    try:
        session.commit()
    except IntegrityError:
        # Two requests with one key raced; the loser answers with the winner's job.
        session.rollback()
        existing = _by_key(session, tenant_id, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return _replay(existing, digest, idempotency_key or ""), False
    for released in fairness.dispatch(session, policy):
        relay.flush(released)
    return job, True


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


def saved_results(session: Session, job_id: str) -> dict[str, AuditResult]:
    """Per-auditor results already saved for a job (the worker resumes from these)."""
    rows = session.scalars(select(AuditResultRecord).where(AuditResultRecord.job_id == job_id)).all()
    return {row.name: AuditResult.model_validate(row.result) for row in rows}
