"""A database error inside a job is a transient job failure that is retried, never an audit verdict:
the heartbeat turns it into the runner's stop signal, the runner lets that through instead of
recording an `error` result, and the base task puts the job back in the queue and retries it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import Retry
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from occulta import jobs
from occulta.db import AuditJob, AuditResultRecord
from tests.service.rows import add_job
from worker.heartbeat import Heartbeat, JobInterrupted
from worker.pipeline import JobTask

pytestmark = pytest.mark.service

DB_DOWN = OperationalError("UPDATE audits", {}, Exception("server closed the connection unexpectedly"))


class BrokenSession:
    def __enter__(self) -> BrokenSession:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise DB_DOWN


def test_a_database_error_in_a_progress_callback_raises_the_stop_signal_with_its_cause() -> None:
    beat = Heartbeat(BrokenSession, "aud_x", interval=60)  # type: ignore[arg-type]
    with pytest.raises(JobInterrupted) as info:
        beat.progress(0.5, "halfway")
    assert info.value.cause is DB_DOWN
    with pytest.raises(JobInterrupted):
        beat.cancelled()


def test_the_runner_lets_an_interrupt_through_instead_of_recording_an_error_verdict(
    tiny_model, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from occulta.runner import run_battery

    saved: list[Any] = []
    calls = {"n": 0}

    def progress(fraction: float, message: str) -> None:
        calls["n"] += 1
        if calls["n"] > 1:  # inside the auditor, after its "starting" call
            raise JobInterrupted(DB_DOWN)

    with pytest.raises(JobInterrupted):
        run_battery(
            card_path=tiny_model.card,
            data_ref=tiny_model.data_ref.replace("n=256", "n=16"),
            audits=["missingness_bias"],
            audit_configs={"missingness_bias": {"strategies": ["black"], "fractions": [0.0, 0.5]}},
            out_dir=tmp_path,
            device="cpu",
            progress=progress,
            on_audit_done=saved.append,
        )
    assert calls["n"] > 1 and saved == []


class Interrupted(JobTask):
    name = "test.interrupted"

    def run_impl(self, session: Any, job_id: str) -> str:
        raise JobInterrupted(DB_DOWN)

    def retry(self, *args: Any, exc: BaseException | None = None, **kwargs: Any) -> Any:
        return Retry(exc=exc)  # what Celery raises to retry, without a broker


def test_an_interrupted_job_goes_back_to_the_queue_and_is_retried_without_a_verdict(
    sessions, alice, worker_resources
) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(sessions, alice.tenant_id)
    with sessions() as s:
        assert jobs.claim(s, job_id, worker="w", stale_after=timedelta(seconds=60), max_attempts=3)
    task = Celery("test-transient", set_as_current=False).register_task(Interrupted())
    with pytest.raises(Retry) as info:
        task.run(job_id)
    assert info.value.exc is DB_DOWN
    with sessions() as s:
        row = s.get(AuditJob, job_id)
        assert row is not None and row.status == "queued" and row.verdict is None
        assert s.scalars(select(AuditResultRecord).where(AuditResultRecord.job_id == job_id)).all() == []
