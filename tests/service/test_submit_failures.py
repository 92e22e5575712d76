"""`occulta submit` against the real stack (uvicorn, PostgreSQL, S3): failed submits leave the tenant's
models, datasets and audits as they were; the same checkpoint submitted twice is one model; errors
name the user's files; a server URL with a path gets a hint instead of a bare not_found."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from occulta.cli import app
from tests.fixtures.service import Stack, TinyModel, prod_env, run_stack

pytestmark = [pytest.mark.e2e, pytest.mark.service, pytest.mark.timeout(300)]
runner = CliRunner()
DATA = "synthetic:shapes?classes=4&size=32&n=16&seed=1"


@pytest.fixture(scope="module")
def stack(pg_migrated, redis_url, s3_endpoint, tmp_path_factory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    data_dir = tmp_path_factory.mktemp("submit-stack")
    env = prod_env(pg_url=pg_migrated, redis_url=redis_url, s3_endpoint=s3_endpoint, data_dir=data_dir)
    with run_stack(env, worker=False, log_dir=data_dir / "logs") as running:
        yield running


@pytest.fixture
def card(tiny_model: TinyModel, tmp_path: Path) -> Path:
    """The tiny model's card under the user's own name, its weights beside it (`weights:` relative)."""
    shutil.copy(tiny_model.weights, tmp_path / tiny_model.weights.name)
    path = tmp_path / "my-model.json"
    shutil.copy(tiny_model.card, path)
    return path


def submit(stack: Stack, *args: str) -> Any:
    return runner.invoke(app, ["submit", *args, "--url", stack.url, "--api-key", stack.key])


def listed(stack: Stack) -> dict[str, list[str]]:
    with httpx.Client(base_url=stack.url, headers=stack.headers) as http:
        return {
            "models": [m["id"] for m in http.get("/v1/models").json()],
            "datasets": [d["id"] for d in http.get("/v1/datasets").json()],
            "audits": [a["id"] for a in http.get("/v1/audits").json()["items"]],
        }


def test_three_failed_submits_leave_the_tenant_unchanged_and_a_repeat_is_one_model(
    stack: Stack, card: Path
) -> None:
    before = listed(stack)

    refused = submit(stack, "--model", str(card), "--data", DATA, "--audits", "missingness_bias,siss")
    assert refused.exit_code == 2, refused.output
    assert "siss" in refused.stderr

    missing = submit(stack, "--model", str(card), "--data", "/missing/path", "--audits", "sis")
    assert missing.exit_code == 2 and "--data /missing/path: no such folder or file here" in missing.stderr

    bad_data = submit(stack, "--model", str(card), "--data", "synthetic:nonsense", "--audits", "sis")
    assert bad_data.exit_code == 2, bad_data.output

    misfit = card.parent / "three-classes.json"
    misfit.write_text(
        card.read_text()
        .replace('"arch_kwargs": {"num_classes": 4}, ', "")
        .replace('"class_names": ["', '"class_names": ["extra", "')
    )
    unfit = submit(stack, "--model", str(misfit), "--data", DATA, "--audits", "sis")
    assert unfit.exit_code == 2, unfit.output
    assert "card.json" not in unfit.stderr, "the server names the user's files, not its own copies"

    assert listed(stack) == before, "no model, dataset or audit is left behind by a failed submit"

    first = submit(stack, "--model", str(card), "--data", DATA, "--audits", "sis")
    again = submit(stack, "--model", str(card), "--data", DATA, "--audits", "sis")
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    after = listed(stack)
    assert len(after["models"]) == len(before["models"]) + 1, "the same checkpoint twice is one model"
    assert len(after["audits"]) == len(before["audits"]) + 2


def test_a_server_card_error_names_the_users_card(
    stack: Stack, tiny_model: TinyModel, tmp_path: Path
) -> None:
    card = tmp_path / "bad-card.yaml"
    card.write_text("arch: occulta_resnet_tiny\ninput_size: [3, 32, 32]\nclass_names: [a, b]\nextra_key: 1\n")
    with httpx.Client(base_url=stack.url, headers=stack.headers) as http:
        files = {"card": ("bad-card.yaml", card.read_bytes()), "weights": ("w.safetensors", b"x" * 64)}
        answer = http.post("/v1/models", files=files)
    assert answer.status_code == 422
    message = answer.json()["error"]["message"]
    assert "bad-card.yaml" in message and "card.json" not in message


def test_a_server_url_with_a_path_gets_a_hint(stack: Stack) -> None:
    result = runner.invoke(app, ["wait", "aud_x", "--url", stack.url + "/dashboard", "--api-key", stack.key])
    assert result.exit_code == 2
    assert "give the server's root" in result.stderr and stack.url in result.stderr
