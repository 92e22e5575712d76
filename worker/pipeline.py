"""One job as a pipeline: load its inputs from the rows, stage them from object storage, run the
battery (resuming from saved results), save results as they finish, finish the job.

`JobTask` is the base of the two tasks that run this pipeline (a whole audit, or the merge of a
sharded one): it says what each outcome of the base task's exception ladder means for the job row.
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from occulta import jobs
from occulta.db import AuditJob, DatasetRecord, ModelRecord
from occulta.db.models import CANCELLED, FAILED, SUCCEEDED, TIMED_OUT
from occulta.errors import OccultaError
from occulta.jobs.results import ResultSaver, saved_results
from occulta.storage import audit_prefix
from worker.base import OccultaTask, resources
from worker.heartbeat import Heartbeat
from worker.models import cached_loader
from worker.staging import DatasetSource, stage_dataset, stage_model

log = logging.getLogger("occulta.worker")


@dataclass(frozen=True)
class JobInputs:
    """Plain values copied out of the job's rows (no ORM object travels into a run)."""

    tenant_id: str
    spec: dict[str, Any]  # run_battery's keyword arguments: audits, audit_configs, samples, seed, regions
    model_key: str  # model id + weights sha256: the model cache's key
    model_prefix: str
    source: DatasetSource
    n_images: int  # after `samples`: what the runner will load

    @property
    def configs(self) -> dict[str, dict[str, Any]]:
        """Each audit's config as accepted at submit time (validated, defaults filled in)."""
        return {name: dict(self.spec["audit_configs"].get(name) or {}) for name in self.spec["audits"]}


@dataclass(frozen=True)
class Staged:
    card: Path
    data_ref: str
    out_dir: Path
    saver: ResultSaver


# Runs after staging, before the battery; returns results to treat as already done (the shard merge).
Before = Callable[[Staged], dict[str, Any]]


@dataclass(frozen=True)
class Workspace:
    """A running job's temporary folder, its result saver and its progress (heartbeating meanwhile)."""

    work: Path
    out_dir: Path
    saver: ResultSaver
    beat: Heartbeat
    progress: Callable[[float, str], None]


@contextmanager
def workspace(job_id: str, inputs: JobInputs, *, progress_floor: float = 0.0) -> Iterator[Workspace]:
    """The temporary folder (deleted after), the saver of this job's results, and its heartbeat;
    progress from `progress_floor` (what the shards filled) to 1."""
    res = resources()
    prefix = audit_prefix(inputs.tenant_id, job_id)
    with tempfile.TemporaryDirectory(prefix=f"occulta-{job_id}-") as tmp:
        work = Path(tmp)
        out_dir = work / "out"
        saver = ResultSaver(
            res.sessions, res.store, tenant_id=inputs.tenant_id, job_id=job_id, prefix=prefix, out_dir=out_dir
        )
        with Heartbeat(res.sessions, job_id, interval=res.heartbeat_interval) as beat:

            def progress(f: float, msg: str) -> None:
                beat.progress(progress_floor + (1.0 - progress_floor) * f, msg)

            yield Workspace(work, out_dir, saver, beat, progress)


def succeed(session: Session, job_id: str, verdict: str) -> str:
    """The job's last transition; a job cancelled or swept meanwhile keeps its state."""
    if not jobs.finish(session, job_id, SUCCEEDED, verdict=verdict, message="done"):
        log.warning("audit %s finished, but the row had left `running` (cancelled or swept)", job_id)
    return SUCCEEDED


def load_inputs(session: Session, job_id: str) -> JobInputs | None:
    """The job's inputs; None (and the job failed) when its model or dataset was deleted meanwhile."""
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
        tenant_id=job.tenant_id,
        spec=spec,
        model_key=f"{model.id}:{model.sha256}",
        model_prefix=model.storage_key,
        source=DatasetSource(dataset.kind, dataset.ref, dataset.storage_key),
        n_images=n,
    )
    session.commit()
    return inputs


def execute(
    session: Session,
    job_id: str,
    inputs: JobInputs,
    *,
    before: Before | None = None,
    progress_floor: float = 0.0,
) -> str:
    """Stage inputs, run the battery (resuming from saved results), save and finish the job. Errors go
    up to the base task's ladder (`JobTask` hooks)."""
    res = resources()
    completed = saved_results(session, job_id)
    session.commit()
    with workspace(job_id, inputs, progress_floor=progress_floor) as ws:
        ws.progress(0.0, "staging inputs")
        card = stage_model(res.store, prefix=inputs.model_prefix, dest=ws.work / "model")
        data_ref = stage_dataset(res.store, res.settings, source=inputs.source, dest=ws.work / "data")
        if before is not None:
            completed.update(before(Staged(card, data_ref, ws.out_dir, ws.saver)))
        from occulta.estimate import planner
        from occulta.runner import run_battery  # imports torch: only ever inside the worker child

        def record(est: Any) -> None:  # the calibration the API's estimates of this model use
            if est.calibration is not None:
                record_calibration(inputs, est.calibration)

        report = run_battery(
            card_path=card,
            data_ref=data_ref,
            out_dir=ws.out_dir,
            device=res.settings.device,
            progress=ws.progress,
            cancelled=ws.beat.cancelled,
            completed=completed,
            on_audit_done=ws.saver.on_audit_done,
            model_loader=cached_loader(inputs.model_key),
            plan=planner(None, record),
            **inputs.spec,
        )
        ws.saver.finish()
    return succeed(session, job_id, report.verdict)


def record_calibration(inputs: JobInputs, calibration: Any) -> None:
    """Store a measured calibration beside the model's weights: the API's estimates of it use it."""
    from occulta.estimate import calibration_json, calibration_key

    data = io.BytesIO(calibration_json(calibration))
    resources().store.put_stream(calibration_key(inputs.model_prefix), data)


class JobTask(OccultaTask):
    """A task whose first argument is a job id and whose outcome is the job's: every exit leaves the row
    final or back in `queued` for a retry (time limit: `timed_out`, the results of finished auditors
    already saved; bad input: `failed` with the domain error; a cancel: `cancelled`)."""

    abstract = True

    def on_transient_error(self, session: Session, *args: Any) -> None:
        jobs.requeue(session, str(args[0]), message="retrying after a database, storage or broker error")

    def on_time_limit(self, session: Session, *args: Any) -> str:
        job_id = str(args[0])
        job = session.get(AuditJob, job_id)
        total = len(job.audits) if job is not None else 0
        saved = len(saved_results(session, job_id))
        session.commit()
        jobs.finish(
            session,
            job_id,
            TIMED_OUT,
            error="soft time limit reached",
            message=f"stopped at the time limit; {saved} of {total} audits saved",
        )
        return TIMED_OUT

    def on_domain_error(self, session: Session, exc: OccultaError, *args: Any) -> str:
        jobs.finish(session, str(args[0]), FAILED, error=f"{exc.code}: {exc}", message="failed")
        return FAILED

    def on_cancelled(self, session: Session, *args: Any) -> str:
        jobs.finish(session, str(args[0]), CANCELLED, message="cancelled")
        return CANCELLED

    def on_crash(self, session: Session, exc: Exception, *args: Any) -> str:
        error = f"internal error: {type(exc).__name__}: {exc}"
        jobs.finish(session, str(args[0]), FAILED, error=error, message="failed")
        return FAILED
