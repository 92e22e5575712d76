"""The dashboard submits and cancels through the same service calls as /v1: a launch is one audit
per form (its idempotency key), queued with its message sent, and a cancel from the page cancels it."""

from __future__ import annotations

import re

import pytest
import redis
from sqlalchemy import func, select

from occulta.db import AuditJob, OutboxMessage
from tests.service.rows import add_dataset, add_model
from tests.service.web import csrf_of, signed_in

pytestmark = pytest.mark.service


@pytest.mark.parametrize("arch", ["convnext_atto", "efficientnet_b0"])
def test_a_convnext_or_efficientnet_model_gets_layer_mask_from_the_form(
    app, alice, sessions, arch: str
) -> None:  # type: ignore[no-untyped-def]
    """The form's native options come from the server's family table (issue: it offered layer_mask to
    ResNets only and refused it for ConvNeXt and EfficientNet, which the engine masks natively)."""
    web = signed_in(app, alice)
    model_id = add_model(sessions, alice.tenant_id, arch=arch)
    page = web.get("/dashboard/launch")
    assert re.search(rf'<option value="{model_id}" data-native="layer_mask"', page.text), page.text[:2000]
    assert web.get("/dashboard/launch/native", params={"arch": arch}).json()["native"] == "layer_mask"
    form = {
        "csrf": csrf_of(page.text),
        "model_id": model_id,
        "dataset_id": add_dataset(sessions, alice.tenant_id),
        "audits": "missingness_bias",
        "strategies": ["black", "layer_mask"],
        "action": "estimate",
    }
    assert web.post("/dashboard/launch", data=form, follow_redirects=False).status_code == 200
    refused = web.post(
        "/dashboard/launch", data=form | {"strategies": ["token_drop"]}, follow_redirects=False
    )
    assert refused.status_code == 422 and f"token_drop does not apply to {arch}" in refused.text


def test_a_launch_submits_one_audit_per_form_and_the_page_cancels_it(
    app, alice, sessions, prod_settings
) -> None:  # type: ignore[no-untyped-def]
    queue = redis.Redis.from_url(prod_settings.broker_url)
    web = signed_in(app, alice)
    page = web.get("/dashboard/launch")
    form = {
        "csrf": csrf_of(page.text),
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
        f"/dashboard/audits/{audit_id}/cancel", data={"csrf": csrf_of(pending.text)}, follow_redirects=False
    )
    assert r.status_code == 303
    with sessions() as s:
        job = s.get(AuditJob, audit_id)
        assert job is not None and job.status == "cancelled"


def test_a_bad_card_uploaded_from_the_form_is_named_as_the_user_named_it(app, alice, sessions) -> None:  # type: ignore[no-untyped-def]
    web = signed_in(app, alice)
    page = web.get("/dashboard/launch")
    form = {
        "csrf": csrf_of(page.text),
        "dataset_id": add_dataset(sessions, alice.tenant_id),
        "audits": "missingness_bias",
    }
    files = {
        "card": ("my-resnet.yaml", b"arch: [not, a, name\n", "application/yaml"),
        "weights": ("my-resnet.safetensors", b"\0" * 64, "application/octet-stream"),
    }
    refused = web.post("/dashboard/launch", data=form, files=files, follow_redirects=False)
    assert refused.status_code == 422 and "my-resnet.yaml" in refused.text, refused.text[-2000:]
