"""A job's results: saved the moment each auditor finishes (so a redelivered job resumes from them):
the result row, its artifacts in object storage, and at the end the report files; and read back by
the worker that resumes or merges (`saved_results`). The worker's side of the job, in the jobs
package, so the worker never reaches into the request side (`occulta.service`)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from auditors.report import AuditResult
from occulta.db import ArtifactRecord, AuditResultRecord
from occulta.storage import ObjectStore, join_key, validate_relative_path

REPORT_FILES = ("report.json", "report.html", "summary.md")


class ResultSaver:
    """Uploads artifacts under `tenants/{t}/audits/{job}/artifacts/` and records each auditor's result."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ObjectStore,
        *,
        tenant_id: str,
        job_id: str,
        prefix: str,
        out_dir: Path,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.tenant_id = tenant_id
        self.job_id = job_id
        self.prefix = prefix
        self.out_dir = out_dir
        self.uploaded: set[str] = set()

    def upload_artifact(self, session: Session, rel: str, media_type: str | None = None) -> None:
        rel = validate_relative_path(rel)
        local = self.out_dir / rel
        if rel in self.uploaded or not local.is_file():
            return
        media = media_type or mimetypes.guess_type(rel)[0] or "application/octet-stream"
        key = join_key(self.prefix, "artifacts", rel)
        stored = self.store.put_file(key, local, content_type=media)
        session.execute(
            delete(ArtifactRecord).where(ArtifactRecord.job_id == self.job_id, ArtifactRecord.path == rel)
        )
        session.add(
            ArtifactRecord(
                job_id=self.job_id,
                tenant_id=self.tenant_id,
                path=rel,
                media_type=media,
                size_bytes=stored.size,
                storage_key=key,
            )
        )
        self.uploaded.add(rel)

    def on_audit_done(self, result: AuditResult) -> None:
        with self.sessions() as session:
            for artifact in result.artifacts:
                self.upload_artifact(session, artifact.path, artifact.media_type)
            session.execute(
                delete(AuditResultRecord).where(
                    AuditResultRecord.job_id == self.job_id, AuditResultRecord.name == result.name
                )
            )
            session.add(
                AuditResultRecord(
                    job_id=self.job_id,
                    tenant_id=self.tenant_id,
                    name=result.name,
                    verdict=result.verdict,
                    result=result.model_dump(mode="json"),
                )
            )
            session.commit()

    def finish(self) -> None:
        """Upload files the results did not list (e.g. raw maps), then the report files themselves."""
        with self.sessions() as session:
            for path in sorted(self.out_dir.rglob("*")):
                rel = path.relative_to(self.out_dir).as_posix()
                if path.is_file() and rel not in REPORT_FILES:
                    self.upload_artifact(session, rel)
            session.commit()
        for name in REPORT_FILES:
            local = self.out_dir / name
            if local.is_file():
                media = {"report.json": "application/json", "report.html": "text/html"}.get(
                    name, "text/markdown"
                )
                self.store.put_file(join_key(self.prefix, name), local, content_type=media)


def saved_results(session: Session, job_id: str) -> dict[str, AuditResult]:
    """Per-auditor results already saved for a job (the worker resumes from these)."""
    rows = session.scalars(select(AuditResultRecord).where(AuditResultRecord.job_id == job_id)).all()
    return {row.name: AuditResult.model_validate(row.result) for row in rows}
