"""Submitting through the outbox on real PostgreSQL: a broker outage delays an audit and never loses
it; failed sends back off; one Idempotency-Key under concurrency makes exactly one audit (and one
message); concurrent cancels agree."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
import redis
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import select

from occulta import jobs
from occulta.db import AuditJob, OutboxMessage, utcnow
from occulta.errors import ConflictError
from occulta.jobs import outbox
from occulta.jobs.task_names import RUN_AUDIT
from occulta.service.audits import submit_audit
from occulta.settings import Settings
from tests.fixtures.redis_server import PrivateRedis
from tests.service.rows import add_dataset, add_job, add_model
from worker.base import Resources

pytestmark = pytest.mark.service

STALE = timedelta(seconds=60)


@pytest.fixture(autouse=True)
def no_background_relay(app):  # type: ignore[no-untyped-def]
    """These tests relay by hand: the shared app's relay thread must not send their rows meanwhile."""
    queue = app.state.queue
    running = queue._thread is not None
    queue.stop_relay()
    yield
    if running:
        queue.start_relay()


class DeadBroker:
    """A queue whose broker is down: the inline send fails (the outbox must keep the message)."""

    def flush(self, job_id: str) -> None:
        with self.sessions() as session:
            outbox.relay(session, Recorder(fail=True), job_id=job_id, first_send=True)

    def __init__(self, sessions) -> None:  # type: ignore[no-untyped-def]
        self.sessions = sessions


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[tuple[str, list[Any]]] = []

    def __call__(self, task: str, args: list[Any]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((task, args))


def _submit(sessions, caller_tenant: str, relay: Any, key: str | None = None) -> tuple[str, bool]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        submitted = submit_audit(
            s,
            relay,
            None,
            tenant_id=caller_tenant,
            model_id=add_model(sessions, caller_tenant),
            dataset_id=add_dataset(sessions, caller_tenant),
            audits=["test_noop"],
            configs={},
            seed=0,
            samples=None,
            regions=None,
            idempotency_key=key,
        )
        return submitted.job.id, submitted.created


def _outbox(sessions, job_id: str) -> list[OutboxMessage]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return list(s.scalars(select(OutboxMessage).where(OutboxMessage.job_id == job_id)))


def test_a_submission_while_the_broker_is_down_waits_in_the_outbox_and_is_sent_when_it_returns(
    sessions, alice
) -> None:  # type: ignore[no-untyped-def]
    job_id, created = _submit(sessions, alice.tenant_id, DeadBroker(sessions))
    assert created
    [row] = _outbox(sessions, job_id)  # the inline send failed: the row waits out its backoff
    assert (row.task, row.args, row.attempts) == (RUN_AUDIT, [job_id], 1)
    assert "broker down" in (row.last_error or "")
    up = Recorder()
    with sessions() as s:  # the broker is back, but this row's backoff has not run out yet
        assert outbox.relay(s, up, job_id=job_id).sent == 0
        s.execute(
            OutboxMessage.__table__.update()
            .where(OutboxMessage.job_id == job_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        s.commit()
        assert outbox.relay(s, up, job_id=job_id).sent == 1
    assert up.sent == [(RUN_AUDIT, [job_id])]
    assert _outbox(sessions, job_id) == []
    with sessions() as s:
        assert s.get(AuditJob, job_id).status == "queued"  # type: ignore[union-attr]


def test_backoff_grows_and_is_capped_at_a_few_seconds() -> None:
    waits = [outbox.backoff(n).total_seconds() for n in range(1, 8)]
    assert waits == sorted(waits) and waits[0] == 0.5 and max(waits) == outbox.MAX_BACKOFF_SECONDS


def test_a_relay_round_stops_at_the_first_failed_send(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    first, _ = _submit(sessions, alice.tenant_id, DeadBroker(sessions))
    second, _ = _submit(sessions, alice.tenant_id, DeadBroker(sessions))
    with sessions() as s:  # both due again at once, and only they
        table = OutboxMessage.__table__
        s.execute(table.update().values(next_attempt_at=utcnow() + timedelta(hours=1)))
        s.execute(
            table.update()
            .where(OutboxMessage.job_id.in_([first, second]))
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        s.commit()
        result = outbox.relay(s, Recorder(fail=True))
    assert result.failed == 1 and result.sent == 0
    attempts = [r.attempts for r in _outbox(sessions, first) + _outbox(sessions, second)]
    assert sorted(attempts) == [1, 2]


def test_one_idempotency_key_sent_concurrently_creates_exactly_one_audit(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    model_id, dataset_id = add_model(sessions, alice.tenant_id), add_dataset(sessions, alice.tenant_id)
    barrier = threading.Barrier(8)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            with sessions() as s:
                barrier.wait()
                submitted = submit_audit(
                    s,
                    DeadBroker(sessions),
                    None,
                    tenant_id=alice.tenant_id,
                    model_id=model_id,
                    dataset_id=dataset_id,
                    audits=["test_noop"],
                    configs={},
                    seed=0,
                    samples=None,
                    regions=None,
                    idempotency_key="concurrent-ci-run",
                )
                results.append((submitted.job.id, submitted.created))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(_outbox(sessions, results[0][0])) == 1


def _concurrently(n: int, fn) -> list[object]:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(n)
    out: list[object] = []

    def call() -> None:
        barrier.wait()
        try:
            out.append(fn())
        except ConflictError as exc:
            out.append(exc)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


def test_concurrent_cancels_of_a_queued_audit_cancel_it_once(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(sessions, alice.tenant_id)

    def cancel() -> str:
        with sessions() as s:
            return jobs.request_cancel(s, job_id, tenant_id=alice.tenant_id)

    outcomes = _concurrently(6, cancel)
    assert outcomes.count("cancelled") == 1
    assert all(isinstance(o, ConflictError) for o in outcomes if o != "cancelled")
    with sessions() as s:
        assert s.get(AuditJob, job_id).status == "cancelled"  # type: ignore[union-attr]


def test_concurrent_cancels_of_a_running_audit_all_flag_it(sessions, alice) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(sessions, alice.tenant_id)
    with sessions() as s:
        assert jobs.claim(s, job_id, worker="w", stale_after=STALE, max_attempts=3) is not None

    def cancel() -> str:
        with sessions() as s:
            return jobs.request_cancel(s, job_id, tenant_id=alice.tenant_id)

    assert _concurrently(6, cancel) == ["running"] * 6
    with sessions() as s:
        assert jobs.cancel_requested(s, job_id)
        assert jobs.finish(s, job_id, "cancelled")
    with sessions() as s, pytest.raises(ConflictError):
        jobs.request_cancel(s, job_id, tenant_id=alice.tenant_id)


def test_the_sweeps_relay_fails_fast_on_a_dead_broker_and_works_once_it_returns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The worker-side relay must neither hang on a dead broker (it holds its outbox rows locked while
    it sends) nor stay broken after it: each send raises the broker's own error, and once a broker
    listens on that address the next send lands in the queue."""
    broker = PrivateRedis(tmp_path)  # not started yet: nothing listens on its port
    settings = Settings(broker_url=broker.url, result_backend_url=broker.url, queue="relay-test")
    res = Resources(settings, engine=None, sessions=None, store=None)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(BrokerError, match="onnection refused"):
            res.send(RUN_AUDIT, ["aud_x"])
    broker.start()
    try:
        res.send(RUN_AUDIT, ["aud_x"])
        client = redis.Redis.from_url(broker.url)
        [message] = [json.loads(m) for m in client.lrange("relay-test", 0, -1)]
        assert message["headers"]["task"] == RUN_AUDIT
    finally:
        broker.kill()
