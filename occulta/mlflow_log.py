"""Log an audit to MLflow, where users keep their training runs: verdicts as tags, scalar metrics as
MLflow metrics, the report files and heat maps as artifacts.

MLflow is an optional extra (`pip install 'occulta[mlflow]'`, mlflow-skinny suffices) imported only
here and only when asked, so the CLI stays light. The tracking store is whatever MLflow is pointed at:
`--mlflow-uri` / `MLFLOW_TRACKING_URI` (a server, or a local `sqlite:///mlflow.db` with no server).
Logging into an existing run (`MLFLOW_RUN_ID`, e.g. the run that trained the model) puts the audit
beside the model's own metrics; otherwise a new run is created in the experiment.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditors.report import Report, Verdict
from occulta.errors import OccultaError

DEFAULT_EXPERIMENT = "occulta"
# 0 best .. 3 worst, the same order as the overall verdict, so a chart of it trends the right way
VERDICT_SCORE: dict[Verdict, int] = {"pass": 0, "inconclusive": 1, "error": 2, "fail": 3}
_BATCH = 500  # under MLflow's 1000 metrics per log_batch
_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
_MAX_DEPTH = 4


@dataclass(frozen=True)
class MlflowTarget:
    """Where to log: tracking URI (None: MLflow's own default/env), experiment, or an existing run."""

    tracking_uri: str | None = None
    experiment: str | None = None
    run_id: str | None = None
    run_name: str | None = None


def metric_items(report: Report) -> dict[str, float]:
    """Every finite scalar metric as `audit.path` (the gate's paths without `.metrics`), plus each
    verdict as a score and the sample's accuracy; lists (curves) stay in the report artifact."""
    out: dict[str, float] = {"occulta.verdict_score": float(VERDICT_SCORE[report.verdict])}
    for audit in report.audits:
        out[f"{audit.name}.verdict_score"] = float(VERDICT_SCORE[audit.verdict])
        out[f"{audit.name}.seconds"] = float(audit.seconds)
        _flatten(audit.metrics, audit.name, out, _MAX_DEPTH)
    sample = getattr(report, "sample", None)
    if sample is not None and getattr(sample, "accuracy", None) is not None:
        out["sample.accuracy"] = float(sample.accuracy)
        out["sample.n"] = float(sample.n)
    return out


def _flatten(node: dict[str, Any], prefix: str, out: dict[str, float], depth: int) -> None:
    for key, value in node.items():
        path = _KEY.sub("_", f"{prefix}.{key}")
        if isinstance(value, dict) and depth > 1:
            _flatten(value, path, out, depth - 1)
        elif isinstance(value, int | float) and math.isfinite(value):  # bools count as 0/1
            out[path] = float(value)


def tag_items(report: Report, audit_id: str | None = None) -> dict[str, str]:
    tags = {
        "occulta.verdict": report.verdict,
        "occulta.model.arch": report.model.arch,
        "occulta.dataset.ref": report.dataset.ref[:5000],
        "occulta.seed": str(report.seed),
        "occulta.schema_version": report.schema_version,
        "occulta.audits": ",".join(a.name for a in report.audits),
    }
    if report.model.weights_sha256:
        tags["occulta.model.weights_sha256"] = report.model.weights_sha256
    for audit in report.audits:
        tags[f"occulta.{audit.name}.verdict"] = audit.verdict
        tags[f"occulta.{audit.name}.summary"] = audit.summary[:5000]
    if audit_id:
        tags["occulta.audit_id"] = audit_id
    return tags


def _client(tracking_uri: str | None) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise OccultaError(
            "--mlflow needs MLflow: pip install 'occulta[mlflow]' (mlflow-skinny is enough)", code="usage"
        ) from None
    return MlflowClient(tracking_uri=tracking_uri)


def log_report(report: Report, report_dir: Path, target: MlflowTarget, *, audit_id: str | None = None) -> str:
    """Log the report (and every file under `report_dir`) to MLflow; returns the run id."""
    from mlflow.entities import Metric, RunTag

    client = _client(target.tracking_uri)
    try:
        if target.run_id:
            run_id = client.get_run(target.run_id).info.run_id
        else:
            name = target.experiment or DEFAULT_EXPERIMENT
            found = client.get_experiment_by_name(name)
            experiment_id = found.experiment_id if found else client.create_experiment(name)
            run_name = target.run_name or f"occulta {report.model.arch} {audit_id or ''}".strip()
            run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
        stamp = int(report.created_at.timestamp() * 1000)
        metrics = [Metric(k, v, stamp, 0) for k, v in metric_items(report).items()]
        tags = [RunTag(k, v) for k, v in tag_items(report, audit_id).items()]
        client.log_batch(run_id, tags=tags)
        for start in range(0, len(metrics), _BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + _BATCH])
        client.log_artifacts(run_id, str(report_dir), artifact_path="occulta")
        if not target.run_id:  # a run we created ends with the audit; a user's run stays theirs
            client.set_terminated(run_id, status="FINISHED")
    except OccultaError:
        raise
    except Exception as exc:  # MLflow raises MlflowException, OSError or HTTP errors by store type
        raise OccultaError(f"logging to MLflow failed: {exc}", code="mlflow_error") from exc
    return str(run_id)
