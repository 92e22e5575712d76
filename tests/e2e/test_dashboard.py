"""The dashboard in a real browser against a real API server and worker (embedded mode): sign in,
launch an audit of a planted-shortcut model, watch it finish, read the report with its finding drawn on
an image, compare two audits, gate one, and check another tenant sees a 404 page. Any console error in
the browser fails the test. `OCCULTA_SCREENSHOTS=1` saves the report and comparison pages under docs/."""

from __future__ import annotations

import os
import re

import httpx
import pytest

from tests.fixtures.service import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

DATA_REF = "synthetic:shapes?classes=4&size=32&n=48&artifact=square&artifact_class=0&fraction=1&seed=3"
SCREENSHOTS = os.environ.get("OCCULTA_SCREENSHOTS") == "1"


def _watch_console(page) -> list[str]:  # type: ignore[no-untyped-def]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
    return errors


def _sign_in(page, url: str, key: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(url + "/")
    assert "/dashboard/login" in page.url
    page.fill("input[name=api_key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/(\?.*)?$"))


def _second_audit(stack, model_id: str, dataset_id: str) -> str:  # type: ignore[no-untyped-def]
    """Queued over the API right away so the worker runs it while the browser watches the first."""
    body = {
        "model_id": model_id,
        "dataset_id": dataset_id,
        "audits": ["missingness_bias", "spurious_signal"],
        "config": {
            "missingness_bias": {"strategies": ["black", "mean"]},
            "spurious_signal": {"n_images": 32},
        },
        "samples": 24,
        "seed": 1,
    }
    r = httpx.post(stack.url + "/v1/audits", json=body, headers=stack.headers, timeout=30)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _audit_ids(stack) -> set[str]:  # type: ignore[no-untyped-def]
    r = httpx.get(stack.url + "/v1/audits", params={"limit": 200}, headers=stack.headers, timeout=30)
    assert r.status_code == 200, r.text
    return {a["id"] for a in r.json()["items"]}


