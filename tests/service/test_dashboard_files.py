"""The dashboard's file answers go the same way down as the /v1 routes (the service, then `api.files`):
a download is the API's file with the API's media type, an artifact answers as the API's does, a
heatmap is drawn from the stored map, and every one of them is a 404 for another tenant."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from occulta.db import ArtifactRecord
from occulta.storage import audit_prefix
from tests.gate.reports import make_report
from tests.service.rows import add_job
from tests.service.test_dashboard_report import _sign_in

pytestmark = pytest.mark.service

# Download name on the dashboard -> the /v1 path of the same file.
DOWNLOADS = {"report.json": "report", "report.html": "report.html", "summary.md": "report.md"}


@pytest.fixture
def browser(app, client) -> Iterator:  # type: ignore[no-untyped-def]
    """On https, as production cookies are Secure; not entered so the session's client keeps the app."""
    from fastapi.testclient import TestClient

    c = TestClient(app, base_url="https://testserver")
    yield c
    c.close()


def _artifact(sessions, tenant_id: str, job: str, path: str, media_type: str, size: int) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        s.add(
            ArtifactRecord(
                job_id=job,
                tenant_id=tenant_id,
                path=path,
                media_type=media_type,
                size_bytes=size,
                storage_key=audit_prefix(tenant_id, job) + "artifacts/" + path,
            )
        )
        s.commit()


@pytest.fixture
def finished(sessions, store, alice) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Alice's finished audit: three report files of distinct bodies, a PNG and a raw map artifact."""
    job = add_job(sessions, alice.tenant_id, status="succeeded", verdict="fail")
    prefix = audit_prefix(alice.tenant_id, job)
    bodies = {
        "report.json": make_report().model_dump_json(by_alias=True).encode(),
        "report.html": b"<!doctype html><title>report</title>",
        "summary.md": b"# summary\n",
    }
    for name, body in bodies.items():
        store.put_stream(prefix + name, io.BytesIO(body))
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    store.put_stream(prefix + "artifacts/a.png", io.BytesIO(png))
    _artifact(sessions, alice.tenant_id, job, "a.png", "image/png", len(png))
    maps = io.BytesIO()
    np.savez_compressed(maps, gradient=np.arange(2 * 4 * 4, dtype=np.float16).reshape(2, 4, 4))
    store.put_stream(prefix + "artifacts/maps.npz", io.BytesIO(maps.getvalue()))
    _artifact(sessions, alice.tenant_id, job, "maps.npz", "application/octet-stream", len(maps.getvalue()))
    return {"job": job, "bodies": bodies}


def test_a_download_is_the_api_file_with_its_media_type_as_an_attachment(
    browser, client, alice, finished
) -> None:  # type: ignore[no-untyped-def]
    _sign_in(browser, alice.key)
    job = finished["job"]
    for name, api_name in DOWNLOADS.items():
        page = browser.get(f"/dashboard/audits/{job}/download/{name}")
        api = client.get(f"/v1/audits/{job}/{api_name}", headers=alice.headers)
        assert page.status_code == api.status_code == 200, name
        assert page.content == api.content == finished["bodies"][name]
        assert page.headers["content-type"] == api.headers["content-type"]
        assert page.headers["content-disposition"] == f'attachment; filename="{job}-{name}"'
    assert browser.get(f"/dashboard/audits/{job}/download/report.pdf").status_code == 404


def test_an_artifact_answers_as_the_api_and_a_map_is_drawn_from_the_stored_npz(
    browser, client, alice, finished
) -> None:  # type: ignore[no-untyped-def]
    _sign_in(browser, alice.key)
    job = finished["job"]
    page = browser.get(f"/dashboard/audits/{job}/artifacts/a.png", follow_redirects=False)
    api = client.get(f"/v1/audits/{job}/artifacts/a.png", headers=alice.headers, follow_redirects=False)
    assert page.status_code == api.status_code  # 307 to a presigned URL on S3
    if api.status_code == 307:
        assert page.headers["location"].split("?")[0] == api.headers["location"].split("?")[0]
    else:
        assert page.content == api.content
    drawn = browser.get(f"/dashboard/audits/{job}/maps/maps.npz?key=gradient&index=1")
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/png"
    assert drawn.content.startswith(b"\x89PNG")
    missing = browser.get(f"/dashboard/audits/{job}/maps/maps.npz?key=saliency")
    assert missing.status_code == 404 and "no map" in missing.text


def test_every_dashboard_page_of_another_tenants_audit_is_a_404(browser, alice, bob, finished) -> None:  # type: ignore[no-untyped-def]
    job = finished["job"]
    _sign_in(browser, bob.key)
    pages = [
        f"/dashboard/audits/{job}",
        f"/dashboard/audits/{job}/status",
        f"/dashboard/audits/{job}/download/report.json",
        f"/dashboard/audits/{job}/download/summary.md",
        f"/dashboard/audits/{job}/artifacts/a.png",
        f"/dashboard/audits/{job}/maps/maps.npz?key=gradient",
        f"/dashboard/compare?a={job}&b={job}",
    ]
    for url in pages:
        r = browser.get(url, follow_redirects=False)
        assert r.status_code == 404, (url, r.status_code)
    gate = browser.get("/dashboard/gate")
    csrf = re.search(r'name="csrf" value="([^"]+)"', gate.text).group(1)  # type: ignore[union-attr]
    assert job not in gate.text, "another tenant's audit is offered on the gate page"
    policy = "assertions:\n  verdict: [error, {equals: pass}]\n"
    posted = browser.post("/dashboard/gate", data={"audit_id": job, "policy": policy, "csrf": csrf})
    assert posted.status_code == 404
    listed = browser.get("/dashboard/").text
    assert job not in listed
    # The same pages work for Alice: the 404s were about tenancy, not broken pages.
    browser.cookies.clear()
    _sign_in(browser, alice.key)
    assert browser.get(f"/dashboard/audits/{job}/download/report.json").status_code == 200
    assert browser.get(f"/dashboard/audits/{job}/maps/maps.npz?key=gradient").status_code == 200
    assert job in browser.get("/dashboard/").text
