"""Waiting on audits for little: long-polls share one status read per tick, however many clients wait.

A client that waits (`GET /v1/audits/{id}?wait=30`) registers here and awaits a change of the audit's
fingerprint (status, progress, message, verdict); it holds no thread and no database connection
meanwhile. One task per API process reads the status of every watched audit in a single query each
`TICK_SECONDS` and wakes the waiters whose audit changed: 200 waiting clients cost one small indexed
query per tick instead of 200 polls a second, each with its own request, authentication and read.
A database outage only delays the answers (the tick logs and tries again); the waiters time out.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from occulta.db.models import TERMINAL, AuditJob

log = logging.getLogger("occulta.api")
TICK_SECONDS = 0.5
MAX_IDS_PER_READ = 1000


def fingerprint(status: str, progress: float, message: str | None, verdict: str | None) -> str:
    """What a waiter compares: a change of any of these is news (progress to 0.1%)."""
    raw = f"{status}|{round(float(progress or 0.0), 3)}|{message or ''}|{verdict or ''}"
    return hashlib.blake2s(raw.encode(), digest_size=8).hexdigest()


def finished(status: str) -> bool:
    return status in TERMINAL


def current(session: Session, job_id: str, tenant_id: str) -> tuple[str, str] | None:
    """(status, fingerprint) of the caller's audit in one small read; None when it is not theirs."""
    row = session.execute(
        select(AuditJob.status, AuditJob.progress, AuditJob.message, AuditJob.verdict).where(
            AuditJob.id == job_id, AuditJob.tenant_id == tenant_id
        )
    ).one_or_none()
    if row is None:
        return None
    return row.status, fingerprint(row.status, row.progress, row.message, row.verdict)


class StatusWatcher:
    """Waiters by audit id, and the one task that reads their statuses (see the module docstring)."""

    def __init__(self, sessions: sessionmaker[Session], tick: float = TICK_SECONDS) -> None:
        self.sessions = sessions
        self.tick = tick
        self._waiters: dict[str, list[tuple[str, asyncio.Future[None]]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.reads = 0  # status queries run (the load bench reports them)

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    async def changed(self, job_id: str, seen: str, timeout: float) -> bool:
        """Wait until the audit's fingerprint differs from `seen` (True) or `timeout` passes (False)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (seen, future)
        self._waiters.setdefault(job_id, []).append(entry)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="occulta-status-watcher")
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            entries = self._waiters.get(job_id, [])
            if entry in entries:
                entries.remove(entry)
            if not entries:
                self._waiters.pop(job_id, None)

    async def _run(self) -> None:
        while self._waiters:
            await asyncio.sleep(self.tick)
            ids = list(self._waiters)
            try:
                current = await asyncio.to_thread(self._read, ids)
            except Exception:  # a database outage: the waiters time out or the next tick answers
                log.exception("reading the status of %d watched audits failed; retrying", len(ids))
                continue
            for job_id in ids:
                now = current.get(job_id)  # None: the audit is gone, which is news too
                for seen, future in list(self._waiters.get(job_id, [])):
                    if now != seen and not future.done():
                        future.set_result(None)

    def _read(self, ids: Iterable[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        wanted = list(ids)
        with self.sessions() as session:
            for i in range(0, len(wanted), MAX_IDS_PER_READ):
                rows = session.execute(
                    select(
                        AuditJob.id, AuditJob.status, AuditJob.progress, AuditJob.message, AuditJob.verdict
                    ).where(AuditJob.id.in_(wanted[i : i + MAX_IDS_PER_READ]))
                ).all()
                out |= {r.id: fingerprint(r.status, r.progress, r.message, r.verdict) for r in rows}
        self.reads += 1
        return out
