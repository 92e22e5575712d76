"""Periodic (beat) task: recover jobs whose worker died and re-send queued jobs that were never taken."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from occulta import jobs
from worker.base import OccultaTask, resources

log = logging.getLogger("occulta.worker")
AUDIT_TASK = "occulta.audit.run"


class SweepStaleJobs(OccultaTask):
    name = "occulta.jobs.sweep"
    ignore_result = True

    def run_impl(self, session: Session, *args: Any, **kwargs: Any) -> dict[str, list[str]]:
        settings = resources().settings
        result = jobs.sweep(
            session,
            stale_after=timedelta(seconds=settings.heartbeat_stale_seconds),
            hard_limit=timedelta(seconds=settings.audit_hard_time_limit),
            max_attempts=settings.audit_max_attempts,
            resend_queued_after=timedelta(seconds=settings.visibility_timeout),
        )
        for job_id in result.requeued:
            self.app.send_task(AUDIT_TASK, args=[job_id], queue=settings.queue)
        if result.requeued or result.timed_out or result.failed:
            log.warning(
                "sweep: re-sent %s, timed out %s, failed %s", result.requeued, result.timed_out, result.failed
            )
        return {"requeued": result.requeued, "timed_out": result.timed_out, "failed": result.failed}
