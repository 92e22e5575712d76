"""Another tenant's objects do not exist for you: every route answers 404, and nothing changes."""

from __future__ import annotations

import io

import pytest

from occulta.db import ApiKey, ArtifactRecord, AuditJob, ModelRecord
from occulta.storage import audit_prefix
from tests.gate.reports import make_report
from tests.service.rows import add_dataset, add_job, add_model

pytestmark = pytest.mark.service


@pytest.fixture
def alices(sessions, store, alice):  # type: ignore[no-untyped-def]
    """Alice's model, dataset, finished audit with report + artifact, and a second API key."""
    model = add_model(sessions, alice.tenant_id)
    dataset = add_dataset(sessions, alice.tenant_id)
    running = add_job(sessions, alice.tenant_id, model_id=model, dataset_id=dataset, status="running")
    done = add_job(sessions, alice.tenant_id, model_id=model, dataset_id=dataset, status="succeeded")
    prefix = audit_prefix(alice.tenant_id, done)
    for name in ("report.json", "report.html", "summary.md"):
        store.put_stream(prefix + name, io.BytesIO(make_report().model_dump_json().encode()))
    store.put_stream(prefix + "artifacts/a.png", io.BytesIO(b"png"))
    from occulta.service.keys import create_key

    with sessions() as s:
        s.add(
            ArtifactRecord(
                job_id=done,
                tenant_id=alice.tenant_id,
                path="a.png",
                media_type="image/png",
                size_bytes=3,
                storage_key=prefix + "artifacts/a.png",
            )
        )
        s.commit()
        key = create_key(s, tenant_id=alice.tenant_id, name="second")
    return {"model": model, "dataset": dataset, "running": running, "done": done, "key": key.id}


def test_every_route_hides_another_tenants_objects(client, alice, bob, alices, sessions) -> None:  # type: ignore[no-untyped-def]
    a = alices
    policy = "assertions:\n  verdict: [error, {equals: pass}]\n"
    calls = [
        ("GET", f"/v1/models/{a['model']}", None),
        ("DELETE", f"/v1/models/{a['model']}", None),
        ("GET", f"/v1/datasets/{a['dataset']}", None),
        ("GET", f"/v1/audits/{a['done']}", None),
        ("POST", f"/v1/audits/{a['running']}/cancel", None),
        ("GET", f"/v1/audits/{a['done']}/report", None),
        ("GET", f"/v1/audits/{a['done']}/report.html", None),
        ("GET", f"/v1/audits/{a['done']}/report.md", None),
        ("GET", f"/v1/audits/{a['done']}/artifacts/a.png", None),
        ("POST", "/v1/gate", {"audit_id": a["done"], "policy": policy}),
        (
            "POST",
            "/v1/audits",
            {
                "model_id": a["model"],
                "dataset_id": add_dataset(sessions, bob.tenant_id),
                "audits": ["test_noop"],
            },
        ),
        (
            "POST",
            "/v1/audits",
            {
                "model_id": add_model(sessions, bob.tenant_id),
                "dataset_id": a["dataset"],
                "audits": ["test_noop"],
            },
        ),
        ("DELETE", f"/v1/keys/{a['key']}", None),
    ]
    for method, url, body in calls:
        r = client.request(method, url, json=body, headers=bob.headers, follow_redirects=False)
        assert r.status_code == 404, (method, url, r.status_code, r.text)
        assert r.json()["error"]["code"] == "not_found"
    # Lists show only your own rows.
    for url in ("/v1/models", "/v1/datasets", "/v1/keys"):
        ids = {row["id"] for row in client.get(url, headers=bob.headers).json()}
        assert not ids & {a["model"], a["dataset"], a["key"]}, url
    assert client.get("/v1/audits", headers=bob.headers).json()["items"] == []
    # ...and nothing of Alice's changed.
    with sessions() as s:
        assert s.get(ModelRecord, a["model"]) is not None
        assert s.get(AuditJob, a["running"]).cancel_requested is False  # type: ignore[union-attr]
        assert s.get(ApiKey, a["key"]).revoked_at is None  # type: ignore[union-attr]
    # The same calls work for Alice (the 404s above were about tenancy, not broken routes).
    assert client.get(f"/v1/audits/{a['done']}/report", headers=alice.headers).status_code == 200
    assert (
        client.post(
            "/v1/gate", json={"audit_id": a["done"], "policy": policy}, headers=alice.headers
        ).status_code
        == 200
    )
