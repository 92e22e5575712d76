"""CI commands: `occulta wait` and `occulta gate` (and what `occulta submit`, in `submit.py`, shares).

Exit codes are the contract with CI runners: 0 pass, 1 the gate failed, 2 something the user must fix
(flags, policy, credentials, ids: any 4xx), 3 the service or the audit run could not give a verdict.
Without a verdict the gate fails closed; `--on-error pass` turns only outages (exit 3) into a loud pass.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from auditors.report import Report
from occulta.cli.app import app, fail
from occulta.cli.mlflow_options import log_to_mlflow
from occulta.client import AuditStatus, OccultaClient
from occulta.errors import OccultaError, PolicyError, ServiceError
from occulta.gate import (
    GateResult,
    Policy,
    error_junit,
    error_markdown,
    evaluate,
    load_policy,
    to_junit,
)

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_SERVICE = 0, 1, 2, 3

UrlOption = Annotated[
    str | None, typer.Option("--url", envvar="OCCULTA_URL", help="Server, e.g. https://occulta.example.com")
]
KeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="OCCULTA_API_KEY", help="API key occ_...", show_default=False),
]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=0, help="Seconds to wait for the audit.")]
IntervalOption = Annotated[float, typer.Option("--interval", min=0, help="Seconds between status polls.")]


class OnError(StrEnum):
    fail = "fail"
    pass_ = "pass"


def _stderr() -> Console:
    return Console(stderr=True)


def _remote_failure(exc: OccultaError) -> NoReturn:
    """A ServiceError means no verdict (3); any other server answer is a request the user must fix (2)."""
    if isinstance(exc, ServiceError):
        fail(f"service error: {exc}", EXIT_SERVICE)
    fail(f"{exc.code}: {exc}", EXIT_USAGE)


def _client(url: str | None, api_key: str | None) -> OccultaClient:
    try:
        return OccultaClient(url, api_key)
    except OccultaError as exc:
        fail(str(exc), EXIT_USAGE)


def _read_mapping(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        fail(f"cannot read {what} {path}: {exc}", EXIT_USAGE)
    if not isinstance(data, dict):
        fail(f"{what} {path} must be a YAML/JSON mapping", EXIT_USAGE)
    return data


def _wait(client: OccultaClient, audit_id: str, timeout: float, interval: float) -> int:
    """Show progress until the audit ends; only `succeeded` is exit 0, so a broken run never gates green."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_stderr(), transient=False) as bar:
        task = bar.add_task(f"audit {audit_id}: queued", total=1.0)

        def show(status: AuditStatus) -> None:
            note = f" ({status.message})" if status.message else ""
            description = f"audit {audit_id}: {status.status}{note}"
            bar.update(task, completed=status.progress, description=description)

        try:
            status = client.wait(audit_id, timeout=timeout, interval=interval, on_progress=show)
        except OccultaError as exc:
            _remote_failure(exc)
    if status.status != "succeeded":
        why = status.error or status.message or "no details"
        fail(f"audit {audit_id} {status.status}: {why}", EXIT_SERVICE)
    typer.echo(f"audit {audit_id} succeeded; report verdict: {status.verdict}", err=True)
    return EXIT_PASS


