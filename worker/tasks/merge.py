"""`occulta.audit.merge(job_id)`: the chord callback of a sharded job. Claims the merge once, lets the
shards decide (cancelled, failed, still waiting, ready), then merges the partials (`fanout.merge_job`:
from the shards' facts alone, or before the rest of the battery runs through the same pipeline as an
unsharded job), so both finish alike."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from occulta import jobs
from occulta.db import AuditJob
from occulta.db.models import CANCELLED, FAILED
from occulta.jobs import shards
from occulta.jobs.task_names import MERGE_SHARDS
from worker import fanout
from worker.base import resources
from worker.pipeline import JobTask, load_inputs


class MergeShards(JobTask):
    name = MERGE_SHARDS
    ignore_result = True
    acks_late = True
    max_retries = 720  # waiting for stragglers: up to an hour at 5 s

    def run_impl(self, session: Session, job_id: str) -> str:
        row = session.get(AuditJob, job_id)
        cancel = bool(row is not None and row.cancel_requested)
        session.commit()
        outcome, n = shards.outcome(session, job_id, cancel_requested=cancel)
        if outcome == "cancelled":
            jobs.finish(
                session, job_id, CANCELLED, message=f"cancelled; {n[shards.DONE]} of {n.total()} shards done"
            )
            return CANCELLED
        if outcome == "failed":
            jobs.finish(session, job_id, FAILED, error="a shard failed", message="failed")
            return FAILED
        if outcome == "waiting":
            raise self.retry(countdown=5)  # fired early (a duplicate delivery): wait for the rest
        stale_after = timedelta(seconds=resources().settings.heartbeat_stale_seconds)
        if not jobs.claim_merge(session, job_id, stale_after=stale_after):
            return "skipped"  # finished, or another worker is merging
        inputs = load_inputs(session, job_id)
        if inputs is None:
            return FAILED
        return fanout.merge_job(session, job_id, inputs)

    def on_transient_error(self, session: Session, *args: object) -> None:
        jobs.unclaim_merge(session, str(args[0]))  # the retried merge claims it again
