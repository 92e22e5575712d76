"""The whole battery through the runner and the CLI, on a planted model saved as a card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from auditors.errors import AuditCancelled
from auditors.report import AuditResult, Report
from occulta.cli import app
from occulta.gate import evaluate, load_policy
from occulta.policy_init import render_policy
from occulta.runner import run_battery
from tests.fixtures.models import write_planted_card

ROOT = Path(__file__).resolve().parents[2]
FAST = {
    "lime_consistency": {"n_images": 4, "n_samples": 200},
    "sis": {"n_images": 3},
    "spurious_signal": {"n_images": 64, "n_samples": 4, "steps": 8},
}
BATTERY = ["missingness_bias", "lime_consistency", "sis", "spurious_signal"]


@pytest.fixture(scope="module")
def card(planted_resnet, tmp_path_factory) -> Path:
    return write_planted_card(planted_resnet, tmp_path_factory.mktemp("model"), name="planted")


@pytest.fixture(scope="module")
def data_ref(planted_resnet) -> str:
    return planted_resnet.test.spec.with_(n=400, seed=4242).ref()


@pytest.fixture(scope="module")
def report_dir(card, data_ref, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    seen: list[tuple[float, str]] = []
    done: list[str] = []
    run_battery(
        card_path=card,
        data_ref=data_ref,
        audits=BATTERY,
        audit_configs=FAST,
        out_dir=out,
        samples=96,
        seed=0,
        progress=lambda f, m: seen.append((f, m)),
        on_audit_done=lambda r: done.append(r.name),
    )
    assert done == BATTERY
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    return out


def test_the_battery_writes_a_versioned_report_with_every_audit(report_dir):
    report = Report.model_validate_json((report_dir / "report.json").read_text())
    assert report.schema_version == "2.1"
    assert [a.name for a in report.audits] == BATTERY
    assert report.dataset.n_images == 96 and report.dataset.labelled
    assert report.model.family == "resnet" and report.model.weights_sha256
    assert {"torch", "timm", "occulta"} <= set(report.environment.versions)
    for a in report.audits:
        assert a.verdict in ("pass", "fail", "inconclusive"), (a.name, a.error)
        assert a.summary and a.seconds > 0
        for art in a.artifacts:
            assert (report_dir / art.path).is_file(), art.path
    # The planted corner box is found without a hint and confirmed.
    spurious = report.audit("spurious_signal")
    assert spurious is not None and spurious.verdict == "fail"
    assert any(f.class_name == "circle" and f.box and f.box[0] >= 16 for f in spurious.findings)


def test_the_html_report_embeds_its_plots_and_the_summary_fits_a_pr_comment(report_dir):
    html = (report_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6
    assert "missingness_bias" in html and "spurious_signal" in html and "<script" not in html
    md = (report_dir / "summary.md").read_text()
    assert md.startswith("## ") and "| `sis` (warning: never fails the model) |" in md


def test_the_example_policy_addresses_only_metrics_the_audits_produce(report_dir):
    """examples/policy.yaml must not drift from the real metric paths: a missing one fails closed."""
    report = Report.model_validate_json((report_dir / "report.json").read_text())
    result = evaluate(report, load_policy((ROOT / "examples" / "policy.yaml").read_text()))
    missing = [
        a for a in result.assertions if "missing" in a.message.lower() or "not found" in a.message.lower()
    ]
    assert not missing, [a.message for a in missing]


def test_policy_init_addresses_only_metrics_the_audits_produce(report_dir):
    """`occulta policy init` must not drift from the real metric paths either."""
    report = Report.model_validate_json((report_dir / "report.json").read_text())
    policy = load_policy(render_policy([a.name for a in report.audits]))
    missing = [a.message for a in evaluate(report, policy).assertions if a.outcome == "missing"]
    assert not missing, missing


def _check_logged_to_mlflow(uri: str, report: dict) -> None:  # type: ignore[type-arg]
    """`occulta audit --mlflow` left one finished run with the verdicts, metrics and heat maps."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("occulta").experiment_id])
    assert run.data.tags["occulta.verdict"] == report["verdict"]
    assert run.data.tags["occulta.missingness_bias.verdict"] == report["audits"][0]["verdict"]
    assert run.data.metrics["sample.accuracy"] == pytest.approx(report["sample"]["accuracy"])
    assert "missingness_bias.worst.entropy_drop_at_half" in run.data.metrics
    logged = {f.path for f in client.list_artifacts(run.info.run_id, "occulta")}
    assert {"occulta/report.json", "occulta/report.html", "occulta/summary.md"} <= logged
    maps = [f.path for f in client.list_artifacts(run.info.run_id, "occulta/missingness_bias")]
    assert any(p.endswith(".png") for p in maps), maps


