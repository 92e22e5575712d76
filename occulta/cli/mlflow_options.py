"""`--mlflow` for `occulta audit` and `occulta submit`: the options and the one call both make."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auditors.report import Report

MlflowFlag = Annotated[
    bool,
    typer.Option(
        "--mlflow",
        help="Log the audit to MLflow (verdicts as tags, metrics, report and heat maps as artifacts).",
    ),
]
MlflowUri = Annotated[
    str | None,
    typer.Option(
        "--mlflow-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="Tracking URI, e.g. sqlite:///mlflow.db or http://mlflow:5000.",
        show_default=False,
    ),
]
MlflowExperiment = Annotated[
    str | None,
    typer.Option(
        "--mlflow-experiment",
        envvar="MLFLOW_EXPERIMENT_NAME",
        help="Experiment for a new run (default: occulta).",
        show_default=False,
    ),
]
MlflowRun = Annotated[
    str | None,
    typer.Option(
        "--mlflow-run-id",
        envvar="MLFLOW_RUN_ID",
        help="Log into this existing run (e.g. the one that trained the model) instead of a new one.",
        show_default=False,
    ),
]


def log_to_mlflow(
    report: Report,
    report_dir: Path,
    uri: str | None,
    experiment: str | None,
    run_id: str | None,
    audit_id: str | None = None,
) -> str:
    """Log and say where (stderr, so stdout stays the audit id for `$(...)`)."""
    from occulta.mlflow_log import MlflowTarget, log_report

    target = MlflowTarget(tracking_uri=uri, experiment=experiment, run_id=run_id)
    logged = log_report(report, report_dir, target, audit_id=audit_id)
    typer.echo(f"logged to MLflow run {logged}" + (f" at {uri}" if uri else ""), err=True)
    return logged
