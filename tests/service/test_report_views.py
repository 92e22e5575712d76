"""The dashboard's report page and the static report say the same thing the same way: the model's
verdict first, the model audits, then the explanation audits as caveats (one shared partial)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest

from occulta.render import render_html
from occulta.report_view import CAVEATS_HEADING, MODEL_HEADING, MODEL_VERDICT
from occulta.storage.keys import audit_prefix
from tests.gate.test_report_view import CAVEAT, spurious_fail_with_a_caveat
from tests.service.rows import add_job
from tests.service.test_dashboard_report import _sign_in

pytestmark = pytest.mark.service


@pytest.fixture
def browser(app, client) -> Iterator:  # type: ignore[no-untyped-def]
    """On https (production cookies are Secure); not entered, so the session's client keeps the app."""
    from fastapi.testclient import TestClient

    c = TestClient(app, base_url="https://testserver")
    yield c
    c.close()


def _section(html: str, marker: str) -> str:
    start = html.index(marker)
    return html[start : html.index("</section>", start)]


def _words(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def test_dashboard_and_static_report_share_the_verdicts_section(browser, sessions, store, alice) -> None:  # type: ignore[no-untyped-def]
    report = spurious_fail_with_a_caveat()
    job = add_job(sessions, alice.tenant_id, status="succeeded", verdict="fail")
    body = report.model_dump_json(by_alias=True).encode()
    store.put_stream(audit_prefix(alice.tenant_id, job) + "report.json", io.BytesIO(body))
    _sign_in(browser, alice.key)
    page = browser.get(f"/dashboard/audits/{job}").text
    static = render_html(report)

    for html in (page, static):
        text = _words(html)
        assert text.index(MODEL_VERDICT) < text.index(MODEL_HEADING) < text.index(CAVEATS_HEADING)
        model_table = _section(html, 'data-view="verdicts"').split('data-view="caveats"')[0]
        assert "missingness_bias" not in model_table, "an explanation caveat is never a model verdict"
    assert _words(_section(page, 'data-view="verdicts"')) == _words(_section(static, 'data-view="verdicts"'))
    assert CAVEAT in page
    sections = re.findall(r'<section class="card audit" id="([a-z_]+)"', page)
    assert sections == ["spurious_signal", "missingness_bias", "lime_consistency"], "model audits first"
