"""The base task: it owns the per-process resources, the database session, the logging context, the
retries and the exception ladder, so a task body is only its business logic and a task module only
says what each outcome means for its own rows (the `on_*` hooks).

The ladder, in order: a transient error (database, storage, broker; or `JobInterrupted`, the
heartbeat's database error) is retried with backoff after `on_transient_error` has put the row back;
the soft time limit, a domain error (bad input: every retry would fail alike), a cancellation and any
other exception (a crash) each end in their hook, which records the final state.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from celery import Celery, Task
from celery.exceptions import Retry
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from auditors.errors import AuditCancelled
from occulta.db import make_engine, make_session_factory
from occulta.errors import OccultaError, ServiceError
from occulta.settings import Settings, get_settings
from occulta.storage import ObjectStore, get_store
from worker.heartbeat import JobInterrupted

log = logging.getLogger("occulta.worker")


@dataclass
class Resources:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore
    _producer: Celery | None = None

    def send(self, task: str, args: list[Any]) -> None:
        """Hand one outbox message to the broker; raises within seconds when it is down. Not the
        worker's own app: that one has a result backend, and a send through it on a dead Redis
        blocks ~19 s (holding the outbox rows locked) and then breaks the app for good."""
        if self._producer is None:
            self._producer = Celery("occulta-relay")
            self._producer.config_from_object(self.settings.producer_config())
        self._producer.send_task(task, args=args, queue=self.settings.queue, retry=False)

    @property
    def heartbeat_interval(self) -> float:
        """A quarter of the staleness horizon, within [1 s, 30 s]: three missed beats before a sweep."""
        return max(1.0, min(30.0, self.settings.heartbeat_stale_seconds / 4))


_RESOURCES: dict[int, Resources] = {}


def resources() -> Resources:
    """Made lazily once per process id: DB connections and boto3 clients must not cross a fork."""
    pid = os.getpid()
    if pid not in _RESOURCES:
        settings = get_settings()
        engine = make_engine(settings.database_url)
        _RESOURCES[pid] = Resources(settings, engine, make_session_factory(engine), get_store(settings))
    return _RESOURCES[pid]


def worker_name(task: Task) -> str:
    return str(getattr(task.request, "hostname", None) or "worker")


class OccultaTask(Task):
    """Subclasses implement `run_impl(session, *args)` and the `on_*` outcome hooks they need."""

    abstract = True
    max_retries = 5
    # The task's business logic, `run_impl(session, *args)`, defined by every concrete task.
    run_impl: Callable[..., Any]
    transient_errors: tuple[type[Exception], ...] = (
        OperationalError,
        ServiceError,
        BrokerError,
        JobInterrupted,
    )

    def run(self, *args: Any, **kwargs: Any) -> Any:
        res = resources()
        extra = {"task_name": self.name, "task_id": getattr(self.request, "id", None), "task_args": args}
        log.info("%s%r start", self.name, args, extra=extra)
        with res.sessions() as session:
            try:
                return self.run_impl(session, *args, **kwargs)
            except Retry:
                raise
            except self.transient_errors as exc:
                cause = exc.cause if isinstance(exc, JobInterrupted) else exc
                session.rollback()
                log.warning("transient error in %s: %s; retrying", self.name, cause, extra=extra)
                self.on_transient_error(session, *args)
                raise self.retry(exc=cause, countdown=min(300, 10 * 2**self.request.retries)) from cause
            except SoftTimeLimitExceeded:
                session.rollback()
                return self.on_time_limit(session, *args)
            except OccultaError as exc:
                session.rollback()
                return self.on_domain_error(session, exc, *args)
            except AuditCancelled:
                session.rollback()
                return self.on_cancelled(session, *args)
            except Exception as exc:
                session.rollback()
                log.exception("%s%r crashed", self.name, args, extra=extra)
                return self.on_crash(session, exc, *args)
            finally:
                log.info("%s%r end", self.name, args, extra=extra)

    def on_transient_error(self, session: Session, *args: Any) -> None:
        """Restore state before the retry (e.g. put a running job back to queued)."""

    def on_time_limit(self, session: Session, *args: Any) -> str:
        raise SoftTimeLimitExceeded()

    def on_domain_error(self, session: Session, exc: OccultaError, *args: Any) -> str:
        raise exc

    def on_cancelled(self, session: Session, *args: Any) -> str:
        raise AuditCancelled()

    def on_crash(self, session: Session, exc: Exception, *args: Any) -> str:
        raise exc
