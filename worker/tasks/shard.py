"""`occulta.audit.shard(job_id, audit, index)`: one image range of a sharded audit.

A redelivered shard that is done or held does nothing (the claim is a CAS); a cancel is checked at the
start and between batches; a crash is retried for this shard alone, up to `shard_max_retries`; bad
input or the time limit fails the shard and the job at once.
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from occulta import jobs
from occulta.db.models import CANCELLED, FAILED, TIMED_OUT
from occulta.errors import OccultaError
from occulta.jobs import facts, shards
from occulta.jobs.task_names import RUN_SHARD
from worker import fanout
from worker.base import OccultaTask, resources, worker_name
from worker.heartbeat import ShardBeat
from worker.pipeline import load_inputs
from worker.staging import stage_dataset, stage_model

log = logging.getLogger("occulta.worker")


class RunShard(OccultaTask):
    name = RUN_SHARD
    ignore_result = False  # the chord counts its header's results
    acks_late = True

    def run_impl(self, session: Session, job_id: str, audit: str, index: int) -> str:
        res = resources()
        claim = shards.claim(
            session,
            job_id,
            audit,
            index,
            worker=worker_name(self),
            stale_after=timedelta(seconds=res.settings.heartbeat_stale_seconds),
        )
        if claim is None:
            return "skipped"  # done, held by another worker, or cancelled
        if jobs.cancel_requested(session, job_id):
            shards.cancel(session, claim.id)
            return CANCELLED
        inputs = load_inputs(session, job_id)
        if inputs is None:
            return FAILED
        with (
            tempfile.TemporaryDirectory(prefix=f"occulta-{job_id}-{index}-") as tmp,
            ShardBeat(res.sessions, job_id, claim.id, interval=res.heartbeat_interval) as beat,
        ):
            work = Path(tmp)
            beat.progress(0.0, f"{audit} shard {index}: staging")
            t0 = time.perf_counter()
            card = stage_model(res.store, prefix=inputs.model_prefix, dest=work / "model")
            data_ref = stage_dataset(res.store, res.settings, source=inputs.source, dest=work / "data")
            staged = time.perf_counter() - t0
            indices = range(claim.start, claim.stop)
            carries = facts.carrier(shards.audits_sharded(session, job_id)) == audit
            partial = fanout.compute_shard(
                card, data_ref, inputs, audit, indices, beat, carries_facts=carries
            )
            partial.setdefault("timing", {})["stage_s"] = round(staged, 3)
        if not shards.complete(session, claim.id, partial):
            log.warning("shard %s[%d] of %s finished after it was taken back", audit, index, job_id)
        return "done"

    def on_transient_error(self, session: Session, *args: object) -> None:
        shard_id = shards.find(session, str(args[0]), str(args[1]), int(str(args[2])))
        if shard_id is not None:
            shards.release(session, shard_id, error="retrying after a database, storage or broker error")

    def _fail(self, session: Session, args: tuple[object, ...], status: str, error: str, message: str) -> str:
        job_id, audit, index = str(args[0]), str(args[1]), int(str(args[2]))
        shard_id = shards.find(session, job_id, audit, index)
        if shard_id is not None:
            shards.fail(session, shard_id, error=error)
        jobs.finish(session, job_id, status, error=error, message=message)
        return status

    def on_time_limit(self, session: Session, *args: object) -> str:
        error = f"shard {args[1]}[{args[2]}] hit the soft time limit"
        return self._fail(session, args, TIMED_OUT, error, "stopped at the time limit")

    def on_domain_error(self, session: Session, exc: OccultaError, *args: object) -> str:
        return self._fail(session, args, FAILED, f"{exc.code}: {exc}", "failed")

    def on_cancelled(self, session: Session, *args: object) -> str:
        shard_id = shards.find(session, str(args[0]), str(args[1]), int(str(args[2])))
        if shard_id is not None:
            shards.cancel(session, shard_id)
        return CANCELLED

    def on_crash(self, session: Session, exc: Exception, *args: object) -> str:
        job_id, audit, index = str(args[0]), str(args[1]), int(str(args[2]))
        error = f"{type(exc).__name__}: {exc}"
        shard_id = shards.find(session, job_id, audit, index)
        retries = resources().settings.shard_max_retries
        if shard_id is not None and self.request.retries < retries:
            log.warning("shard %s[%d] of %s failed (%s); retrying it alone", audit, index, job_id, error)
            shards.release(session, shard_id, error=error)
            raise self.retry(exc=exc, countdown=1, max_retries=retries) from exc
        attempts = self.request.retries + 1
        return self._fail(
            session,
            args,
            FAILED,
            f"shard {audit}[{index}] failed after {attempts} attempts: {error}",
            "failed",
        )
