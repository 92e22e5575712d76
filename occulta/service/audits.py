"""Audit jobs on the request side: validate a battery, create the job once per Idempotency-Key, list
with a keyset cursor, and read what the worker stored (results, report files)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auditors.report import AuditResult
from occulta.db import AuditJob, AuditResultRecord, DatasetRecord, ModelRecord, new_id, utcnow
from occulta.db.models import STATUSES
from occulta.errors import AuditConfigError, ConflictError, OccultaError
from occulta.service.scope import get_owned


def validate_battery(audits: list[str], configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The runner's own check (names known, configs valid), run at request time so a bad battery is a
    422 now rather than a failed job later; returns the configs with defaults filled in, so the worker
    runs exactly what was accepted."""
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


def create_audit(
    session: Session,
    *,
    tenant_id: str,
    model_id: str,
    dataset_id: str,
    audits: list[str],
    configs: dict[str, dict[str, Any]],
    seed: int,
    samples: int | None,
    regions: list[dict[str, Any]] | None,
    idempotency_key: str | None,
) -> tuple[AuditJob, bool]:
    """(job, created). With an Idempotency-Key, the same body returns the first job (created=False) and a
    different body is a conflict: a retried CI request must never start a second audit."""
    body = {
        "model_id": model_id,
        "dataset_id": dataset_id,
        "audits": audits,
        "config": configs,
        "seed": seed,
        "samples": samples,
        "regions": regions or None,
    }
    digest = request_hash(body)
    if idempotency_key is not None:
        existing = _by_key(session, tenant_id, idempotency_key)
        if existing is not None:
            return _replay(existing, digest, idempotency_key), False
    model = get_owned(session, ModelRecord, model_id, tenant_id=tenant_id, what="model")
    get_owned(session, DatasetRecord, dataset_id, tenant_id=tenant_id, what="dataset")
    validated = validate_battery(audits, configs)
    check_regions(regions, model.card)
    job = AuditJob(
        id=new_id("aud"),
        tenant_id=tenant_id,
        model_id=model_id,
        dataset_id=dataset_id,
        audits=audits,
        configs=validated,
        regions=regions or None,
        seed=seed,
        samples=samples,
        idempotency_key=idempotency_key,
        request_hash=digest,
        message="queued",
        heartbeat_at=utcnow(),  # for a queued job: when its message was sent (see jobs.sweep)
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


def saved_results(session: Session, job_id: str) -> dict[str, AuditResult]:
    """Per-auditor results already saved for a job (the worker resumes from these)."""
    rows = session.scalars(select(AuditResultRecord).where(AuditResultRecord.job_id == job_id)).all()
    return {row.name: AuditResult.model_validate(row.result) for row in rows}
