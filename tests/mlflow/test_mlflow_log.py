"""An audit logged to a real local MLflow tracking store (SQLite, no server) shows its verdicts,
metrics and artifacts there; `occulta submit --mlflow` fetches the finished report and logs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from auditors.report import Artifact
from occulta.cli import app
from occulta.mlflow_log import MlflowTarget, log_report
from tests.gate.conftest import API_KEY, FakeOccultaServer
from tests.gate.reports import make_report

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def report_folder(tmp_path: Path) -> tuple[Path, object]:
    report = make_report()
    report.audits[0].artifacts.append(Artifact(name="saliency", path="missingness_bias/heat.png"))
    folder = tmp_path / "report"
    (folder / "missingness_bias").mkdir(parents=True)
    (folder / "missingness_bias" / "heat.png").write_bytes(PNG)
    (folder / "report.json").write_text(report.model_dump_json(by_alias=True))
    (folder / "report.html").write_text("<html>report</html>")
    (folder / "summary.md").write_text("## summary\n")
    return folder, report


def test_logged_audit_has_verdict_tags_metrics_and_artifacts(tmp_path: Path, store: str) -> None:
    folder, report = report_folder(tmp_path)
    run_id = log_report(report, folder, MlflowTarget(tracking_uri=store, experiment="audits"))  # type: ignore[arg-type]
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "audits"
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["occulta.verdict"] == "fail"
    assert tags["occulta.missingness_bias.verdict"] == "pass"
    assert tags["occulta.lime_consistency.verdict"] == "fail"
    assert metrics["missingness_bias.worst.entropy_drop_at_half"] == pytest.approx(0.4)
    assert metrics["lime_consistency.removal.own_at_25"] == pytest.approx(0.7)
    assert metrics["occulta.verdict_score"] == 3.0 and metrics["missingness_bias.verdict_score"] == 0.0
    top = {f.path for f in client.list_artifacts(run_id, "occulta")}
    assert {"occulta/report.json", "occulta/report.html", "occulta/summary.md"} <= top
    maps = [f.path for f in client.list_artifacts(run_id, "occulta/missingness_bias")]
    assert maps == ["occulta/missingness_bias/heat.png"]


def test_logging_into_an_existing_run_keeps_it_open_and_its_own_metrics(tmp_path: Path, store: str) -> None:
    folder, report = report_folder(tmp_path)
    client = MlflowClient(tracking_uri=store)
    training = client.create_run(client.create_experiment("training"))
    client.log_metric(training.info.run_id, "val_accuracy", 0.93)
    run_id = log_report(report, folder, MlflowTarget(tracking_uri=store, run_id=training.info.run_id))  # type: ignore[arg-type]
    assert run_id == training.info.run_id
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING", "the user's run is theirs to end"
    assert (
        run.data.metrics["val_accuracy"] == pytest.approx(0.93) and run.data.tags["occulta.verdict"] == "fail"
    )


def test_submit_mlflow_logs_the_finished_report_with_its_artifacts(
    server: FakeOccultaServer,
    tmp_path: Path,
    store: str,
) -> None:
    report = make_report()
    report.audits[0].artifacts.append(Artifact(name="saliency", path="missingness_bias/heat.png"))
    card = tmp_path / "card.yaml"
    card.write_text(
        "arch: resnet18\ninput_size: [3, 32, 32]\nclass_names: [a, b]\nweights: model.safetensors\n"
    )
    (tmp_path / "model.safetensors").write_bytes(b"w")
    server.on("POST", "/v1/models", (201, {"id": "mdl_1"}))
    server.on("POST", "/v1/datasets", (201, {"id": "ds_1"}))
    server.on("POST", "/v1/audits", (202, {"id": "aud_1", "status": "queued"}))
    server.on("GET", "/v1/audits/aud_1", (200, {"id": "aud_1", "status": "succeeded", "progress": 1.0}))
    server.on("GET", "/v1/audits/aud_1/report", (200, report.model_dump(mode="json", by_alias=True)))
    server.on("GET", "/v1/audits/aud_1/report.html", (200, b"<html>r</html>"))
    server.on("GET", "/v1/audits/aud_1/report.md", (200, b"## r\n"))
    server.on("GET", "/v1/audits/aud_1/artifacts/missingness_bias/heat.png", (200, PNG))
    args = ["submit", "--model", str(card), "--data", "synthetic:x", "--audits", "missingness_bias", "--wait"]
    args += ["--interval", "0", "--mlflow", "--mlflow-uri", store, "--url", server.url, "--api-key", API_KEY]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == "aud_1\n", "stdout stays the audit id"
    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("occulta").experiment_id])
    assert run.data.tags["occulta.audit_id"] == "aud_1" and run.data.tags["occulta.verdict"] == "fail"
    maps = [f.path for f in client.list_artifacts(run.info.run_id, "occulta/missingness_bias")]
    assert maps == ["occulta/missingness_bias/heat.png"]


def test_submit_mlflow_without_wait_is_a_usage_error(tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text("arch: resnet18\n")
    args = ["submit", "--model", str(card), "--data", "synthetic:x", "--audits", "sis", "--mlflow"]
    result = CliRunner().invoke(app, [*args, "--url", "http://127.0.0.1:1", "--api-key", API_KEY])
    assert result.exit_code == 2 and "needs --wait" in result.stderr
