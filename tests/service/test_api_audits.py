"""POST/GET /v1/audits and the read routes: idempotent creation, validation, filters and pagination,
cancel, reports, artifacts (307 to a presigned S3 URL), gate, keys, auth, metrics."""

from __future__ import annotations

import io

import httpx
import pytest
import redis

from occulta.db import ArtifactRecord
from occulta.storage import audit_prefix
from tests.gate.reports import make_report
from tests.service.rows import add_dataset, add_job, add_model

pytestmark = pytest.mark.service


def _body(sessions, caller, **over):  # type: ignore[no-untyped-def]
    return {
        "model_id": add_model(sessions, caller.tenant_id),
        "dataset_id": add_dataset(sessions, caller.tenant_id),
        "audits": ["test_noop"],
        "config": {"test_noop": {"threshold": 0.2}},
        "seed": 1,
    } | over


def test_create_commits_the_row_then_sends_the_task_by_name(client, alice, sessions, prod_settings) -> None:  # type: ignore[no-untyped-def]
    queue = redis.Redis.from_url(prod_settings.broker_url)
    before = queue.llen(prod_settings.queue)
    r = client.post("/v1/audits", json=_body(sessions, alice), headers=alice.headers)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["progress"] == 0 and body["audits"] == ["test_noop"]
    assert queue.llen(prod_settings.queue) == before + 1
    assert b"occulta.audit.run" in queue.lindex(prod_settings.queue, 0)
    assert client.get(f"/v1/audits/{body['id']}", headers=alice.headers).json()["id"] == body["id"]


