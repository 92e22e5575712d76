"""The dashboard's side of fair dispatch and cheap waiting: an audit launched from the page is
interactive (ahead of batch audits), and its pending page long-polls its status fragment, which
answers when the status changes and reloads the page into the report once the audit is finished."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from sqlalchemy import update

from occulta.db import AuditJob
from occulta.db.models import RUNNING, SUCCEEDED
from occulta.jobs import fairness
from tests.service.rows import add_dataset, add_model
from tests.service.web import csrf_of, signed_in

pytestmark = pytest.mark.service

WOKEN_WITHIN = 20.0  # the fragment's long-poll runs 25 s when nothing changes


def _set(sessions, job_id: str, **values: Any) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        s.execute(update(AuditJob).where(AuditJob.id == job_id).values(**values))
        s.commit()


def test_a_launched_audit_is_interactive_and_its_page_long_polls_until_done(app, alice, sessions) -> None:  # type: ignore[no-untyped-def]
    web = signed_in(app, alice)
    page = web.get("/dashboard/launch")
    form = {
        "csrf": csrf_of(page.text),
        "idem": "live-1",
        "model_id": add_model(sessions, alice.tenant_id),
        "dataset_id": add_dataset(sessions, alice.tenant_id),
        "audits": "missingness_bias",
    }
    launched = web.post("/dashboard/launch", data=form, follow_redirects=False)
    assert launched.status_code == 303, launched.text
    audit_id = launched.headers["location"].rsplit("/", 1)[-1]
    with sessions() as s:
        assert s.get(AuditJob, audit_id).priority == fairness.INTERACTIVE  # type: ignore[union-attr]
    _set(sessions, audit_id, status=RUNNING, progress=0.25, message="missingness_bias: 25%")
    pending = web.get(launched.headers["location"])
    match = re.search(r'hx-get="([^"]+/status\?wait=25&amp;since=([0-9a-f]+))"', pending.text)
    assert match, pending.text[:2000]
    url = match.group(1).replace("&amp;", "&")
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(web.get(url)), daemon=True)
    thread.start()
    thread.join(0.7)
    assert answers == []  # unchanged: held
    _set(sessions, audit_id, progress=0.5, message="missingness_bias: 50%")
    thread.join(WOKEN_WITHIN)
    assert not thread.is_alive() and "50%" in answers[0].text
    next_url = re.search(r'hx-get="([^"]+)"', answers[0].text).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    _set(sessions, audit_id, status=SUCCEEDED, progress=1.0, verdict="pass")
    done = web.get(next_url)
    assert done.status_code == 204 and done.headers["HX-Refresh"] == "true"
