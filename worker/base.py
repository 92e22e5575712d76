"""The base task (codecov worker style): it owns the per-process resources, the database session, the
logging context and transient-error retries, so a task body is only its business logic."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Task
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from occulta.db import make_engine, make_session_factory
from occulta.errors import ServiceError
from occulta.settings import Settings, get_settings
from occulta.storage import ObjectStore, get_store

log = logging.getLogger("occulta.worker")


@dataclass
class Resources:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore


_RESOURCES: dict[int, Resources] = {}


def resources() -> Resources:
    """Made lazily once per process id: DB connections and boto3 clients must not cross a fork."""
    pid = os.getpid()
    if pid not in _RESOURCES:
        settings = get_settings()
        engine = make_engine(settings.database_url)
        _RESOURCES[pid] = Resources(settings, engine, make_session_factory(engine), get_store(settings))
    return _RESOURCES[pid]


class OccultaTask(Task):
    """Subclasses implement `run_impl(session, *args)`; a database or storage outage is retried with
    backoff (after `on_transient_error` has put the job back) instead of failing the job."""

    abstract = True
    max_retries = 5
    # The task's business logic, `run_impl(session, *args)`, defined by every concrete task.
    run_impl: Callable[..., Any]
    transient_errors: tuple[type[BaseException], ...] = (OperationalError, ServiceError)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        res = resources()
        extra = {"task_name": self.name, "task_id": getattr(self.request, "id", None), "task_args": args}
        log.info("%s%r start", self.name, args, extra=extra)
        with res.sessions() as session:
            try:
                return self.run_impl(session, *args, **kwargs)
            except self.transient_errors as exc:
                session.rollback()
                log.warning("transient error in %s: %s; retrying", self.name, exc, extra=extra)
                self.on_transient_error(session, *args, **kwargs)
                raise self.retry(exc=exc, countdown=min(300, 10 * 2**self.request.retries)) from exc
            finally:
                log.info("%s%r end", self.name, args, extra=extra)

    def on_transient_error(self, session: Session, *args: Any, **kwargs: Any) -> None:
        """Hook to restore state before the retry (e.g. put a running job back to queued)."""