def _audit_status(stack, audit_id: str, until: str, timeout: float = 60) -> str:  # type: ignore[no-untyped-def]
    """The audit's status once it reads `until` (a running audit stops at its next batch), or at timeout."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        status = str(httpx.get(f"{stack.url}/v1/audits/{audit_id}", headers=stack.headers).json()["status"])
        if status == until or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def test_dashboard_launch_report_compare_gate_and_tenancy(  # type: ignore[no-untyped-def]
    stack, browser, shortcut_model, other_tenant_key
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = _watch_console(page)
    _sign_in(page, stack.url, stack.key)
    cookie = next(c for c in context.cookies() if c["name"] == "occulta_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and "occ_" not in cookie["value"]

    # Launch: upload the card and weights, reference a synthetic dataset, a small battery.
    page.goto(stack.url + "/dashboard/launch")
    page.set_input_files("input[name=card]", str(shortcut_model.card))
    page.set_input_files("input[name=weights]", str(shortcut_model.weights))
    page.fill("input[name=dataset_ref]", DATA_REF)
    page.check("input[name=strategies][value=black]")
    page.check("input[name=strategies][value=layer_mask]")
    # Enough images per class for the spurious audit's minimum group (8 of each of 4 classes).
    page.fill("input[name=samples]", "64")
    page.fill("input[name='spurious_signal.n_images']", "64")
    page.fill("textarea[name=regions]", "stamp: 25, 25, 6, 6")  # where the synthetic set plants it

    # Estimate first: the cost appears on the form and the server queues nothing.
    before = _audit_ids(stack)
    page.click("button[value=estimate]")
    page.wait_for_selector("[data-launch=estimate]")
    assert "forward passes" in page.locator("[data-launch=estimate]").inner_text()
    assert _audit_ids(stack) == before, "Estimate cost launched an audit"
    # The uploaded model stays picked; Launch queues exactly one audit.
    assert page.locator("select[name=model_id]").input_value().startswith("mdl_")
    page.click("button.primary")
    page.wait_for_url(re.compile(r"/dashboard/audits/aud_"))
    assert len(_audit_ids(stack) - before) == 1
    first = page.url.rsplit("/", 1)[1]
    audit = httpx.get(f"{stack.url}/v1/audits/{first}", headers=stack.headers).json()
    assert audit["audits"] == ["missingness_bias", "spurious_signal"]
    second = _second_audit(stack, audit["model_id"], audit["dataset_id"])

    # Cancel: a third audit queued behind the other two is cancelled from its page.
    third = _second_audit(stack, audit["model_id"], audit["dataset_id"])
    page.goto(f"{stack.url}/dashboard/audits/{third}")
    page.click("form[action$='/cancel'] button[type=submit]")
    page.wait_for_url(re.compile(rf"/dashboard/audits/{third}$"))
    assert _audit_status(stack, third, until="cancelled") == "cancelled"

    # The list shows both with live status; the pending page reloads into the report when done.
    page.goto(stack.url + "/dashboard/")
    assert page.locator(f"tr[data-audit='{first}']").count() == 1
    page.goto(f"{stack.url}/dashboard/audits/{first}")
    page.wait_for_selector("section.hero", timeout=120_000)

    # Report: the model's verdict, the model audit in its table and the explanation audit as a caveat
    # (or the words saying none), charts, the finding's box on an image.
    shown = page.locator(".overall [data-view=model-verdict]").get_attribute("data-verdict")
    assert shown in ("pass", "fail", "inconclusive")
    assert page.locator("[data-view=model-audits] tr[data-audit]").count() == 1
    assert page.locator("[data-view=caveats]").count() == 1
    assert page.locator("canvas[data-group]").count() >= 3
    page.wait_for_function("() => window.Chart !== undefined")  # deferred vendored script
    assert page.evaluate("Array.from(document.querySelectorAll('canvas')).every(c => Chart.getChart(c))")
    shot = page.locator("li.finding[data-kind=spurious_region] figure.shot").first
    assert shot.locator("rect.box").count() == 1, page.locator("#spurious_signal > p").first.inner_text()
    assert shot.locator("img").evaluate("img => img.complete && img.naturalWidth === 32")
    assert "key=image" in (shot.locator("img").get_attribute("src") or ""), "drawn on an input of its class"
    assert page.locator("#spurious_signal .tile.pair").first.locator("img").count() == 2
    gallery = page.locator("#spurious_signal [data-gallery]").first
    before = gallery.locator("img[data-map]").first.get_attribute("src")
    gallery.locator("button.toggle").nth(1).click()
    page.wait_for_function(
        "src => { const i = document.querySelector('#spurious_signal img[data-map]');"
        " return i.src !== src && i.complete && i.naturalWidth > 0 }",
        arg=page.evaluate("s => new URL(s, location.href).href", before),
    )
    download = page.request.get(f"{stack.url}/dashboard/audits/{first}/download/report.json")
    assert download.ok and download.json()["verdict"] == shown
    assert page.request.get(f"{stack.url}/dashboard/audits/{first}/download/summary.md").ok
    if SCREENSHOTS:
        page.screenshot(path=str(ROOT / "docs" / "dashboard-report.png"), full_page=True)

    # Compare the two audits: overlaid curves and the metrics in two columns.
    httpx_wait(stack, second)
    page.goto(f"{stack.url}/dashboard/compare?a={first}&b={second}")
    assert page.locator(".two .side").count() == 2
    assert page.locator("canvas[data-group]").count() >= 3
    assert page.evaluate(
        "Chart.getChart(document.querySelector('canvas')).data.datasets.some(d => d.label.startsWith('B · '))"
    )
    assert page.locator("tr.diff").count() >= 1
    if SCREENSHOTS:
        page.screenshot(path=str(ROOT / "docs" / "dashboard-compare.png"), full_page=True)

    # Gate: each assertion on its own row; a typo in the policy is explained, not a crash.
    page.goto(f"{stack.url}/dashboard/gate?audit={first}")
    page.click("main form button[type=submit]")
    page.wait_for_selector("[data-gate]")
    assert page.locator("[data-gate] tbody tr, [data-gate] table tr:not(:first-child)").count() >= 2
    assert errors == [], errors
    page.fill("textarea[name=policy]", "assertions:\n  missingness_bias.verdict: [eror, {in: [pass]}]\n")
    page.click("main form button[type=submit]")
    assert page.locator("[data-gate=error]").count() == 1
    assert [e for e in errors if "status of 422" not in e] == [], errors  # the typo's 422 is expected
    forged = page.request.post(
        f"{stack.url}/dashboard/gate", form={"audit_id": first, "policy": "assertions: {}"}
    )
    assert forged.status == 403  # no CSRF token

    # Another tenant gets the same 404 page the API gives, not the audit.
    other = browser.new_context()
    intruder = other.new_page()
    _sign_in(intruder, stack.url, other_tenant_key)
    response = intruder.goto(f"{stack.url}/dashboard/audits/{first}")
    assert response.status == 404 and intruder.locator("[data-error='404']").count() == 1
    assert intruder.request.get(f"{stack.url}/dashboard/audits/{first}/download/report.json").status == 404
    other.close()
    context.close()


def httpx_wait(stack, audit_id: str, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    from occulta.client import OccultaClient

    with OccultaClient(stack.url, stack.key, retries=0) as client:
        final = client.wait(audit_id, timeout=timeout, interval=0.5)
    assert final.status == "succeeded", final


def test_signed_out_pages_redirect_to_sign_in(stack, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    errors = _watch_console(page)
    page.goto(stack.url + "/dashboard/compare")
    assert "/dashboard/login?next=" in page.url
    page.fill("input[name=api_key]", "occ_not-a-real-key")
    page.click("button[type=submit]")
    assert page.locator(".alert").inner_text() == "Unknown or revoked API key."
    context.close()
    # The 401 of the failed sign-in is the only console message allowed here.
    assert all("401" in e for e in errors), errors
