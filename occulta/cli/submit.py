"""`occulta submit`: upload a model and a dataset, start an audit battery, print its id.

Everything the client can check is checked before the first byte goes up (the card, with the user's
file name in every message; the weights, from `--weights` or the card's own `weights:` relative to the
card, as `occulta audit` reads it; the `--data` path or reference; the config file), and what the server
refuses afterwards (an unknown audit, a bad config) removes the model and dataset this run created, so
a failed submit leaves nothing behind. A checkpoint the tenant uploaded before is reused, not copied.
"""

from __future__ import annotations

import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from occulta.cli.app import app, fail
from occulta.cli.ci import (
    EXIT_USAGE,
    IntervalOption,
    KeyOption,
    TimeoutOption,
    UrlOption,
    _client,
    _log_remote,
    _read_mapping,
    _remote_failure,
    _wait,
)
from occulta.cli.mlflow_options import MlflowExperiment, MlflowFlag, MlflowRun, MlflowUri
from occulta.client import OccultaClient
from occulta.errors import OccultaError, ServiceError

REMOTE_PREFIXES = ("synthetic:", "s3://")
DATA_HELP = (
    "a local ImageFolder folder or .zip/.tar/.tar.gz archive (uploaded), synthetic:..., "
    "or an s3:// prefix in your tenant's space"
)


@dataclass(frozen=True)
class SubmitInputs:
    """A submit's local inputs, checked: the card, the weights it resolves to, the dataset."""

    card: Path
    weights: Path
    data_ref: str | None  # a reference the server registers
    data_path: Path | None  # a local folder or archive to upload


def resolve_weights(card: Path, weights: Path | None) -> Path:
    """`--weights`, else the card's `weights:` relative to the card (as `occulta audit` reads it)."""
    from occulta.cards import ModelCard, card_error_line, load_card_data

    try:
        data = load_card_data(card.read_text(encoding="utf-8"), source=f"model card {card.name}")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read model card {card}: {exc}", EXIT_USAGE)
    except OccultaError as exc:
        fail(str(exc), EXIT_USAGE)
    named = data.get("weights")
    if weights is None and not named:
        fail(
            f"model card {card.name} names no `weights:` file and no --weights was given; "
            "pass --weights PATH or add `weights: model.safetensors` to the card",
            EXIT_USAGE,
        )
    if weights is None:
        weights = card.parent / str(named)
        if not weights.is_file():
            fail(
                f"weights {weights} (`weights: {named}` in the card {card.name}, relative to the card) "
                "do not exist; fix the card's `weights:` or pass --weights PATH",
                EXIT_USAGE,
            )
    # the card as the server will read it: its weights are the uploaded file, whatever it is called
    checked = {**data, "weights": "weights.safetensors"}
    try:
        ModelCard.model_validate(checked)
    except ValidationError as exc:
        fail(f"model card {card.name}: {card_error_line(exc)}", EXIT_USAGE)
    return weights


def resolve_data(data: str) -> tuple[str | None, Path | None]:
    """A reference for the server, or a local folder/archive to upload; a missing path is said so."""
    from occulta.datasets import is_archive

    if data.startswith(REMOTE_PREFIXES):
        return data, None
    path = Path(data).expanduser()
    if not path.exists():
        fail(f"--data {data}: no such folder or file here; give {DATA_HELP}", EXIT_USAGE)
    if path.is_file() and not is_archive(path):
        fail(f"--data {data}: a file must be a .zip, .tar or .tar.gz archive; give {DATA_HELP}", EXIT_USAGE)
    return None, path


def check_inputs(card: Path, weights: Path | None, data: str) -> SubmitInputs:
    """Every local check, before anything is uploaded."""
    resolved = resolve_weights(card, weights)
    ref, path = resolve_data(data)
    return SubmitInputs(card=card, weights=resolved, data_ref=ref, data_path=path)


def _tar_directory(folder: Path, into: Path) -> Path:
    """An ImageFolder directory travels as a .tar.gz; the server extracts it with its own checks."""
    archive = into / f"{folder.resolve().name or 'dataset'}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=".")
    return archive


