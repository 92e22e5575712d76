"""The dashboard submits and cancels through the same service calls as /v1: a launch is one audit
per form (its idempotency key), queued with its message sent, and a cancel from the page cancels it."""

from __future__ import annotations

import re

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from occulta.db import AuditJob, OutboxMessage
from tests.service.rows import add_dataset, add_model

pytestmark = pytest.mark.service


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def test_a_launch_submits_one_audit_per_form_and_the_page_cancels_it(
    app, alice, sessions, prod_settings
) -> None:  # type: ignore[no-untyped-def]
    queue = redis.Redis.from_url(prod_settings.broker_url)
    # Production cookies are Secure; no `with`: the session's shared app keeps its lifespan.
    web = TestClient(app, base_url="https://testserver")
    login = web.get("/dashboard/login")
    r = web.post(
        "/dashboard/login",
        data={"api_key": alice.key, "csrf": _csrf(login.text), "next": "/dashboard/launch"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    page = web.get("/dashboard/launch")
    form = {
        "csrf": _csrf(page.text),
        "idem": "form-123",
        "model_id": add_model(sessions, alice.tenant_id),
        "dataset_id": add_dataset(sessions, alice.tenant_id),
        "audits": "missingness_bias",
    }
    before = queue.llen(prod_settings.queue)
    first = web.post("/dashboard/launch", data=form, follow_redirects=False)
    double_click = web.post("/dashboard/launch", data=form, follow_redirects=False)
    assert first.status_code == double_click.status_code == 303, first.text
    assert first.headers["location"] == double_click.headers["location"]
    audit_id = first.headers["location"].rsplit("/", 1)[-1]
    assert queue.llen(prod_settings.queue) == before + 1
    with sessions() as s:
        same_form = (AuditJob.tenant_id == alice.tenant_id) & (AuditJob.idempotency_key == "form-123")
        assert s.scalar(select(func.count()).where(same_form)) == 1
        assert s.scalar(select(func.count()).where(OutboxMessage.job_id == audit_id)) == 0
    pending = web.get(first.headers["location"])
    r = web.post(
        f"/dashboard/audits/{audit_id}/cancel", data={"csrf": _csrf(pending.text)}, follow_redirects=False
    )
    assert r.status_code == 303
    with sessions() as s:
        job = s.get(AuditJob, audit_id)
        assert job is not None and job.status == "cancelled"
