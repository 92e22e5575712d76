"""End to end with real processes: an API server (uvicorn) and a Celery worker, on the production-like
stack (PostgreSQL, Redis, S3) and on the embedded one (SQLite, SQLAlchemy broker, files). A tiny
trained model is uploaded over HTTP, audited, reported on and gated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from occulta.client import OccultaClient
from tests.fixtures.service import embedded_env, prod_env, run_stack

pytestmark = [pytest.mark.e2e, pytest.mark.service, pytest.mark.timeout(300)]

CONFIG = {"missingness_bias": {"strategies": ["black"], "fractions": [0.0, 0.5]}}
PASSING = "assertions:\n  missingness_bias.verdict: [error, {in: [pass, fail, inconclusive]}]\n"
FAILING = "assertions:\n  missingness_bias.verdict: [error, {equals: no-such-verdict}]\n"


def _audit_round_trip(stack, tiny_model, log_dir: Path) -> None:  # type: ignore[no-untyped-def]
    with OccultaClient(stack.url, stack.key, retries=0) as client:
        model = client.upload_model(tiny_model.card, tiny_model.weights)
        dataset = client.register_dataset(tiny_model.data_ref.replace("n=256", "n=32"))
        audit = client.create_audit(
            model_id=model.id,
            dataset_id=dataset.id,
            audits=["missingness_bias"],
            config=CONFIG,
            samples=16,
            seed=0,
            idempotency_key="e2e-1",
        )
        assert audit.status == "queued"
        try:
            final = client.wait(audit.id, timeout=90, interval=0.5)
        except Exception:
            for name in ("worker.log", "api.log"):
                print((log_dir / name).read_text()[-5000:])
            raise
        assert final.status == "succeeded", final
        assert final.verdict in ("pass", "fail", "inconclusive")
        report = client.get_report(audit.id)
        assert report.audit("missingness_bias") is not None
        assert report.model.weights_sha256 == model.model_extra["sha256"]  # type: ignore[index]
        assert client.gate(audit.id, PASSING).passed is True
        assert client.gate(audit.id, FAILING).passed is False

    http = httpx.Client(base_url=stack.url, headers=stack.headers, timeout=30)
    status = http.get(f"/v1/audits/{audit.id}").json()
    assert status["progress"] == 1.0 and status["attempts"] == 1 and status["finished_at"]
    assert [r["name"] for r in status["results"]] == ["missingness_bias"]
    assert "<html" in http.get(f"/v1/audits/{audit.id}/report.html").text.lower()
    assert http.get(f"/v1/audits/{audit.id}/report.md").status_code == 200
    artifacts = [a.path for a in report.audits[0].artifacts]
    if artifacts:
        art = http.get(f"/v1/audits/{audit.id}/artifacts/{artifacts[0]}", follow_redirects=True)
        assert art.status_code == 200 and len(art.content) > 0
    # A second audit cancelled while queued or running ends cancelled, never succeeded.
    second = http.post(
        "/v1/audits",
        json={
            "model_id": model.id,
            "dataset_id": dataset.id,
            "audits": ["missingness_bias"],
            "config": CONFIG,
            "samples": 16,
        },
    )
    assert http.post(f"/v1/audits/{second.json()['id']}/cancel").status_code in (202, 409)
    http.close()


def _occulta(stack, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "OCCULTA_URL": url or stack.url,
        "OCCULTA_API_KEY": stack.key,
        "OCCULTA_RETRIES": "0",
    }
    return subprocess.run(
        [sys.executable, "-m", "occulta", *args], capture_output=True, text=True, env=env, timeout=180
    )


def _cli_round_trip(stack, tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """What a CI job does: submit with the CLI, wait, gate with a passing and a failing policy."""
    config = tmp_path / "audits.yaml"
    config.write_text("missingness_bias: {strategies: [black], fractions: [0.0, 0.5]}\n")
    data = tiny_model.data_ref.replace("n=256", "n=24")
    sub = _occulta(
        stack,
        "submit",
        "--model",
        str(tiny_model.card),
        "--weights",
        str(tiny_model.weights),
        "--data",
        data,
        "--audits",
        "missingness_bias",
        "--config",
        str(config),
        "--wait",
    )
    assert sub.returncode == 0, sub.stderr
    audit_id = sub.stdout.strip().splitlines()[-1]
    assert audit_id.startswith("aud_")
    assert _occulta(stack, "wait", audit_id).returncode == 0
    passing, failing = tmp_path / "pass.yaml", tmp_path / "fail.yaml"
    passing.write_text(PASSING)
    failing.write_text(FAILING)
    ok = _occulta(stack, "gate", audit_id, "--policy", str(passing), "--junit", str(tmp_path / "gate.xml"))
    assert ok.returncode == 0, ok.stderr
    assert "Occulta gate" in ok.stdout and (tmp_path / "gate.xml").read_text().startswith("<?xml")
    assert _occulta(stack, "gate", audit_id, "--policy", str(failing)).returncode == 1
    dead = "http://127.0.0.1:9"  # nothing listens: a service error fails closed
    assert _occulta(stack, "gate", audit_id, "--policy", str(passing), url=dead).returncode == 3
    forgiven = _occulta(stack, "gate", audit_id, "--policy", str(passing), "--on-error", "pass", url=dead)
    assert forgiven.returncode == 0


def test_audit_round_trip_on_postgres_redis_and_s3(
    pg_migrated, redis_url, s3_endpoint, tiny_model, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    env = prod_env(
        pg_url=pg_migrated, redis_url=redis_url, s3_endpoint=s3_endpoint, data_dir=tmp_path / "data"
    )
    with run_stack(env, log_dir=tmp_path / "logs") as stack:
        _audit_round_trip(stack, tiny_model, tmp_path / "logs")
        _cli_round_trip(stack, tiny_model, tmp_path)


def test_audit_round_trip_in_embedded_mode(tiny_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with run_stack(embedded_env(tmp_path / "data"), log_dir=tmp_path / "logs") as stack:
        _audit_round_trip(stack, tiny_model, tmp_path / "logs")
        _cli_round_trip(stack, tiny_model, tmp_path)