def _undo(client: OccultaClient, created: list[tuple[str, str]]) -> None:
    """Delete what this run created, newest first; a failed delete is said, never hidden."""
    for kind, ident in reversed(created):
        try:
            (client.delete_dataset if kind == "dataset" else client.delete_model)(ident)
        except OccultaError as exc:
            typer.echo(f"warning: could not remove the {kind} {ident} this submit created: {exc}", err=True)


def upload_and_create(
    client: OccultaClient, inputs: SubmitInputs, tmp: Path, audit_request: dict[str, Any]
) -> str:
    """Model, dataset, audit; on any refusal, what this run created is removed before the error."""
    created: list[tuple[str, str]] = []
    try:
        model = client.upload_model(inputs.card, inputs.weights)
        if model.new:
            created.append(("model", model.id))
        if inputs.data_path is None:
            dataset = client.register_dataset(str(inputs.data_ref))
        elif inputs.data_path.is_dir():
            dataset = client.upload_dataset(_tar_directory(inputs.data_path, tmp))
        else:
            dataset = client.upload_dataset(inputs.data_path)
        created.append(("dataset", dataset.id))
    except OccultaError as exc:
        _undo(client, created)
        _remote_failure(exc)
    try:
        return client.create_audit(model_id=model.id, dataset_id=dataset.id, **audit_request).id
    except ServiceError as exc:  # the audit may exist after all (a lost answer): keep what it needs
        _remote_failure(exc)
    except OccultaError as exc:  # refused: no audit, so nothing this run uploaded is needed
        _undo(client, created)
        _remote_failure(exc)


@app.command()
def submit(
    model: Annotated[
        Path, typer.Option("--model", exists=True, dir_okay=False, help="Model card (YAML/JSON).")
    ],
    data: Annotated[str, typer.Option("--data", help=f"The dataset: {DATA_HELP}.")],
    audits: Annotated[str, typer.Option("--audits", help="Comma-separated audit names.")],
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights", exists=True, dir_okay=False, help="Checkpoint file (default: the card's `weights:`)."
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", exists=True, dir_okay=False, help="Audit config (YAML/JSON).")
    ] = None,
    samples: Annotated[int | None, typer.Option("--samples", min=1, help="Images to audit.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for every random choice.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait; exit 3 unless the audit succeeds.")] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key", help="Idempotency-Key of the audit creation (default: fresh per run)."
        ),
    ] = None,
    timeout: TimeoutOption = 3600.0,
    interval: IntervalOption = 2.0,
    url: UrlOption = None,
    api_key: KeyOption = None,
    mlflow: MlflowFlag = False,
    mlflow_uri: MlflowUri = None,
    mlflow_experiment: MlflowExperiment = None,
    mlflow_run_id: MlflowRun = None,
) -> None:
    """Upload a model and dataset, start an audit battery and print its id (stdout, for `$(...)`)."""
    names = [a.strip() for a in audits.split(",") if a.strip()]
    if not names:
        fail("--audits needs at least one audit name, e.g. missingness_bias,lime_consistency", EXIT_USAGE)
    if mlflow and not wait:
        fail("--mlflow logs the finished report, so it needs --wait", EXIT_USAGE)
    settings = _read_mapping(config, "config") if config else {}
    inputs = check_inputs(model, weights, data)
    request = {
        "audits": names,
        "config": settings,
        "samples": samples,
        "seed": seed,
        "idempotency_key": idempotency_key,
    }
    with _client(url, api_key) as client, tempfile.TemporaryDirectory() as tmp:
        audit_id = upload_and_create(client, inputs, Path(tmp), request)
        typer.echo(audit_id)
        if wait:
            code = _wait(client, audit_id, timeout, interval)
            if mlflow:
                _log_remote(client, audit_id, Path(tmp), mlflow_uri, mlflow_experiment, mlflow_run_id)
            raise typer.Exit(code)
