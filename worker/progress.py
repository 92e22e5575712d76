"""The bridge between a running battery and the job row: heartbeat + progress, cancellation polling,
and saving each auditor's result and artifacts the moment it finishes (so a redelivery resumes)."""

from __future__ import annotations

import mimetypes
import threading
import time
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from auditors.report import AuditResult
from occulta import jobs
from occulta.db import ArtifactRecord, AuditResultRecord
from occulta.storage import ObjectStore, join_key, validate_relative_path

REPORT_FILES = ("report.json", "report.html", "summary.md")


class Heartbeat:
    """Writes progress at most once a second from the callbacks, and a heartbeat from a thread every
    `interval` seconds even while an audit is between progress calls (e.g. loading a model)."""

    def __init__(self, sessions: sessionmaker[Session], job_id: str, *, interval: float) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.interval = interval
        self.fraction = 0.0
        self.message = "running"
        self._last_write = 0.0
        self._last_poll = 0.0
        self._cancelled = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _write(self) -> None:
        with self._lock, self.sessions() as session:
            if not jobs.heartbeat(session, self.job_id, progress=self.fraction, message=self.message):
                self._cancelled = True  # the job left `running` (cancelled, or taken back by the sweep)
            self._last_write = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message
        if time.monotonic() - self._last_write >= 1.0:
            self._write()

    def cancelled(self) -> bool:
        if not self._cancelled and time.monotonic() - self._last_poll >= 1.0:
            with self.sessions() as session:
                self._cancelled = jobs.cancel_requested(session, self.job_id)
            self._last_poll = time.monotonic()
        return self._cancelled


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
