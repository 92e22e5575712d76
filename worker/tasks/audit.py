"""`occulta.audit.run(job_id)`: claim → (fan out shards, or) stage → run the battery → save → finish.

Every exit path leaves the row in a final state or back in `queued` for a retry: cancelled between
batches, `timed_out` at the soft time limit (results of finished auditors are already saved), `failed`
with the domain error's message for bad input. A large audit is handed to `worker.tasks.shard` (a
chord of shard tasks whose callback comes back through `execute` here), so both paths finish alike.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from sqlalchemy.orm import Session

from auditors.errors import AuditCancelled
from occulta import jobs
from occulta.db import AuditJob, DatasetRecord, ModelRecord
from occulta.db.models import CANCELLED, FAILED, SUCCEEDED, TIMED_OUT
from occulta.errors import OccultaError
from occulta.service.audits import saved_results
from occulta.storage import audit_prefix
from worker.base import OccultaTask, resources
from worker.progress import Heartbeat, ResultSaver
from worker.staging import DatasetSource, stage_dataset, stage_model

log = logging.getLogger("occulta.worker")


@dataclass(frozen=True)
class JobInputs:
    """Plain values copied out of the job's rows (no ORM object travels into a run)."""

    spec: dict[str, Any]
    model_prefix: str
    source: DatasetSource
    n_images: int  # after `samples`: what the runner will load


@dataclass(frozen=True)
class Staged:
    card: Path
    data_ref: str
    out_dir: Path
    saver: ResultSaver


# Runs after staging, before the battery; returns results to treat as already done (the shard merge).
Before = Callable[[Staged], dict[str, Any]]


def load_inputs(session: Session, job_id: str) -> JobInputs | None:
    job = session.get(AuditJob, job_id)
    assert job is not None
    model = session.get(ModelRecord, job.model_id) if job.model_id else None
    dataset = session.get(DatasetRecord, job.dataset_id) if job.dataset_id else None
    if model is None or dataset is None:
        session.commit()
        jobs.finish(session, job_id, FAILED, error="the model or dataset was deleted", message="failed")
        return None
    spec: dict[str, Any] = {
        "audits": list(job.audits),
        "audit_configs": dict(job.configs),
        "samples": job.samples,
        "seed": job.seed,
        "regions": job.regions,
    }
    n = dataset.n_images if job.samples is None else min(dataset.n_images, job.samples)
    inputs = JobInputs(
        spec, model.storage_key, DatasetSource(dataset.kind, dataset.ref, dataset.storage_key), n
    )
    session.commit()
    return inputs


class RunAudit(OccultaTask):
    name = "occulta.audit.run"
    ignore_result = True
    acks_late = True

    def run_impl(self, session: Session, job_id: str) -> str:
        settings = resources().settings
        claim = jobs.claim(
            session,
            job_id,
            worker=str(getattr(self.request, "hostname", None) or "worker"),
            stale_after=timedelta(seconds=settings.heartbeat_stale_seconds),
            max_attempts=settings.audit_max_attempts,
        )
        if claim is None:
            log.info("audit %s not claimable (finished, cancelled or held by another worker)", job_id)
            return "skipped"
        inputs = load_inputs(session, job_id)
        if inputs is None:
            return FAILED
        from worker.tasks.shard import fan_out

        try:
            if fan_out(self.app, session, tenant_id=claim.tenant_id, job_id=job_id, inputs=inputs):
                return "sharded"
        except OccultaError as exc:
            jobs.finish(session, job_id, FAILED, error=f"{exc.code}: {exc}", message="failed")
            return FAILED
        return execute(session, claim.tenant_id, job_id, inputs)

    def on_transient_error(self, session: Session, *args: Any, **kwargs: Any) -> None:
        job_id = args[0] if args else kwargs.get("job_id")
        if job_id:
            jobs.requeue(session, str(job_id), message="retrying after a database or storage error")


def execute(
    session: Session,
    tenant_id: str,
    job_id: str,
    inputs: JobInputs,
    *,
    before: Before | None = None,
    progress_floor: float = 0.0,
) -> str:
    """Stage inputs, run the battery (resuming from saved results), save and finish the job."""
    res = resources()
    settings = res.settings
    spec = inputs.spec
    completed = saved_results(session, job_id)
    session.commit()
    prefix = audit_prefix(tenant_id, job_id)
    with tempfile.TemporaryDirectory(prefix=f"occulta-{job_id}-") as tmp:
        work = Path(tmp)
        out_dir = work / "out"
        saver = ResultSaver(
            res.sessions, res.store, tenant_id=tenant_id, job_id=job_id, prefix=prefix, out_dir=out_dir
        )
        interval = max(1.0, min(30.0, settings.heartbeat_stale_seconds / 4))
        with Heartbeat(res.sessions, job_id, interval=interval) as beat:

            def progress(f: float, msg: str) -> None:
                beat.progress(progress_floor + (1.0 - progress_floor) * f, msg)

            try:
                progress(0.0, "staging inputs")
                card = stage_model(res.store, prefix=inputs.model_prefix, dest=work / "model")
                data_ref = stage_dataset(res.store, settings, source=inputs.source, dest=work / "data")
                if before is not None:
                    completed.update(before(Staged(card, data_ref, out_dir, saver)))
                from occulta.runner import run_battery  # imports torch: only ever inside the worker child

                report = run_battery(
                    card_path=card,
                    data_ref=data_ref,
                    out_dir=out_dir,
                    device=settings.device,
                    progress=progress,
                    cancelled=beat.cancelled,
                    completed=completed,
                    on_audit_done=saver.on_audit_done,
                    **spec,
                )
                saver.finish()
            except OccultaTask.transient_errors:
                raise  # the base task puts the job back in the queue and retries
            except SoftTimeLimitExceeded:
                saved = len(saved_results(session, job_id))
                jobs.finish(
                    session,
                    job_id,
                    TIMED_OUT,
                    error="soft time limit reached",
                    message=f"stopped at the time limit; {saved} of {len(spec['audits'])} audits saved",
                )
                return TIMED_OUT
            except OccultaError as exc:
                jobs.finish(session, job_id, FAILED, error=f"{exc.code}: {exc}", message="failed")
                return FAILED
            except Exception as exc:
                if is_cancelled(exc):
                    jobs.finish(session, job_id, CANCELLED, message="cancelled")
                    return CANCELLED
                log.exception("audit %s crashed", job_id)
                jobs.finish(
                    session,
                    job_id,
                    FAILED,
                    error=f"internal error: {type(exc).__name__}: {exc}",
                    message="failed",
                )
                return FAILED
    if not jobs.finish(session, job_id, SUCCEEDED, verdict=report.verdict, message="done"):
        log.warning("audit %s finished, but the row had left `running` (cancelled or swept)", job_id)
    return SUCCEEDED


def is_cancelled(exc: BaseException) -> bool:
    """The runner's cancellation signal (torch-free module, so importing it here is cheap)."""
    return isinstance(exc, AuditCancelled)