def test_cli_audit_then_local_gate(card, data_ref, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow keeps a new experiment's artifacts under ./mlruns
    cfg = tmp_path / "audits.yaml"
    cfg.write_text(yaml.safe_dump({"missingness_bias": {"strategies": ["black", "layer_mask"]}}))
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "audit",
            "--model",
            str(card),
            "--data",
            data_ref,
            "--out",
            str(tmp_path / "r"),
            "--config",
            str(cfg),
            "--samples",
            "48",
            "--mlflow",
            "--mlflow-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["audits"][0]["config"]["strategies"] == ["black", "layer_mask"]
    assert report["sample"]["n"] == 48 and sum(map(sum, report["sample"]["confusion"])) == 48
    _check_logged_to_mlflow(f"sqlite:///{tmp_path / 'mlflow.db'}", report)
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "assertions:\n  missingness_bias.metrics.strategies.layer_mask.auc: [error, {min: 0.0}]\n"
    )
    ok = runner.invoke(app, ["gate", "--local", str(tmp_path / "r" / "report.json"), "--policy", str(policy)])
    assert ok.exit_code == 0, ok.output
    policy.write_text(
        "assertions:\n  missingness_bias.metrics.strategies.layer_mask.auc: [error, {min: 1.1}]\n"
    )
    bad = runner.invoke(
        app, ["gate", "--local", str(tmp_path / "r" / "report.json"), "--policy", str(policy)]
    )
    assert bad.exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--audits", "missingnes_bias"], "unknown audit 'missingnes_bias'"),
        (["--config", "CFG"], "missingness_bias config: fractionz"),
        (["--data", "synthetic:shapes?classes=9"], "classes must be 2..8"),
    ],
)
def test_cli_usage_errors_are_one_line_and_write_nothing(card, data_ref, tmp_path, args, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("missingness_bias: {fractionz: [0.5]}\n")
    full = ["audit", "--model", str(card), "--data", data_ref, "--out", str(tmp_path / "out")]
    for i in range(0, len(args), 2):
        flag, value = args[i], args[i + 1].replace("CFG", str(cfg))
        if flag in full:
            full[full.index(flag) + 1] = value
        else:
            full += [flag, value]
    import sys

    from occulta.cli import main

    old = sys.argv
    sys.argv = ["occulta", *full]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = old
    assert exit_info.value.code == 2
    assert not (tmp_path / "out" / "report.json").exists()


def test_completed_audits_are_kept_and_not_rerun(card, data_ref, tmp_path):
    saved = AuditResult(name="missingness_bias", verdict="pass", summary="saved earlier", metrics={"x": 1})
    report = run_battery(
        card_path=card,
        data_ref=data_ref,
        audits=["missingness_bias"],
        out_dir=tmp_path,
        samples=8,
        completed={"missingness_bias": saved},
    )
    assert report.audits[0].summary == "saved earlier" and report.audits[0].role == "explanation"
    # Missingness bias is about explanations: it passes as such, and says nothing about the model.
    assert report.explanation_verdict == "pass" and report.verdict == "inconclusive"


def test_cancellation_stops_the_battery(card, data_ref, tmp_path):
    with pytest.raises(AuditCancelled):
        run_battery(
            card_path=card,
            data_ref=data_ref,
            audits=["missingness_bias"],
            out_dir=tmp_path,
            samples=8,
            cancelled=lambda: True,
        )
    assert not (tmp_path / "report.json").exists()


def test_an_audit_that_cannot_run_is_an_error_verdict_and_the_others_still_run(card, data_ref, tmp_path):
    report = run_battery(
        card_path=card,
        data_ref=data_ref,
        audits=["missingness_bias", "sis"],
        out_dir=tmp_path,
        samples=8,
        audit_configs={"missingness_bias": {"patch_size": 5}, "sis": {"n_images": 2}},
    )
    mb, sis = report.audits
    assert mb.verdict == "error" and "patch_size 5 does not tile" in mb.summary
    assert sis.verdict != "error"
    # The error is in an explanation audit: it is the explanation verdict, never a silent pass; the
    # model verdict rests on SIS alone, which two images cannot decide.
    assert report.explanation_verdict == "error" and report.caveats[0].audit == "missingness_bias"
    assert sis.verdict == "inconclusive" and report.verdict == "inconclusive"


def test_a_shard_that_loads_only_its_images_computes_the_same_partial(card, data_ref, tmp_path):
    from auditors.audits.missingness_bias.audit import MissingnessBias
    from auditors.audits.missingness_bias.config import MissingnessBiasConfig
    from occulta.runner import prepare_run

    cfg = MissingnessBiasConfig(strategies=["black", "noise", "layer_mask"], fractions=[0.0, 0.5])
    full = prepare_run(card_path=card, data_ref=data_ref, out_dir=tmp_path / "a", samples=40, seed=3)
    part = prepare_run(
        card_path=card, data_ref=data_ref, out_dir=tmp_path / "b", samples=40, seed=3, indices=range(13, 29)
    )
    assert (part.ctx.n_images, part.ctx.image_offset, part.n_sampled, full.n_sampled) == (16, 13, 40, 40)
    a = MissingnessBias().run_shard(full.ctx, cfg, range(13, 29))
    b = MissingnessBias().run_shard(part.ctx, cfg, range(13, 29))
    a.pop("seconds")
    b.pop("seconds")
    assert a == b
    with pytest.raises(ValueError, match=r"not a contiguous range inside 13\.\.29"):
        MissingnessBias().run_shard(part.ctx, cfg, range(0, 10))