def test_the_same_idempotency_key_and_body_returns_the_same_audit(client, alice, sessions) -> None:  # type: ignore[no-untyped-def]
    body = _body(sessions, alice)
    headers = alice.headers | {"Idempotency-Key": "ci-run-42"}
    first = client.post("/v1/audits", json=body, headers=headers)
    again = client.post("/v1/audits", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]
    other = client.post("/v1/audits", json=body | {"seed": 2}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"


def test_unknown_audits_and_bad_configs_are_422_with_the_reason(client, alice, sessions) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/audits", json=_body(sessions, alice, audits=["no_such_audit"], config={}), headers=alice.headers
    )
    assert r.status_code == 422 and "no_such_audit" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "invalid_audit_config"
    r = client.post(
        "/v1/audits",
        json=_body(sessions, alice, config={"test_noop": {"treshold": 1}}),
        headers=alice.headers,
    )
    assert r.status_code == 422 and "treshold" in r.json()["error"]["message"]
    r = client.post("/v1/audits", json=_body(sessions, alice, audits=[]), headers=alice.headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = client.post(
        "/v1/audits", content=b"{not json", headers=alice.headers | {"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"


def test_list_filters_and_paginates_newest_first(client, alice, sessions) -> None:  # type: ignore[no-untyped-def]
    model = add_model(sessions, alice.tenant_id)
    ids = [add_job(sessions, alice.tenant_id, model_id=model) for _ in range(5)]
    done = add_job(sessions, alice.tenant_id, model_id=model, status="succeeded", verdict="fail")
    seen, cursor = [], None
    while True:
        params = {"model_id": model, "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/audits", params=params, headers=alice.headers).json()
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted([*ids, done]) and len(seen) == len(set(seen))
    failed = client.get(
        "/v1/audits", params={"verdict": "fail", "model_id": model}, headers=alice.headers
    ).json()
    assert [a["id"] for a in failed["items"]] == [done]
    queued = client.get(
        "/v1/audits", params={"status": "queued", "model_id": model}, headers=alice.headers
    ).json()
    assert sorted(a["id"] for a in queued["items"]) == sorted(ids)
    assert client.get("/v1/audits", params={"status": "nope"}, headers=alice.headers).status_code == 422
    assert client.get("/v1/audits", params={"cursor": "garbage"}, headers=alice.headers).status_code == 400


def test_cancel_a_queued_audit_then_cancel_again_is_a_conflict(client, alice, sessions) -> None:  # type: ignore[no-untyped-def]
    job = add_job(sessions, alice.tenant_id)
    r = client.post(f"/v1/audits/{job}/cancel", headers=alice.headers)
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    assert client.post(f"/v1/audits/{job}/cancel", headers=alice.headers).status_code == 409


def test_reports_artifacts_and_gate_read_what_the_worker_stored(client, alice, sessions, store) -> None:  # type: ignore[no-untyped-def]
    job = add_job(sessions, alice.tenant_id, status="succeeded", verdict="fail")
    assert client.get(f"/v1/audits/{job}/report", headers=alice.headers).status_code == 404
    prefix = audit_prefix(alice.tenant_id, job)
    report = make_report()
    store.put_stream(prefix + "report.json", io.BytesIO(report.model_dump_json().encode()))
    store.put_stream(prefix + "report.html", io.BytesIO(b"<html>ok</html>"))
    store.put_stream(prefix + "summary.md", io.BytesIO(b"# Summary"))
    store.put_stream(prefix + "artifacts/mb/plot.png", io.BytesIO(b"\x89PNG"))
    with sessions() as s:
        s.add(
            ArtifactRecord(
                job_id=job,
                tenant_id=alice.tenant_id,
                path="mb/plot.png",
                media_type="image/png",
                size_bytes=4,
                storage_key=prefix + "artifacts/mb/plot.png",
            )
        )
        s.commit()
    got = client.get(f"/v1/audits/{job}/report", headers=alice.headers)
    assert got.status_code == 200 and got.json()["verdict"] == report.verdict
    assert client.get(f"/v1/audits/{job}/report.html", headers=alice.headers).text == "<html>ok</html>"
    assert client.get(f"/v1/audits/{job}/report.md", headers=alice.headers).text == "# Summary"
    art = client.get(f"/v1/audits/{job}/artifacts/mb/plot.png", headers=alice.headers, follow_redirects=False)
    assert art.status_code == 307
    assert httpx.get(art.headers["location"]).content == b"\x89PNG"
    for bad in ("mb/../../x", "%2e%2e/x", "mb/nope.png"):
        r = client.get(f"/v1/audits/{job}/artifacts/{bad}", headers=alice.headers, follow_redirects=False)
        assert r.status_code in (400, 404), bad
    policy = "assertions:\n  lime_consistency.metrics.removal.own_at_25: [error, {min: 0.9}]\n"
    gate = client.post("/v1/gate", json={"audit_id": job, "policy": policy}, headers=alice.headers)
    assert gate.status_code == 200, gate.text
    assert gate.json()["passed"] is False and gate.json()["assertions"][0]["actual"] == 0.7
    typo = client.post(
        "/v1/gate", json={"audit_id": job, "policy": policy.replace("[error", "[eror")}, headers=alice.headers
    )
    assert typo.status_code == 422 and typo.json()["error"]["code"] == "invalid_policy"


def test_requests_without_a_valid_key_are_401_with_the_error_shape(client, alice) -> None:  # type: ignore[no-untyped-def]
    for headers in ({}, {"Authorization": "Bearer occ_wrong"}, {"X-API-Key": "nope"}):
        r = client.get("/v1/audits", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert client.get("/v1/audits", headers={"X-API-Key": alice.key}).status_code == 200


def test_keys_are_shown_once_listed_without_the_secret_and_revocable(client, alice) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/keys", json={"name": "ci"}, headers=alice.headers)
    assert r.status_code == 201
    new = r.json()
    assert new["key"].startswith("occ_") and new["key"].startswith(new["prefix"])
    listed = client.get("/v1/keys", headers=alice.headers).json()
    assert {k["id"] for k in listed} >= {new["id"]} and all("key" not in k for k in listed)
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {new['key']}"}).status_code == 200
    assert client.delete(f"/v1/keys/{new['id']}", headers=alice.headers).status_code == 204
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {new['key']}"}).status_code == 401


def test_health_and_metrics(client, alice) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/livez").json()["ok"] is True
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "database": "ok",
        "broker": "ok",
        "storage": "ok",
    }
    client.get("/v1/models", headers=alice.headers)
    text = client.get("/metrics").text
    assert 'occulta_http_requests_total{method="GET",route="/v1/models",status="200"}' in text
    assert 'occulta_audits{status="queued"}' in text
    assert "occulta_http_request_duration_seconds_bucket" in text


def test_openapi_documents_every_route_with_examples(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/v1/models",
        "/v1/models/{model_id}",
        "/v1/datasets",
        "/v1/audits",
        "/v1/audits/{audit_id}/cancel",
        "/v1/audits/{audit_id}/report",
        "/v1/audits/{audit_id}/artifacts/{path}",
        "/v1/gate",
        "/v1/keys",
        "/readyz",
        "/metrics",
    } <= paths
    assert "examples" in spec["components"]["schemas"]["AuditIn"]
    assert "multipart/form-data" in spec["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]
