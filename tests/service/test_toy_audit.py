"""A fifth audit is one package plus one registration: the toy audit (tests/plugins/toy), registered
through `OCCULTA_EXTRA_AUDITS` like any plug-in, reaches the CLI, the report, the gate, the API's
request-time validation and the dashboard's launch form without an edit to any project file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from auditors.registry import audit_info
from auditors.report import Report
from occulta.cards import ModelCard, write_card
from occulta.cli import app
from occulta.db import ModelRecord, new_id
from occulta.gate import evaluate, load_policy
from tests.service.rows import add_dataset

pytestmark = pytest.mark.service

DATA = "synthetic:shapes?classes=4&size=32&n=24&seed=5"


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import timm

    import auditors.zoo.architectures  # noqa: F401  (registers the tiny architectures with timm)

    torch.manual_seed(0)
    model = timm.create_model("occulta_resnet_tiny", num_classes=4)
    d = tmp_path_factory.mktemp("toy-model")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "m.safetensors"))
    write_card(
        ModelCard(
            arch="occulta_resnet_tiny",
            arch_kwargs={"num_classes": 4},
            weights="m.safetensors",
            input_size=(3, 32, 32),
            class_names=["circle", "square", "triangle", "cross"],
        ),
        d / "card.json",
    )
    return d / "card.json"


def test_toy_audit_runs_from_the_cli_into_the_report_and_the_gate(card: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["audit", "-m", str(card), "-d", DATA, "-o", str(out), "--audits", "toy", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    report = Report.model_validate(json.loads((out / "report.json").read_text()))
    [toy] = report.audits
    assert toy.name == "toy" and toy.verdict in ("pass", "fail")
    assert toy.metrics["n_images"] == 24 and 0.25 <= toy.metrics["majority_share"] <= 1
    assert toy.config["seed"] == 0  # the base class records the resolved seed
    # The gate reads the toy's own policy line, written from its metadata.
    [line] = audit_info("toy").policy
    policy = load_policy(f"version: 1\nassertions:\n  toy.{line.metric}: [error, {{max: 1.0}}]\n")
    assert evaluate(report, policy).passed
    strict = load_policy(f"version: 1\nassertions:\n  toy.{line.metric}: [error, {{max: 0.01}}]\n")
    assert not evaluate(report, strict).passed


def _model_row(sessions, tenant_id: str) -> str:  # type: ignore[no-untyped-def]
    row = ModelRecord(
        id=new_id("mdl"),
        tenant_id=tenant_id,
        name="m",
        arch="occulta_resnet_tiny",
        format="safetensors",
        sha256="0" * 64,
        size_bytes=1,
        storage_key=f"tenants/{tenant_id}/models/x/",
        num_classes=4,
        class_names=["a", "b", "c", "d"],
        card={"arch": "occulta_resnet_tiny", "input_size": [3, 32, 32]},
    )
    with sessions() as s:
        s.add(row)
        s.commit()
    return row.id


def test_the_api_validates_the_toy_config_and_regions_at_request_time(client, alice, sessions) -> None:  # type: ignore[no-untyped-def]
    body = {
        "model_id": _model_row(sessions, alice.tenant_id),
        "dataset_id": add_dataset(sessions, alice.tenant_id),
        "audits": ["toy"],
        "config": {"toy": {"n_images": 8}},
    }
    assert client.post("/v1/audits", json=body, headers=alice.headers).status_code == 202
    bad = client.post("/v1/audits", json=body | {"config": {"toy": {"n_images": 0}}}, headers=alice.headers)
    assert bad.status_code == 422 and "toy config: n_images" in bad.json()["error"]["message"]
    outside = body | {"regions": [{"name": "corner", "box": [28, 28, 8, 8]}]}
    r = client.post("/v1/audits", json=outside, headers=alice.headers)
    assert r.status_code == 422 and "does not fit the 32x32 model input" in r.json()["error"]["message"]
    not_png = body | {"regions": [{"name": "mark", "box": [0, 0, 4, 4], "artifact": "aGVsbG8="}]}
    assert client.post("/v1/audits", json=not_png, headers=alice.headers).status_code == 422


def test_the_dashboard_launch_form_offers_the_toy_audit_and_its_setting(app, alice) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    browser = TestClient(app, base_url="https://testserver")  # production cookies are Secure
    token = re.search(r'name="csrf" value="([^"]+)"', browser.get("/dashboard/login").text)
    assert token is not None
    signed_in = browser.post(
        "/dashboard/login", data={"api_key": alice.key, "csrf": token.group(1)}, follow_redirects=False
    )
    assert signed_in.status_code == 303
    form = browser.get("/dashboard/launch")
    assert form.status_code == 200
    assert 'value="toy"' in form.text and "Toy majority share" in form.text
    assert 'name="toy.n_images"' in form.text and "Toy: images" in form.text
