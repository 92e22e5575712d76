"""One audit over many workers: a Celery chord of `occulta.audit.shard(job_id, audit, index)` tasks
(image ranges of shardable audits) whose callback `occulta.audit.merge(job_id)` merges the partials,
runs the audits that cannot be sharded, writes the report and finishes the job.

Shard rows in the database (`occulta.shards`) carry the state, so: a redelivered shard that is done or
held does nothing; a failing shard is retried alone (Celery retry of that one task); every shard checks
cancellation between batches and at its start, so a cancel leaves the rest of the group as no-ops;
the merge re-checks that every shard is done (a duplicate delivery can fire a chord early) and waits
otherwise. Messages carry only ids and names (JSON).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from celery import Celery, chord, group
from sqlalchemy.orm import Session

from occulta import jobs, shards
from occulta.db import AuditJob
from occulta.db.models import CANCELLED, FAILED, QUEUED, RUNNING, TIMED_OUT
from occulta.errors import DatasetError, OccultaError
from occulta.service.audits import saved_results
from worker.base import OccultaTask, resources
from worker.progress import Heartbeat
from worker.staging import stage_dataset, stage_model
from worker.tasks.audit import JobInputs, Staged, execute, is_cancelled, load_inputs

log = logging.getLogger("occulta.worker")
SHARD_TASK = "occulta.audit.shard"
MERGE_TASK = "occulta.audit.merge"


def fan_out(app: Celery, session: Session, *, tenant_id: str, job_id: str, inputs: JobInputs) -> bool:
    """Plan shards and send the chord when the dataset is larger than `shard_size` and the battery has
    shardable audits not yet done; False means: run the battery in this task as usual."""
    settings = resources().settings
    if settings.shard_size <= 0 or inputs.n_images <= settings.shard_size:
        return False
    from auditors.registry import audit_info, get_auditor
    from occulta.runner import validate_battery

    done = saved_results(session, job_id)
    configs = validate_battery(inputs.spec["audits"], inputs.spec["audit_configs"])
    names = [a for a in inputs.spec["audits"] if a not in done and audit_info(a).shardable]
    if not names:
        return False
    n_shards = math.ceil(inputs.n_images / settings.shard_size)
    for name in names:
        auditor = get_auditor(name)
        ranges = auditor.plan_shards(inputs.n_images, configs[name], n_shards)
        shards.plan(session, job_id=job_id, tenant_id=tenant_id, audit=name, ranges=ranges)
    pending = shards.to_run(session, job_id)
    fraction, message = shards.progress(session, job_id)
    jobs.heartbeat(session, job_id, progress=fraction, message=message)
    merge = app.signature(MERGE_TASK, args=[job_id], queue=settings.queue, immutable=True)
    if not pending:
        merge.apply_async()
    else:
        header = group(
            app.signature(SHARD_TASK, args=[job_id, a, i], queue=settings.queue) for a, i in pending
        )
        chord(header)(merge)
    log.info("audit %s: %d shards sent for %s", job_id, len(pending), ", ".join(names))
    return True


class ShardBeat(Heartbeat):
    """Heartbeat of one shard: its own row's progress, and the job's aggregate (shards done / total)."""

    def __init__(self, sessions: Any, job_id: str, shard_id: int, *, interval: float) -> None:
        super().__init__(sessions, job_id, interval=interval)
        self.shard_id = shard_id

    def _write(self) -> None:
        with self._lock, self.sessions() as session:
            shards.beat(session, self.shard_id, self.fraction)
            overall, summary = shards.progress(session, self.job_id)
            if not jobs.heartbeat(
                session, self.job_id, progress=overall, message=f"{summary}; {self.message}"
            ):
                self._cancelled = True
            self._last_write = time.monotonic()


def _compute(
    card: Path, data_ref: str, inputs: JobInputs, audit: str, indices: range, beat: Heartbeat
) -> dict[str, Any]:
    """Load this shard's images exactly as a single run would and compute its JSON partial (torch,
    child process only)."""
    from auditors.registry import get_auditor
    from occulta.runner import prepare_run, validate_battery

    spec = inputs.spec
    config = validate_battery([audit], {audit: spec["audit_configs"].get(audit) or {}})[audit]
    with tempfile.TemporaryDirectory(prefix="occulta-shard-") as tmp:
        prepared = prepare_run(
            card_path=card,
            data_ref=data_ref,
            out_dir=Path(tmp),
            device=resources().settings.device,
            samples=spec["samples"],
            seed=spec["seed"],
            regions=spec["regions"],
            cancelled=beat.cancelled,
            indices=indices,  # decode only this shard's images
        )
        ctx = prepared.ctx
        if prepared.n_sampled != inputs.n_images:
            raise DatasetError(
                f"the dataset has {prepared.n_sampled} images, the shards were planned for {inputs.n_images}"
            )
        ctx.progress = beat.progress
        auditor = get_auditor(audit)
        partial: dict[str, Any] = auditor.run_shard(ctx, config, indices)
        return partial


class RunShard(OccultaTask):
    name = SHARD_TASK
    ignore_result = False  # the chord counts its header's results
    acks_late = True

    def run_impl(self, session: Session, job_id: str, audit: str, index: int) -> str:
        res = resources()
        settings = res.settings
        claim = shards.claim(
            session,
            job_id,
            audit,
            index,
            worker=str(getattr(self.request, "hostname", None) or "worker"),
            stale_after=timedelta(seconds=settings.heartbeat_stale_seconds),
        )
        if claim is None:
            return "skipped"  # done, held by another worker, or cancelled
        if jobs.cancel_requested(session, job_id):
            shards.cancel(session, claim.id)
            return CANCELLED
        inputs = load_inputs(session, job_id)
        if inputs is None:
            return FAILED
        interval = max(1.0, min(30.0, settings.heartbeat_stale_seconds / 4))
        with (
            tempfile.TemporaryDirectory(prefix=f"occulta-{job_id}-{index}-") as tmp,
            ShardBeat(res.sessions, job_id, claim.id, interval=interval) as beat,
        ):
            work = Path(tmp)
            try:
                beat.progress(0.0, f"{audit} shard {index}: staging")
                card = stage_model(res.store, prefix=inputs.model_prefix, dest=work / "model")
                data_ref = stage_dataset(res.store, settings, source=inputs.source, dest=work / "data")
                partial = _compute(card, data_ref, inputs, audit, range(claim.start, claim.stop), beat)
            except OccultaTask.transient_errors:
                raise  # the base task retries; on_transient_error released the shard
            except SoftTimeLimitExceeded:
                shards.fail(session, claim.id, error="soft time limit reached")
                jobs.finish(
                    session, job_id, TIMED_OUT, error=f"shard {audit}[{index}] hit the soft time limit"
                )
                return TIMED_OUT
            except OccultaError as exc:  # bad input: every retry would fail the same way
                shards.fail(session, claim.id, error=f"{exc.code}: {exc}")
                jobs.finish(session, job_id, FAILED, error=f"{exc.code}: {exc}", message="failed")
                return FAILED
            except Exception as exc:
                if is_cancelled(exc):
                    shards.cancel(session, claim.id)
                    return CANCELLED
                error = f"{type(exc).__name__}: {exc}"
                if self.request.retries < settings.shard_max_retries:
                    log.warning(
                        "shard %s[%d] of %s failed (%s); retrying it alone", audit, index, job_id, error
                    )
                    shards.release(session, claim.id, error=error)
                    raise self.retry(exc=exc, countdown=1, max_retries=settings.shard_max_retries) from exc
                log.exception("shard %s[%d] of %s failed for good", audit, index, job_id)
                shards.fail(session, claim.id, error=error)
                jobs.finish(
                    session,
                    job_id,
                    FAILED,
                    error=f"shard {audit}[{index}] failed after {claim.attempt} attempts: {error}",
                    message="failed",
                )
                return FAILED
        if not shards.complete(session, claim.id, partial):
            log.warning("shard %s[%d] of %s finished after it was taken back", audit, index, job_id)
        return "done"

    def on_transient_error(self, session: Session, *args: Any, **kwargs: Any) -> None:
        job_id, audit, index = args[:3]
        for shard_id in _shard_ids(session, job_id, audit, index):
            shards.release(session, shard_id, error="retrying after a database or storage error")


def _shard_ids(session: Session, job_id: str, audit: str, index: int) -> list[int]:
    from sqlalchemy import select

    from occulta.db import AuditShardRecord

    ids = session.scalars(
        select(AuditShardRecord.id).where(
            AuditShardRecord.job_id == job_id,
            AuditShardRecord.audit == audit,
            AuditShardRecord.shard_index == index,
        )
    ).all()
    return list(ids)


class MergeShards(OccultaTask):
    name = MERGE_TASK
    ignore_result = True
    acks_late = True
    max_retries = 720  # waiting for stragglers: up to an hour at 5 s

    def run_impl(self, session: Session, job_id: str) -> str:
        row = session.get(AuditJob, job_id)
        if row is None or row.status != RUNNING:
            session.commit()
            return "skipped"
        tenant_id, cancel = row.tenant_id, row.cancel_requested
        session.commit()
        counts = shards.counts(session, job_id)
        if cancel or counts[CANCELLED]:
            done = counts[shards.DONE]
            jobs.finish(
                session, job_id, CANCELLED, message=f"cancelled; {done} of {counts.total()} shards done"
            )
            return CANCELLED
        if counts[FAILED]:
            jobs.finish(session, job_id, FAILED, error="a shard failed", message="failed")
            return FAILED
        if counts[QUEUED] or counts[RUNNING]:
            raise self.retry(countdown=5)  # fired early (a duplicate delivery): wait for the rest
        inputs = load_inputs(session, job_id)
        if inputs is None:
            return FAILED

        def merge_partials(staged: Staged) -> dict[str, Any]:
            from auditors.audits.base import ShardMeta
            from auditors.registry import get_auditor
            from occulta.cards import load_card
            from occulta.runner import validate_battery

            spec = inputs.spec
            configs = validate_battery(spec["audits"], spec["audit_configs"])
            meta = ShardMeta(
                load_card(staged.card).class_names, staged.out_dir, spec["seed"], inputs.n_images
            )
            merged = {}
            with resources().sessions() as s:
                done = saved_results(s, job_id)
                for name in shards.audits_sharded(s, job_id):
                    if name in done:
                        continue
                    auditor = get_auditor(name)
                    result = auditor.merge(meta, configs[name], shards.partials(s, job_id, name))
                    staged.saver.on_audit_done(result)
                    merged[name] = result
            return merged

        return execute(
            session, tenant_id, job_id, inputs, before=merge_partials, progress_floor=shards.SHARD_SHARE
        )
