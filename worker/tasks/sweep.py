"""`occulta.jobs.sweep` (beat): recover work whose worker died, then relay the outbox, which is also
the backstop relay when no API process is running."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from occulta import jobs
from occulta.jobs import fairness, outbox
from occulta.jobs.task_names import SWEEP
from worker.base import OccultaTask, resources

log = logging.getLogger("occulta.worker")


class SweepStaleJobs(OccultaTask):
    name = SWEEP
    ignore_result = True

    def run_impl(self, session: Session, *args: Any, **kwargs: Any) -> dict[str, Any]:
        settings = resources().settings
        result = jobs.sweep(
            session,
            stale_after=timedelta(seconds=settings.heartbeat_stale_seconds),
            hard_limit=timedelta(seconds=settings.audit_hard_time_limit),
            max_attempts=settings.audit_max_attempts,
            resend_queued_after=timedelta(seconds=settings.visibility_timeout),
        )

        for job_id, task, task_args in result.messages():
            outbox.add(session, job_id=job_id, task=task, args=task_args)
        session.commit()
        # The backstop dispatcher too (the API's relay tick is the usual one): release waiting audits.
        fairness.dispatch(session, fairness.Policy.of(settings))

        relayed = outbox.relay(session, resources().send)
        if result.requeued or result.timed_out or result.failed or result.shards_resent or result.settled:
            log.warning("sweep: %s; relayed %d", result, relayed.sent)
        return {
            "requeued": result.requeued,
            "timed_out": result.timed_out,
            "failed": result.failed,
            "shards_resent": result.shards_resent,
            "merges_resent": result.merges_resent,
            "settled": result.settled,
            "relayed": relayed.sent,
        }
