"""`occulta.audit.run(job_id)`: claim the job, then fan it out into shards or run it whole."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.orm import Session

from occulta import jobs
from occulta.db.models import FAILED
from occulta.jobs.task_names import RUN_AUDIT
from worker import fanout
from worker.base import resources, worker_name
from worker.pipeline import JobTask, execute, load_inputs

log = logging.getLogger("occulta.worker")


class RunAudit(JobTask):
    name = RUN_AUDIT
    ignore_result = True
    acks_late = True

    def run_impl(self, session: Session, job_id: str) -> str:
        settings = resources().settings
        claim = jobs.claim(
            session,
            job_id,
            worker=worker_name(self),
            stale_after=timedelta(seconds=settings.heartbeat_stale_seconds),
            max_attempts=settings.audit_max_attempts,
        )
        if claim is None:
            log.info(
                "audit %s not claimable (finished, cancelled, sharded or held by another worker)", job_id
            )
            return "skipped"
        inputs = load_inputs(session, job_id)
        if inputs is None:
            return FAILED
        if fanout.fan_out(self.app, session, job_id=job_id, inputs=inputs):
            return "sharded"
        return execute(session, job_id, inputs)
