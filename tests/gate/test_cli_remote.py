"""`occulta submit`, `wait` and `gate AUDIT_ID` against a real HTTP server on loopback."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from occulta.cli import app
from occulta.errors import OccultaError
from occulta.gate import evaluate, load_policy
from tests.gate.conftest import API_KEY, FakeOccultaServer, Recorded
from tests.gate.reports import make_report

runner = CliRunner()
CARD = "arch: resnet18\ninput_size: [3, 32, 32]\nclass_names: [a, b]\n"
PASSING = "assertions:\n  missingness_bias.verdict: [error, {equals: pass}]\n"
FAILING = "assertions:\n  lime_consistency.verdict: [error, {equals: pass}]\n"


def status(state: str, progress: float = 0.0, **extra: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"id": "aud_1", "status": state, "progress": progress, **extra}


def serve_gate(request: Recorded) -> tuple[int, Any]:
    """Evaluate like the service: the stored report of `aud_1` against the posted policy text."""
    body = request.json()
    if body["audit_id"] != "aud_1":
        return 404, {"error": {"code": "not_found", "message": f"audit {body['audit_id']} not found"}}
    try:
        result = evaluate(make_report(), load_policy(body["policy"]))
    except OccultaError as exc:
        return 422, {"error": {"code": exc.code, "message": exc.message}}
    return 200, result.model_dump(mode="json")


def invoke(server_url: str, *args: str) -> Any:
    return runner.invoke(app, [*args, "--url", server_url, "--api-key", API_KEY])


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(PASSING)
    return path


def test_gate_remote_pass_exits_0_and_sends_bearer_key_and_policy_text(
    server: FakeOccultaServer, policy: Path, tmp_path: Path
) -> None:
    server.on_call("POST", "/v1/gate", serve_gate)
    junit = tmp_path / "gate.xml"
    result = invoke(server.url, "gate", "aud_1", "--policy", str(policy), "--junit", str(junit))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("## Occulta gate ✅ passed")
    sent = server.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.json() == {"audit_id": "aud_1", "policy": PASSING}
    assert ET.parse(junit).getroot().find("testsuite") is not None


def test_gate_remote_fail_exits_1(server: FakeOccultaServer, policy: Path) -> None:
    server.on_call("POST", "/v1/gate", serve_gate)
    policy.write_text(FAILING)
    result = invoke(server.url, "gate", "aud_1", "--policy", str(policy))
    assert result.exit_code == 1
    assert "| ❌ | `lime_consistency.verdict` |" in result.stdout


def test_server_error_500_exits_3_without_retrying(server: FakeOccultaServer, policy: Path) -> None:
    server.on("POST", "/v1/gate", (500, {"error": {"code": "internal", "message": "database is down"}}))
    result = invoke(server.url, "gate", "aud_1", "--policy", str(policy))
    assert result.exit_code == 3
    assert "database is down" in result.stderr and "fails closed" in result.stderr
    assert len(server.requests) == 1


def test_gateway_errors_are_retried_then_the_verdict_stands(server: FakeOccultaServer, policy: Path) -> None:
    verdict = serve_gate  # evaluate on the third attempt
    answers = iter([(503, b"busy"), (502, b"bad gateway")])
    server.on_call("POST", "/v1/gate", lambda req: next(answers, None) or verdict(req))
    result = invoke(server.url, "gate", "aud_1", "--policy", str(policy))
    assert result.exit_code == 0, result.output
    assert len(server.requests) == 3


def test_refused_connection_exits_3(refused_url: str, policy: Path) -> None:
    result = invoke(refused_url, "gate", "aud_1", "--policy", str(policy))
    assert result.exit_code == 3
    assert "cannot reach the Occulta service" in result.stderr


def test_on_error_pass_turns_an_outage_into_a_loud_exit_0(
    refused_url: str, policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = invoke(refused_url, "gate", "aud_1", "--policy", str(policy), "--on-error", "pass")
    assert result.exit_code == 0
    assert "NOT evaluated" in result.stderr and result.stdout == ""
    assert "NOT evaluated" in summary.read_text()


def test_on_error_pass_never_forgives_an_unknown_audit(server: FakeOccultaServer, policy: Path) -> None:
    server.on_call("POST", "/v1/gate", serve_gate)
    result = invoke(server.url, "gate", "aud_404", "--policy", str(policy), "--on-error", "pass")
    assert result.exit_code == 2
    assert "audit aud_404 not found" in result.stderr


def test_wrong_api_key_exits_2_with_the_server_message(server: FakeOccultaServer, policy: Path) -> None:
    args = ["gate", "aud_1", "--policy", str(policy), "--url", server.url, "--api-key", "occ_wrong"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "missing or unknown API key" in result.stderr


def test_misspelt_metric_on_the_server_exits_2_with_the_did_you_mean_first(
    server: FakeOccultaServer, policy: Path
) -> None:
    server.on_call("POST", "/v1/gate", serve_gate)
    policy.write_text(
        "assertions:\n  missingness_bias.metrics.worst.entropy_drp_at_half: [error, {max: 1}]\n"
    )
    result = invoke(server.url, "gate", "aud_1", "--policy", str(policy), "--on-error", "pass")
    assert result.exit_code == 2, result.output
    first = result.stderr.splitlines()[0]
    assert "line 2: unknown metric `entropy_drp_at_half`" in first
    assert "(did you mean entropy_drop_at_half?)" in first


def test_policy_typo_exits_2_before_any_request(server: FakeOccultaServer, policy: Path) -> None:
    policy.write_text("assertions:\n  a.b: [error, {maxx: 1}]\n")
    assert invoke(server.url, "gate", "aud_1", "--policy", str(policy)).exit_code == 2
    assert server.requests == []


def test_url_and_key_come_from_the_environment(
    server: FakeOccultaServer, policy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.on_call("POST", "/v1/gate", serve_gate)
    monkeypatch.setenv("OCCULTA_URL", server.url)
    monkeypatch.setenv("OCCULTA_API_KEY", API_KEY)
    assert runner.invoke(app, ["gate", "aud_1", "--policy", str(policy)]).exit_code == 0


def test_no_server_configured_is_a_usage_error(policy: Path) -> None:
    result = runner.invoke(app, ["gate", "aud_1", "--policy", str(policy)])
    assert result.exit_code == 2
    assert "OCCULTA_URL" in result.stderr


@pytest.mark.parametrize(
    ("final", "code"),
    [
        (status("succeeded", 1.0, verdict="fail"), 0),
        (status("failed", 0.5, error="worker lost"), 3),
        (status("cancelled", 0.5), 3),
        (status("timed_out", 0.9), 3),
    ],
)
def test_wait_exits_0_only_when_the_audit_succeeded(
    server: FakeOccultaServer, final: tuple[int, dict[str, Any]], code: int
) -> None:
    server.on("GET", "/v1/audits/aud_1", status("queued"), status("running", 0.5, message="lime"), final)
    result = invoke(server.url, "wait", "aud_1", "--interval", "0")
    assert result.exit_code == code, result.output
    assert len(server.requests) == 3
    if code == 3:
        assert f"audit aud_1 {final[1]['status']}" in result.stderr


def test_wait_past_its_timeout_exits_3(server: FakeOccultaServer) -> None:
    server.on("GET", "/v1/audits/aud_1", status("running", 0.2))
    result = invoke(server.url, "wait", "aud_1", "--timeout", "0", "--interval", "0.05")
    assert result.exit_code == 3
    assert "still running after 0s" in result.stderr


def test_submit_uploads_model_and_dataset_then_creates_the_audit(
    server: FakeOccultaServer, tmp_path: Path
) -> None:
    card, weights, config = tmp_path / "card.yaml", tmp_path / "model.safetensors", tmp_path / "config.yaml"
    card.write_text(CARD)
    weights.write_bytes(b"\x00weights")
    config.write_text("missingness_bias:\n  fills: [black, mean]\n")
    server.on("POST", "/v1/models", (201, {"id": "mdl_1"}))
    server.on("POST", "/v1/datasets", (201, {"id": "ds_1", "ref": "synthetic:corner"}))
    server.on("POST", "/v1/audits", (202, {"id": "aud_1", "status": "queued"}))
    server.on("GET", "/v1/audits/aud_1", status("succeeded", 1.0, verdict="pass"))
    args = ["submit", "--model", str(card), "--weights", str(weights), "--data", "synthetic:corner"]
    args += ["--audits", "missingness_bias, lime_consistency", "--config", str(config), "--seed", "7"]
    result = invoke(server.url, *args, "--idempotency-key", "run-42", "--wait", "--interval", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout == "aud_1\n"
    upload, dataset, audit = server.requests[:3]
    assert b'name="card"; filename="card.yaml"' in upload.body and b"\x00weights" in upload.body
    assert dataset.json() == {"ref": "synthetic:corner"}
    assert audit.headers["idempotency-key"] == "run-42"
    assert audit.json() == {
        "model_id": "mdl_1",
        "dataset_id": "ds_1",
        "audits": ["missingness_bias", "lime_consistency"],
        "config": {"missingness_bias": {"fills": ["black", "mean"]}},
        "regions": [],
        "seed": 7,
    }


def test_submit_uploads_a_local_folder_as_an_archive(server: FakeOccultaServer, tmp_path: Path) -> None:
    card, folder = tmp_path / "card.yaml", tmp_path / "images"
    card.write_text(CARD + "weights: model.safetensors\n")
    (tmp_path / "model.safetensors").write_bytes(b"w")
    (folder / "cat").mkdir(parents=True)
    (folder / "cat" / "1.png").write_bytes(b"png")
    server.on("POST", "/v1/models", (201, {"id": "mdl_1"}))
    server.on("POST", "/v1/datasets", (201, {"id": "ds_1"}))
    server.on("POST", "/v1/audits", (202, {"id": "aud_9", "status": "queued"}))
    result = invoke(server.url, "submit", "--model", str(card), "--data", str(folder), "--audits", "sis")
    assert result.exit_code == 0, result.output
    assert result.stdout == "aud_9\n"
    dataset = server.requests[1]
    assert b'name="archive"; filename="images.tar.gz"' in dataset.body
    assert server.requests[2].headers["idempotency-key"], "a key is generated when none is given"


def test_submit_rejected_card_exits_2_with_the_server_message(
    server: FakeOccultaServer, tmp_path: Path
) -> None:
    card, weights = tmp_path / "card.yaml", tmp_path / "w.pt"
    card.write_text(CARD)
    weights.write_bytes(b"w")
    reply = {"error": {"code": "invalid_model_card", "message": "model card card.yaml: weights do not fit"}}
    server.on("POST", "/v1/models", (422, reply))
    args = ["submit", "--model", str(card), "--weights", str(weights), "--data", "synthetic:x"]
    result = invoke(server.url, *args, "--audits", "sis")
    assert result.exit_code == 2
    assert "model card card.yaml: weights do not fit" in result.stderr
    assert len(server.requests) == 1


@pytest.mark.parametrize("bad_url", ["127.0.0.1:8765", "htp://x", "http://", "localhost:8000"])
@pytest.mark.parametrize("on_error", ["fail", "pass"])
def test_malformed_url_is_a_usage_error_that_on_error_pass_never_excuses(
    bad_url: str, on_error: str, policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCCULTA_URL", bad_url)
    junit = tmp_path / "gate.xml"
    args = ["gate", "aud_1", "--policy", str(policy), "--on-error", on_error, "--junit", str(junit)]
    result = runner.invoke(app, [*args, "--api-key", API_KEY])
    assert result.exit_code == 2, result.output
    assert "http://127.0.0.1:8000" in result.stderr, "the error says what a valid URL looks like"
    error = ET.parse(junit).getroot().find("testsuite/testcase/error")
    assert error is not None and error.get("type") == "exit 2"


def test_dead_service_exits_3_and_still_writes_junit_and_markdown(
    refused_url: str, policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    junit, summary, step = tmp_path / "gate.xml", tmp_path / "gate.md", tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    args = ["gate", "aud_1", "--policy", str(policy), "--junit", str(junit), "--markdown", str(summary)]
    result = invoke(refused_url, *args)
    assert result.exit_code == 3
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("errors") == "1"
    error = suite.find("testcase/error")
    assert error is not None and "cannot reach the Occulta service" in (error.get("message") or "")
    assert summary.read_text().startswith("## Occulta gate ❌ error")
    assert "cannot reach the Occulta service" in step.read_text()


def test_outage_passed_under_on_error_pass_writes_a_skipped_junit_case(
    refused_url: str, policy: Path, tmp_path: Path
) -> None:
    junit = tmp_path / "gate.xml"
    result = invoke(
        refused_url, "gate", "aud_1", "--policy", str(policy), "--on-error", "pass", "--junit", str(junit)
    )
    assert result.exit_code == 0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("errors"), suite.get("skipped")) == ("0", "1")


def test_policy_error_writes_junit_with_the_reason(
    server: FakeOccultaServer, policy: Path, tmp_path: Path
) -> None:
    policy.write_text("assertions:\n  a.b: [error, {max: 1}\n")
    junit = tmp_path / "gate.xml"
    result = invoke(server.url, "gate", "aud_1", "--policy", str(policy), "--junit", str(junit))
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, (
        "a malformed policy is one line, not parser internals"
    )
    assert "not valid YAML at line 3" in result.stderr
    assert "not valid YAML" in ET.parse(junit).getroot().find("testsuite/testcase/error").get("message")  # type: ignore[union-attr]
    assert server.requests == []
