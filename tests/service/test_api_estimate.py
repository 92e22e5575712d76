"""POST /v1/audits answers with the run's cost; the dashboard's launch form shows it before queueing."""

from __future__ import annotations

import io
import re

import pytest

from auditors.cost import Calibration
from occulta.db import AuditJob, ModelRecord
from occulta.estimate import calibration_json, calibration_key
from tests.service.rows import add_dataset, add_model

pytestmark = pytest.mark.service

# occulta_resnet_tiny: six pixel fills + layer masking, at 0, 0.1, ..., 0.9 removed, on 8 images.
MISSINGNESS_PASSES = 8 * (1 + 7 * 10)


def _body(sessions, caller):  # type: ignore[no-untyped-def]
    return {
        "model_id": add_model(sessions, caller.tenant_id),
        "dataset_id": add_dataset(sessions, caller.tenant_id),
        "audits": ["missingness_bias", "test_noop"],
        "config": {},
    }


def test_create_returns_passes_per_audit_and_no_seconds_before_any_calibration(client, alice, sessions):  # type: ignore[no-untyped-def]
    r = client.post("/v1/audits", json=_body(sessions, alice), headers=alice.headers)
    assert r.status_code == 202, r.text
    est = r.json()["estimate"]
    assert est["audits"]["missingness_bias"]["forward_passes"] == MISSINGNESS_PASSES
    assert est["audits"]["test_noop"]["forward_passes"] is None  # a plug-in that does not say
    assert est["seconds"] is None and "no calibration yet" in est["basis"]


def test_create_turns_passes_into_seconds_with_the_calibration_a_worker_stored(
    client, alice, sessions, store
):  # type: ignore[no-untyped-def]
    body = _body(sessions, alice)
    with sessions() as s:
        prefix = s.get(ModelRecord, body["model_id"]).storage_key
    cal = Calibration(
        "cuda:0",
        forward_s=1e-3,
        native_s=1e-3,
        gradient_s=3e-3,
        call_s=0.0,
        figure_s=0.5,
        batch=64,
        seconds=1.0,
    )
    store.put_stream(calibration_key(prefix), io.BytesIO(calibration_json(cal)))
    est = client.post("/v1/audits", json=body, headers=alice.headers).json()["estimate"]
    assert est["audits"]["missingness_bias"]["seconds"] == round(MISSINGNESS_PASSES * 1e-3 + 4 * 0.5, 2)
    assert est["seconds"] > 0 and "cuda:0" in est["basis"]


def _login(client, caller) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/dashboard/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = client.post("/dashboard/login", data={"csrf": token, "next": "", "api_key": caller.key})
    assert r.status_code in (200, 303), r.text


def test_the_launch_form_shows_the_estimate_and_queues_nothing(app, alice, sessions):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    body = _body(sessions, alice)
    # Secure cookies need https; no `with`: the lifespan would close the session-wide app's pools.
    browser = TestClient(app, base_url="https://testserver")
    _login(browser, alice)
    form = browser.get("/dashboard/launch").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    r = browser.post(
        "/dashboard/launch",
        data={
            "csrf": csrf,
            "model_id": body["model_id"],
            "dataset_id": body["dataset_id"],
            "audits": ["missingness_bias"],
            "action": "estimate",
        },
    )
    assert r.status_code == 200, r.text
    assert 'data-launch="estimate"' in r.text and f"{MISSINGNESS_PASSES:,}" in r.text
    with sessions() as s:
        assert s.query(AuditJob).filter_by(model_id=body["model_id"]).count() == 0
