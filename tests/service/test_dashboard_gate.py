"""The dashboard's gate page: it starts from `occulta policy init`'s policy for the chosen audit, and a
misspelt metric is a policy error shown with its did-you-mean, exactly as the CLI and the API say it."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterator

import pytest

from occulta.policy_init import default_policy, render_policy
from occulta.storage.keys import audit_prefix
from tests.gate.reports import make_report
from tests.service.rows import add_job
from tests.service.test_dashboard_report import _sign_in
from tests.service.web import csrf_of

pytestmark = pytest.mark.service


@pytest.fixture
def browser(app, client) -> Iterator:  # type: ignore[no-untyped-def]
    """On https, as production cookies are Secure; not entered so the session's client keeps the app."""
    from fastapi.testclient import TestClient

    c = TestClient(app, base_url="https://testserver")
    yield c
    c.close()


def _stored(sessions, store, tenant_id: str) -> str:  # type: ignore[no-untyped-def]
    job = add_job(sessions, tenant_id, status="succeeded", verdict="fail")
    body = make_report().model_dump_json(by_alias=True).encode()
    store.put_stream(audit_prefix(tenant_id, job) + "report.json", io.BytesIO(body))
    return job


def _policy_in(page: str) -> str:
    found = re.search(r'<textarea name="policy"[^>]*>(.*?)</textarea>', page, re.S)
    assert found is not None
    return html.unescape(found.group(1))


def test_gate_page_starts_from_policy_init_for_the_chosen_battery(browser, sessions, store, alice) -> None:  # type: ignore[no-untyped-def]
    job = _stored(sessions, store, alice.tenant_id)
    _sign_in(browser, alice.key)
    page = browser.get(f"/dashboard/gate?audit={job}").text
    audits = browser.get(f"/v1/audits/{job}", headers=alice.headers).json()["audits"]
    assert _policy_in(page).strip() == render_policy(audits).strip()
    assert "missingness_bias.verdict: [warn," in default_policy(), "a caveat is a warning everywhere"


def test_misspelt_metric_is_shown_as_a_policy_error_with_the_did_you_mean(
    browser, sessions, store, alice
) -> None:  # type: ignore[no-untyped-def]
    job = _stored(sessions, store, alice.tenant_id)
    _sign_in(browser, alice.key)
    token = csrf_of(browser.get(f"/dashboard/gate?audit={job}").text)
    policy = "assertions:\n  missingness_bias.metrics.worst.entropy_drp_at_half: [error, {max: 1}]\n"
    answer = browser.post("/dashboard/gate", data={"audit_id": job, "policy": policy, "csrf": token})
    assert answer.status_code == 422
    alert = re.search(r'data-gate="error">(.*?)</p>', answer.text, re.S)
    assert alert is not None
    text = html.unescape(alert.group(1))
    assert text.startswith("line 2: unknown metric `entropy_drp_at_half`")
    assert "(did you mean entropy_drop_at_half?)" in text
    failing = "assertions:\n  lime_consistency.verdict: [error, {equals: pass}]\n"
    answer = browser.post("/dashboard/gate", data={"audit_id": job, "policy": failing, "csrf": token})
    assert answer.status_code == 200 and 'data-gate="fail"' in answer.text, "a failing model is not a typo"
