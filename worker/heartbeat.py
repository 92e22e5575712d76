"""Liveness and progress of a running job or shard, and cancellation polling, written to its row.

A database error inside a callback must never become an audit's verdict: the runner turns an
auditor's exception into an `error` result and carries on, so a failed write here is raised as
`JobInterrupted` (the runner's stop signal, which it re-raises) carrying the database error, and the
base task retries the job as a transient failure.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from auditors.errors import AuditCancelled
from occulta import jobs
from occulta.jobs import shards


class JobInterrupted(AuditCancelled):
    """The job's own bookkeeping failed (the database): stop the battery, retry the job."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"interrupted by {type(cause).__name__}: {cause}")
        self.cause = cause


class Heartbeat:
    """Writes progress at most once a second from the callbacks, and a heartbeat from a thread every
    `interval` seconds even while an audit is between progress calls (e.g. loading a model)."""

    def __init__(self, sessions: sessionmaker[Session], job_id: str, *, interval: float) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.interval = interval
        self.fraction = 0.0
        self.message = "running"
        self.failure: BaseException | None = None  # a database error of the beat thread
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

    def write(self, session: Session) -> bool:
        """One heartbeat row update; False when the job left `running` (cancelled, or swept)."""
        return jobs.heartbeat(session, self.job_id, progress=self.fraction, message=self.message)

    def _write(self) -> None:
        with self._lock, self.sessions() as session:
            if not self.write(session):
                self._cancelled = True
            self._last_write = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._write()
            except SQLAlchemyError as exc:
                self.failure = exc  # raised in the task's thread at its next callback

    def _check(self) -> None:
        if self.failure is not None:
            raise JobInterrupted(self.failure)

    def progress(self, fraction: float, message: str) -> None:
        self._check()
        self.fraction, self.message = fraction, message
        if time.monotonic() - self._last_write >= 1.0:
            try:
                self._write()
            except SQLAlchemyError as exc:
                raise JobInterrupted(exc) from exc

    def cancelled(self) -> bool:
        self._check()
        if not self._cancelled and time.monotonic() - self._last_poll >= 1.0:
            try:
                with self.sessions() as session:
                    self._cancelled = jobs.cancel_requested(session, self.job_id)
            except SQLAlchemyError as exc:
                raise JobInterrupted(exc) from exc
            self._last_poll = time.monotonic()
        return self._cancelled


class ShardBeat(Heartbeat):
    """Heartbeat of one shard: its own row's progress, and the job's aggregate (shards done / total)."""

    def __init__(
        self, sessions: sessionmaker[Session], job_id: str, shard_id: int, *, interval: float
    ) -> None:
        super().__init__(sessions, job_id, interval=interval)
        self.shard_id = shard_id

    def write(self, session: Session) -> bool:
        shards.beat(session, self.shard_id, self.fraction)
        overall, summary = shards.progress(session, self.job_id)
        return jobs.heartbeat(session, self.job_id, progress=overall, message=f"{summary}; {self.message}")
