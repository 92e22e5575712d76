"""Long-polling `GET /v1/audits/{id}?wait=N` on real PostgreSQL: the answer comes when the status or
progress changes (or at once when the caller's `since` is stale or the audit is finished), and a
waiting request holds no admission slot, so waiters never crowd out other requests.

Each long-poll here asks for the server's maximum wait (30 s) and the change comes within a second;
the joins' 20 s bounds only tell "woken by the change" from "ran to its timeout" (no speed claim)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import update

from occulta.db import AuditJob
from occulta.db.models import RUNNING, SUCCEEDED
from occulta.jobs.watch import fingerprint
from tests.service.rows import add_job

pytestmark = pytest.mark.service

WOKEN_WITHIN = 20.0  # well under the 30 s a long-poll runs when nothing changes


def _set(sessions, job_id: str, **values: Any) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        s.execute(update(AuditJob).where(AuditJob.id == job_id).values(**values))
        s.commit()


def _poll_in_thread(client, url: str, headers: dict[str, str]) -> tuple[threading.Thread, list[Any]]:  # type: ignore[no-untyped-def]
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(client.get(url, headers=headers)), daemon=True)
    thread.start()
    return thread, answers


def test_a_waiting_client_is_answered_when_the_progress_changes(client, alice, sessions) -> None:  # type: ignore[no-untyped-def]
    job = add_job(sessions, alice.tenant_id, status=RUNNING, progress=0.1, message="lime: 10%")
    first = client.get(f"/v1/audits/{job}", headers=alice.headers)
    tag = first.headers["ETag"].strip('"')
    assert tag == fingerprint("running", 0.1, "lime: 10%", None)
    thread, answers = _poll_in_thread(client, f"/v1/audits/{job}?wait=30&since={tag}", alice.headers)
    thread.join(0.7)
    assert answers == []  # nothing changed yet: the request is held
    _set(sessions, job, progress=0.4, message="lime: 40%")
    thread.join(WOKEN_WITHIN)
    assert not thread.is_alive(), "the long-poll was not woken by the change"
    (answer,) = answers
    assert answer.status_code == 200 and answer.json()["progress"] == 0.4
    assert answer.headers["ETag"].strip('"') != tag


def test_a_stale_since_or_a_finished_audit_is_answered_at_once(client, alice, sessions) -> None:  # type: ignore[no-untyped-def]
    job = add_job(sessions, alice.tenant_id, status=RUNNING, progress=0.5)
    thread, answers = _poll_in_thread(client, f"/v1/audits/{job}?wait=30&since=0000", alice.headers)
    thread.join(WOKEN_WITHIN)
    assert not thread.is_alive() and answers[0].json()["progress"] == 0.5
    _set(sessions, job, status=SUCCEEDED, progress=1.0, verdict="pass")
    thread, answers = _poll_in_thread(client, f"/v1/audits/{job}?wait=30", alice.headers)
    thread.join(WOKEN_WITHIN)
    assert not thread.is_alive() and answers[0].json()["status"] == "succeeded"


def test_waiting_clients_hold_no_admission_slot(app, client, alice, sessions) -> None:  # type: ignore[no-untyped-def]
    """More waiters than the API lets in at once; an ordinary request still gets in meanwhile."""
    job = add_job(sessions, alice.tenant_id, status=RUNNING, progress=0.2)
    tag = client.get(f"/v1/audits/{job}", headers=alice.headers).headers["ETag"].strip('"')
    n = app.state.settings.max_active_requests + 4
    polls = [
        _poll_in_thread(client, f"/v1/audits/{job}?wait=30&since={tag}", alice.headers) for _ in range(n)
    ]
    ordinary, answered = _poll_in_thread(client, "/v1/audits?limit=1", alice.headers)
    ordinary.join(WOKEN_WITHIN)
    assert not ordinary.is_alive() and answered[0].status_code == 200
    assert all(not answers for _, answers in polls)  # still waiting: nothing changed
    _set(sessions, job, progress=0.9)
    for thread, _ in polls:
        thread.join(WOKEN_WITHIN)
    assert [a[0].json()["progress"] for _, a in polls] == [0.9] * n


def test_bad_wait_values_are_refused_with_the_reason(client, alice, sessions) -> None:  # type: ignore[no-untyped-def]
    job = add_job(sessions, alice.tenant_id)
    r = client.get(f"/v1/audits/{job}?wait=-1", headers=alice.headers)
    assert r.status_code == 422 and "wait" in r.json()["error"]["message"]
    r = client.get(f"/v1/audits/{job}?wait=600", headers=alice.headers)
    assert r.status_code == 422 and "wait" in r.json()["error"]["message"]
    other = client.get("/v1/audits/aud_missing?wait=5", headers=alice.headers)
    assert other.status_code == 404


def test_past_the_waiter_cap_a_long_poll_is_answered_at_once(app, client, alice, sessions) -> None:  # type: ignore[no-untyped-def]
    settings = app.state.settings
    saved = settings.wait_max_clients
    settings.wait_max_clients = 0
    job = add_job(sessions, alice.tenant_id, status=RUNNING, progress=0.3)
    try:
        thread, answers = _poll_in_thread(client, f"/v1/audits/{job}?wait=30", alice.headers)
        thread.join(WOKEN_WITHIN)
        assert not thread.is_alive() and answers[0].json()["progress"] == 0.3
    finally:
        settings.wait_max_clients = saved
