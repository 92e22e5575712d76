"""Sending audit jobs to the broker by task *name*: the API never imports the worker package."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from occulta.errors import ServiceError
from occulta.settings import Settings

AUDIT_TASK = "occulta.audit.run"
log = logging.getLogger("occulta.api")


class Queue:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.celery = Celery("occulta-api")
        self.celery.config_from_object(settings.celery_config())

    def send_audit(self, job_id: str) -> bool:
        """True when the broker took the message. A failure is logged, not raised: the job row is
        already committed and the beat sweep re-sends queued jobs, so the request still succeeds."""
        try:
            self.celery.send_task(AUDIT_TASK, args=[job_id], queue=self.settings.queue, retry=False)
            return True
        except Exception:  # broker down: the sweep delivers it later
            log.exception("could not send audit %s to the broker; the sweep will re-send it", job_id)
            return False

    def check(self) -> None:
        """Raise ServiceError when the broker cannot be reached (for /readyz)."""
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:
            raise ServiceError(f"broker not reachable: {exc}") from exc

    def close(self) -> None:
        pool: Any = self.celery.pool
        pool.force_close_all()
