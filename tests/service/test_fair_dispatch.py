"""Fair dispatch on real PostgreSQL (`occulta.jobs.fairness`): a tenant's backlog waits in its own line
and another tenant's audit is released at the next free slot; a released audit's message is in the
outbox; an interactive audit goes first; past a tenant's limit the API answers 429 with `Retry-After`;
a model too large for the workers' GPUs is refused at submission; the sweep leaves waiting audits
alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import and_, delete, func, or_, select, update

from occulta import jobs
from occulta.client import OccultaClient
from occulta.db import AuditJob, ModelRecord, OutboxMessage, utcnow
from occulta.db.models import CANCELLED, QUEUED, RUNNING, SUCCEEDED
from occulta.errors import RateLimitedError
from occulta.jobs import fairness
from tests.service.rows import add_dataset, add_job, add_model

pytestmark = pytest.mark.service


@pytest.fixture
def quiet_relay(app) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The app's relay thread dispatches with the session's huge slot count: stop it meanwhile."""
    queue = app.state.queue
    running = queue._thread is not None
    queue.stop_relay()
    yield
    if running:
        queue.start_relay()


def _in_flight(sessions) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        flying = or_(
            AuditJob.status == RUNNING, and_(AuditJob.status == QUEUED, AuditJob.dispatched_at.is_not(None))
        )
        return int(s.scalar(select(func.count()).select_from(AuditJob).where(flying)) or 0)


def _waiting(sessions, tenant_id: str, n: int, **values) -> list[str]:  # type: ignore[no-untyped-def]
    model, dataset = add_model(sessions, tenant_id), add_dataset(sessions, tenant_id)
    return [
        add_job(sessions, tenant_id, model_id=model, dataset_id=dataset, dispatched_at=None, **values)
        for _ in range(n)
    ]


