"""The dashboard's report page on a hand-made stored report: accuracy and the confusion matrix on the
audited sample with their n, and a confirmed shortcut shown as evidence (real examples of the class,
before/after stamping on other classes, the removal effect), plus the compare page's delta column."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest

from auditors.report import Artifact, AuditResult, Finding, SampleSummary
from occulta.db import ArtifactRecord
from occulta.storage.keys import audit_prefix
from tests.gate.reports import make_report
from tests.service.rows import add_job

pytestmark = pytest.mark.service

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
EXAMPLES = [
    {"image": "spurious_signal/ex/in_0.png", "role": "in_class", "true": "a", "pred_before": "a",
     "conf_before": 0.99, "pred_after": "a", "conf_after": 0.99},
    {"image": "spurious_signal/ex/stamp_0.png", "role": "stamped", "true": "b", "pred_before": "b",
     "conf_before": 0.91, "pred_after": "a", "conf_after": 0.97},
    {"image": "spurious_signal/ex/removed_0.png", "role": "removed", "true": "a", "pred_before": "a",
     "conf_before": 0.99, "pred_after": "b", "conf_after": 0.62},
]  # fmt: skip


@pytest.fixture
def browser(app, client) -> Iterator:  # type: ignore[no-untyped-def]
    """A client on https: production sessions set Secure cookies, which a browser sends only there.
    Not entered as a context manager: the session's `client` owns the app's lifespan (entering would
    close the shared queue on exit)."""
    from fastapi.testclient import TestClient

    c = TestClient(app, base_url="https://testserver")
    yield c
    c.close()


def _stored_audit(sessions, store, tenant_id: str, entropy: float) -> str:  # type: ignore[no-untyped-def]
    finding = Finding(
        kind="spurious_region",
        summary="the corner box decides class a",
        class_name="a",
        box=[24, 24, 6, 6],
        evidence={
            "flip_rate": 0.92,
            "examples": EXAMPLES,
            "removal": {"effect": 0.998, "random_effect": 0.0, "n": 40},
        },
    )
    audits = [
        AuditResult(
            name="missingness_bias",
            verdict="fail",
            summary="s",
            metrics={"worst": {"entropy_drop_at_half": entropy, "auc": 0.7}},
        ),
        AuditResult(
            name="spurious_signal",
            verdict="fail",
            summary="a shortcut",
            metrics={"n_confirmed": 1},
            findings=[finding],
            artifacts=[Artifact(name=e["image"], path=e["image"]) for e in EXAMPLES],
        ),
    ]
    report = make_report(audits=audits)
    report.sample = SampleSummary(
        n=64, n_per_class=[30, 34], accuracy=0.875, per_class_accuracy=[0.9, 0.8529],
        confusion=[[27, 3], [5, 29]], predicted_per_class=[32, 32],
    )  # fmt: skip
    job = add_job(sessions, tenant_id, status="succeeded", verdict="fail")
    prefix = audit_prefix(tenant_id, job)
    store.put_stream(prefix + "report.json", io.BytesIO(report.model_dump_json(by_alias=True).encode()))
    with sessions() as s:
        for e in EXAMPLES:
            store.put_stream(prefix + e["image"], io.BytesIO(PNG), content_type="image/png")
            s.add(
                ArtifactRecord(
                    job_id=job,
                    tenant_id=tenant_id,
                    path=e["image"],
                    media_type="image/png",
                    size_bytes=len(PNG),
                    storage_key=prefix + e["image"],
                )
            )
        s.commit()
    return job


def _sign_in(client, key: str) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/dashboard/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    signed = client.post("/dashboard/login", data={"api_key": key, "csrf": token}, follow_redirects=False)
    assert signed.status_code == 303


def test_report_page_shows_sample_accuracy_confusion_and_shortcut_evidence(
    browser, sessions, store, alice
) -> None:  # type: ignore[no-untyped-def]
    job = _stored_audit(sessions, store, alice.tenant_id, 0.4)
    _sign_in(browser, alice.key)
    html = browser.get(f"/dashboard/audits/{job}").text
    assert "<strong>87.5%</strong> correct on <strong>n = 64</strong> images" in html
    assert re.search(r"<td>b</td><td class=\"num\">34</td>\s*<td class=\"num\">85.3%</td>", html)
    assert 'class="num diag lvl-4">27<' in html and 'class="num off lvl-1">5<' in html
    assert "data-removal" in html and "<strong>0.998</strong> confidence" in html and "n = 40 images" in html
    for e in EXAMPLES:
        assert f"/dashboard/audits/{job}/artifacts/{e['image']}" in html
    assert "b 91% → <strong>a</strong> 97%" in html, "a stamped example shows its prediction before and after"
    assert html.count('class="example flipped"') == 2
    served = browser.get(f"/dashboard/audits/{job}/artifacts/{EXAMPLES[0]['image']}", follow_redirects=False)
    assert served.status_code == 307, "an example image is served (a presigned URL on S3)"


def test_compare_lists_changed_metrics_first_with_a_signed_delta_and_collapses_equal_ones(
    browser, sessions, store, alice
) -> None:  # type: ignore[no-untyped-def]
    a = _stored_audit(sessions, store, alice.tenant_id, 0.4)
    b = _stored_audit(sessions, store, alice.tenant_id, 0.65)
    _sign_in(browser, alice.key)
    html = browser.get(f"/dashboard/compare?a={a}&b={b}").text
    assert "Δ (B − A)" in html
    assert re.search(
        r"worst\.entropy_drop_at_half</code></td><td class=\"num\">0\.4</td><td class=\"num\">0\.65</td><td class=\"num\">\+0\.25</td>",
        html,
    )
    assert re.search(r"<summary>1 equal metric</summary>", html), "auc is equal in both and collapsed"
    assert html.index('id="missingness_bias"') < html.index('id="spurious_signal"'), "changed audits first"
