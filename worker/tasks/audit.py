"""`occulta.audit.run(job_id)`: claim → stage → run the battery → save → finish.

Every exit path leaves the row in a final state or back in `queued` for a retry: cancelled between
batches, `timed_out` at the soft time limit (results of finished auditors are already saved), `failed`
with the domain error's message for bad input.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from sqlalchemy.orm import Session

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


class RunAudit(OccultaTask):
    name = "occulta.audit.run"
    ignore_result = True
    acks_late = True

    def run_impl(self, session: Session, job_id: str) -> str:
        res = resources()
        settings = res.settings
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
        job = session.get(AuditJob, job_id)
        assert job is not None
        model = session.get(ModelRecord, job.model_id) if job.model_id else None
        dataset = session.get(DatasetRecord, job.dataset_id) if job.dataset_id else None
        if model is None or dataset is None:
            jobs.finish(session, job_id, FAILED, error="the model or dataset was deleted", message="failed")
            return FAILED
        spec: dict[str, Any] = {
            "audits": list(job.audits),
            "audit_configs": dict(job.configs),
            "samples": job.samples,
            "seed": job.seed,
            "regions": job.regions,
        }
        model_prefix, source = (
            model.storage_key,
            DatasetSource(dataset.kind, dataset.ref, dataset.storage_key),
        )
        completed = saved_results(session, job_id)
        session.commit()

        prefix = audit_prefix(claim.tenant_id, job_id)
        with tempfile.TemporaryDirectory(prefix=f"occulta-{job_id}-") as tmp:
            work = Path(tmp)
            out_dir = work / "out"
            saver = ResultSaver(
                res.sessions,
                res.store,
                tenant_id=claim.tenant_id,
                job_id=job_id,
                prefix=prefix,
                out_dir=out_dir,
            )
            interval = max(1.0, min(30.0, settings.heartbeat_stale_seconds / 4))
            with Heartbeat(res.sessions, job_id, interval=interval) as beat:
                try:
                    beat.progress(0.0, "staging inputs")
                    card = stage_model(res.store, prefix=model_prefix, dest=work / "model")
                    data_ref = stage_dataset(res.store, settings, source=source, dest=work / "data")
                    report = self._run(card, data_ref, out_dir, spec, settings.device, beat, saver, completed)
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
                    if _is_cancelled(exc):
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

    @staticmethod
    def _run(
        card: Path,
        data_ref: str,
        out_dir: Path,
        spec: dict[str, Any],
        device: str,
        beat: Heartbeat,
        saver: ResultSaver,
        completed: dict[str, Any],
    ) -> Any:
        from occulta.runner import run_battery  # imports torch: only ever inside the worker child

        return run_battery(
            card_path=card,
            data_ref=data_ref,
            out_dir=out_dir,
            device=device,
            progress=beat.progress,
            cancelled=beat.cancelled,
            completed=completed,
            on_audit_done=saver.on_audit_done,
            **spec,
        )

    def on_transient_error(self, session: Session, *args: Any, **kwargs: Any) -> None:
        job_id = args[0] if args else kwargs.get("job_id")
        if job_id:
            jobs.requeue(session, str(job_id), message="retrying after a database or storage error")


def _is_cancelled(exc: BaseException) -> bool:
    """`auditors.context.AuditCancelled`, checked by class name so this module does not import torch."""
    return type(exc).__name__ == "AuditCancelled" and type(exc).__module__.startswith("auditors")