def _cancel(sessions, ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Cancel the test's jobs and drop the outbox rows it staged for them: left behind, the restarted
    relay would send them during a later test that counts the broker's messages."""
    with sessions() as s:
        s.execute(update(AuditJob).where(AuditJob.id.in_(ids)).values(status=CANCELLED))
        s.execute(delete(OutboxMessage).where(OutboxMessage.job_id.in_(ids)))
        s.commit()


def test_a_second_tenant_is_served_at_the_next_free_slot(sessions, alice, bob, quiet_relay) -> None:  # type: ignore[no-untyped-def]
    backlog = _waiting(sessions, alice.tenant_id, 30)
    single = _waiting(sessions, bob.tenant_id, 1)
    policy = fairness.Policy(slots=_in_flight(sessions) + 3)
    try:
        with sessions() as s:
            first = fairness.dispatch(s, policy)
        # Three slots: bob's one audit and alice's two oldest, although all of alice's came first.
        assert sorted(first) == sorted([backlog[0], backlog[1], single[0]])
        with sessions() as s:
            queued = set(s.scalars(select(OutboxMessage.job_id).where(OutboxMessage.job_id.in_(first))))
            assert queued == set(first)
            assert fairness.dispatch(s, policy) == []  # no room: nothing more leaves the lines
            jobs.claim(s, backlog[0], worker="w", stale_after=timedelta(minutes=5), max_attempts=3)
            jobs.finish(s, backlog[0], SUCCEEDED, verdict="pass")
            assert fairness.dispatch(s, policy) == [backlog[2]]  # one slot freed: the next in line
    finally:
        _cancel(sessions, backlog + single)


def test_an_interactive_audit_is_released_before_the_backlog(sessions, alice, quiet_relay) -> None:  # type: ignore[no-untyped-def]
    backlog = _waiting(sessions, alice.tenant_id, 5)
    person = _waiting(sessions, alice.tenant_id, 1, priority=fairness.INTERACTIVE)
    try:
        with sessions() as s:
            assert fairness.dispatch(s, fairness.Policy(slots=_in_flight(sessions) + 1)) == person
    finally:
        _cancel(sessions, backlog + person)


def test_past_the_tenant_limit_the_api_answers_429_with_retry_after(app, client, alice, sessions) -> None:  # type: ignore[no-untyped-def]
    queue = app.state.queue
    saved = queue.policy
    queue.policy = dataclasses.replace(saved, tenant_max_active=2, retry_after=17)
    body = {
        "model_id": add_model(sessions, alice.tenant_id),
        "dataset_id": add_dataset(sessions, alice.tenant_id),
        "audits": ["test_noop"],
    }
    try:
        codes = [client.post("/v1/audits", json=body | {"seed": i}, headers=alice.headers) for i in range(3)]
        assert [r.status_code for r in codes] == [202, 202, 429]
        refused = codes[2]
        assert refused.headers["Retry-After"] == "17"
        assert refused.json()["error"]["code"] == "too_many_audits"
        assert "the limit is 2" in refused.json()["error"]["message"]
        # The CLI's client turns the answer into the error it prints: the server's message, whole.
        cli = OccultaClient("http://127.0.0.1:9", "occ_unused", retries=0)
        with pytest.raises(RateLimitedError, match="the limit is 2; retry after 17 s"):
            cli._decode(refused, 202)
        cli.close()
        # A cancelled audit frees its place.
        client.post(f"/v1/audits/{codes[0].json()['id']}/cancel", headers=alice.headers)
        assert client.post("/v1/audits", json=body | {"seed": 9}, headers=alice.headers).status_code == 202
    finally:
        queue.policy = saved


def test_a_model_too_large_for_the_workers_gpus_is_refused_with_the_reason(
    app, client, alice, sessions
) -> None:  # type: ignore[no-untyped-def]
    queue = app.state.queue
    saved = queue.policy
    queue.policy = dataclasses.replace(saved, worker_memory_gib=2.0)
    model = add_model(sessions, alice.tenant_id)
    with sessions() as s:
        s.execute(update(ModelRecord).where(ModelRecord.id == model).values(size_bytes=3 * 1024**3))
        s.commit()
    body = {"model_id": model, "dataset_id": add_dataset(sessions, alice.tenant_id), "audits": ["test_noop"]}
    try:
        r = client.post("/v1/audits", json=body, headers=alice.headers)
        assert r.status_code == 422, r.text
        message = r.json()["error"]["message"]
        assert (
            "GPU memory" in message and "have 2 GiB" in message and "OCCULTA_WORKER_GPU_MEMORY_GIB" in message
        )
    finally:
        queue.policy = saved


def test_the_sweep_leaves_audits_waiting_in_their_line_alone(sessions, alice, quiet_relay) -> None:  # type: ignore[no-untyped-def]
    old = utcnow() - timedelta(hours=5)
    waiting = _waiting(sessions, alice.tenant_id, 1, heartbeat_at=old)
    sent = add_job(sessions, alice.tenant_id, heartbeat_at=old)
    try:
        with sessions() as s:
            result = jobs.sweep(
                s,
                stale_after=timedelta(minutes=1),
                hard_limit=timedelta(hours=1),
                max_attempts=3,
                resend_queued_after=timedelta(hours=2),
            )
        assert sent in result.requeued and waiting[0] not in result.requeued
    finally:
        _cancel(sessions, [*waiting, sent])


def test_the_openapi_document_names_the_429(client, alice) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json", headers=alice.headers).json()
    assert "429" in spec["paths"]["/v1/audits"]["post"]["responses"]


def test_the_beat_sweep_releases_waiting_audits_when_no_api_does(
    sessions, alice, worker_resources, quiet_relay
) -> None:  # type: ignore[no-untyped-def]
    from worker.tasks.sweep import SweepStaleJobs

    waiting = _waiting(sessions, alice.tenant_id, 2)
    sent: list[str] = []
    worker_resources.send = lambda task, args: sent.append(str(args[0]))
    try:
        with sessions() as s:
            SweepStaleJobs().run_impl(s)
        assert set(waiting) <= set(sent)  # the session's slots are ample: both released and relayed
        with sessions() as s:
            assert all(s.get(AuditJob, j).dispatched_at is not None for j in waiting)  # type: ignore[union-attr]
    finally:
        _cancel(sessions, waiting)


def test_with_one_slot_the_tenants_alternate(sessions, alice, bob, quiet_relay) -> None:  # type: ignore[no-untyped-def]
    """Nothing in flight for either tenant: the one served longest ago (never, for bob) goes first."""
    backlog = _waiting(sessions, alice.tenant_id, 3)
    policy = fairness.Policy(slots=_in_flight(sessions) + 1)
    single: list[str] = []
    try:
        with sessions() as s:
            assert fairness.dispatch(s, policy) == [backlog[0]]
            jobs.claim(s, backlog[0], worker="w", stale_after=timedelta(minutes=5), max_attempts=3)
        single = _waiting(sessions, bob.tenant_id, 1)
        with sessions() as s:
            jobs.finish(s, backlog[0], SUCCEEDED, verdict="pass")
            assert fairness.dispatch(s, policy) == single
    finally:
        _cancel(sessions, backlog + single)