def _log_remote(
    client: OccultaClient,
    audit_id: str,
    into: Path,
    uri: str | None,
    experiment: str | None,
    run_id: str | None,
) -> None:
    """Fetch the finished report, its renderings and artifacts, and log them like a local audit's."""
    folder = into / audit_id
    try:
        report = client.get_report(audit_id)
        files = {"report.html": "report.html", "summary.md": "report.md"}
        files |= {art.path: f"artifacts/{art.path}" for a in report.audits for art in a.artifacts}
        for local, remote in files.items():
            target = folder / local
            if not target.resolve().is_relative_to(folder.resolve()):
                raise ServiceError(f"the report names an artifact outside its folder: {local!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(client.download(audit_id, remote))
        (folder / "report.json").write_text(report.model_dump_json(by_alias=True, indent=2), encoding="utf-8")
        log_to_mlflow(report, folder, uri, experiment, run_id, audit_id=audit_id)
    except ServiceError as exc:
        fail(f"service error while fetching the report for MLflow: {exc}", EXIT_SERVICE)
    except OccultaError as exc:
        fail(str(exc), EXIT_USAGE)


@app.command("wait")
def wait_command(
    audit_id: Annotated[str, typer.Argument(help="Audit id printed by `occulta submit`.")],
    timeout: TimeoutOption = 3600.0,
    interval: IntervalOption = 2.0,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Wait for an audit with a progress bar; exit 0 when it succeeded, 3 otherwise."""
    with _client(url, api_key) as client:
        raise typer.Exit(_wait(client, audit_id, timeout, interval))


class _NoVerdictError(Exception):
    """The gate could not be evaluated: exit 2 (the user's to fix) or 3 (the service gave no verdict)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


def _append_step_summary(markdown: str) -> None:
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(markdown)


def _write_outputs(markdown_text: str, junit_text: str, markdown: Path | None, junit: Path | None) -> None:
    """Every exit path writes the same files, so a CI reporter step always has something to show."""
    _append_step_summary(markdown_text)
    try:
        if markdown is not None:
            markdown.write_text(markdown_text, encoding="utf-8")
        if junit is not None:
            junit.write_text(junit_text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write the gate's outputs: {exc}", EXIT_USAGE)


def _read_report(report_path: Path) -> Report:
    try:
        raw = report_path.read_bytes()
    except OSError as exc:
        raise _NoVerdictError(
            f"cannot read report {report_path}: {exc.strerror or exc}", EXIT_USAGE
        ) from None
    hint = "give the report.json an audit wrote (`occulta audit --out DIR` writes DIR/report.json)"
    try:
        data = json.loads(raw)
    except ValueError:
        raise _NoVerdictError(
            f"{report_path} is not JSON, so not an Occulta report; {hint}", EXIT_USAGE
        ) from None
    if not isinstance(data, dict) or not {"model", "dataset", "audits"} <= set(data):
        raise _NoVerdictError(f"{report_path} is not an Occulta report; {hint}", EXIT_USAGE)
    try:
        return Report.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the document"
        message = f"{report_path} is not a valid Occulta report: {where}: {first['msg']}"
        raise _NoVerdictError(message, EXIT_USAGE) from None


def _read_policy(policy: Path) -> tuple[str, Policy]:
    try:
        text = policy.read_text(encoding="utf-8")
    except OSError as exc:
        raise _NoVerdictError(f"cannot read policy {policy}: {exc.strerror or exc}", EXIT_USAGE) from None
    try:
        return text, load_policy(text)  # a typo is exit 2 before any network call
    except PolicyError as exc:
        raise _NoVerdictError(f"{policy}: {exc}", EXIT_USAGE) from None


def _gate_result(
    policy: Path, audit_id: str | None, local: Path | None, url: str | None, api_key: str | None
) -> GateResult:
    if (audit_id is None) == (local is None):
        raise _NoVerdictError("give exactly one of AUDIT_ID or --local REPORT.json", EXIT_USAGE)
    policy_text, parsed = _read_policy(policy)
    if local is not None:
        report = _read_report(local)
        try:
            return evaluate(report, parsed)
        except PolicyError as exc:  # a name the report lacks: the policy's typo, not a failing model
            raise _NoVerdictError(f"{policy}: {exc}", EXIT_USAGE) from None
    assert audit_id is not None
    try:
        client = OccultaClient(url, api_key)
    except OccultaError as exc:
        raise _NoVerdictError(str(exc), EXIT_USAGE) from None
    with client:
        try:
            return client.gate(audit_id, policy_text)
        except ServiceError as exc:
            raise _NoVerdictError(f"service error: {exc}", EXIT_SERVICE) from None
        except OccultaError as exc:
            raise _NoVerdictError(f"{exc.code}: {exc}", EXIT_USAGE) from None


@app.command("gate")
def gate_command(
    policy: Annotated[Path, typer.Option("--policy", "-p", help="Policy file (YAML).", show_default=False)],
    audit_id: Annotated[str | None, typer.Argument(help="Audit to gate on the server.")] = None,
    local: Annotated[
        Path | None, typer.Option("--local", help="Gate a report.json without a server.", show_default=False)
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Write JUnit XML here (also when the gate errors).")
    ] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Also write the summary here.")] = None,
    on_error: Annotated[
        OnError,
        typer.Option(
            "--on-error",
            help="When the service gives no verdict (exit 3): fail, or pass loudly. Never excuses exit 2.",
        ),
    ] = OnError.fail,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Check a report against a policy: exit 0 pass, 1 fail, 2 usage/policy error, 3 service error."""
    try:
        result = _gate_result(policy, audit_id, local, url, api_key)
    except _NoVerdictError as exc:
        excused = exc.exit_code == EXIT_SERVICE and on_error is OnError.pass_
        if excused:
            message = (
                f"the Occulta gate was NOT evaluated ({exc.message}); passing only because of --on-error pass"
            )
            _stderr().print(f"[bold red]WARNING: {message}.[/]", highlight=False)
            code = EXIT_PASS
        else:
            message = exc.message + (" (no verdict, so the gate fails closed)" if exc.exit_code == 3 else "")
            code = exc.exit_code
        _write_outputs(
            error_markdown(message, code, passed_anyway=excused),
            error_junit(message, code, passed_anyway=excused),
            markdown,
            junit,
        )
        if excused:
            raise typer.Exit(EXIT_PASS) from None
        fail(message, code)
    typer.echo(result.markdown, nl=False)
    _write_outputs(result.markdown, to_junit(result), markdown, junit)
    raise typer.Exit(EXIT_PASS if result.passed else EXIT_FAIL)
