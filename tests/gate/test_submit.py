"""`occulta submit` against a fake server: the card's own `weights:`, errors that name the user's
files, local `--data` checks before any upload, and clean-up of what a refused submit created."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from occulta.cli import app
from tests.gate.conftest import API_KEY, FakeOccultaServer

runner = CliRunner()
CARD = "arch: resnet18\ninput_size: [3, 32, 32]\nclass_names: [a, b]\n"
REFUSED = {"error": {"code": "invalid_audit_config", "message": "unknown audit 'siss' (did you mean sis?)"}}


def submit(server: FakeOccultaServer, *args: str) -> object:
    return runner.invoke(app, ["submit", *args, "--url", server.url, "--api-key", API_KEY])


@pytest.fixture
def card(tmp_path: Path) -> Path:
    """A card in its own folder naming its weights relatively, as `occulta audit` reads them."""
    folder = tmp_path / "model"
    (folder / "ckpt").mkdir(parents=True)
    (folder / "ckpt" / "best.safetensors").write_bytes(b"\x00weights")
    path = folder / "my-card.yaml"
    path.write_text(CARD + "weights: ckpt/best.safetensors\n")
    return path


def serve_all(server: FakeOccultaServer, model_status: int = 201) -> None:
    server.on("POST", "/v1/models", (model_status, {"id": "mdl_1"}))
    server.on("POST", "/v1/datasets", (201, {"id": "ds_1"}))
    server.on("POST", "/v1/audits", (202, {"id": "aud_1", "status": "queued"}))
    server.on("DELETE", "/v1/models/mdl_1", (204, {}))
    server.on("DELETE", "/v1/datasets/ds_1", (204, {}))


def test_the_cards_weights_field_is_uploaded_relative_to_the_card(
    server: FakeOccultaServer, card: Path, tmp_path: Path
) -> None:
    serve_all(server)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    result = submit(server, "--model", str(card), "--data", "synthetic:corner", "--audits", "sis")
    assert result.exit_code == 0, result.output
    upload = server.requests[0]
    assert b'filename="my-card.yaml"' in upload.body and b'filename="best.safetensors"' in upload.body
    assert b"\x00weights" in upload.body


def test_no_weights_anywhere_says_to_pass_weights_before_any_request(
    server: FakeOccultaServer, tmp_path: Path
) -> None:
    card = tmp_path / "bare.yaml"
    card.write_text(CARD)
    result = submit(server, "--model", str(card), "--data", "synthetic:corner", "--audits", "sis")
    assert result.exit_code == 2
    assert "model card bare.yaml names no `weights:`" in result.stderr and "--weights PATH" in result.stderr
    assert server.requests == []


def test_missing_weights_named_by_the_card_are_said_with_the_card_name(
    server: FakeOccultaServer, tmp_path: Path
) -> None:
    card = tmp_path / "named.yaml"
    card.write_text(CARD + "weights: gone.safetensors\n")
    result = submit(server, "--model", str(card), "--data", "synthetic:corner", "--audits", "sis")
    assert result.exit_code == 2
    assert "`weights: gone.safetensors` in the card named.yaml" in result.stderr
    assert "--weights" in result.stderr and server.requests == []


def test_an_invalid_card_is_refused_locally_with_its_own_name(server: FakeOccultaServer, card: Path) -> None:
    card.write_text(CARD.replace("resnet18", "occulta_resnt_tiny") + "weights: ckpt/best.safetensors\n")
    result = submit(server, "--model", str(card), "--data", "synthetic:corner", "--audits", "sis")
    assert result.exit_code == 2
    assert (
        "model card my-card.yaml:" in result.stderr and "did you mean occulta_resnet_tiny?" in result.stderr
    )
    assert server.requests == []


@pytest.mark.parametrize("data", ["/missing/path", "./nope-folder"])
def test_a_data_path_that_does_not_exist_is_said_so_before_any_upload(
    server: FakeOccultaServer, card: Path, data: str
) -> None:
    result = submit(server, "--model", str(card), "--data", data, "--audits", "sis")
    assert result.exit_code == 2
    assert f"--data {data}: no such folder or file here" in result.stderr
    assert "server paths are never fetched" not in result.stderr
    assert server.requests == []


def test_a_local_archive_is_uploaded(server: FakeOccultaServer, card: Path, tmp_path: Path) -> None:
    import tarfile

    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "a" / "1.png").write_bytes(b"png")
    archive = tmp_path / "eval.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "imgs", arcname=".")
    serve_all(server)
    result = submit(server, "--model", str(card), "--data", str(archive), "--audits", "sis")
    assert result.exit_code == 0, result.output
    assert b'name="archive"; filename="eval.tar.gz"' in server.requests[1].body


def test_a_refused_audit_removes_the_model_and_dataset_this_run_created(
    server: FakeOccultaServer, card: Path
) -> None:
    serve_all(server)
    server.on("POST", "/v1/audits", (422, REFUSED))
    result = submit(server, "--model", str(card), "--data", "synthetic:corner", "--audits", "siss")
    assert result.exit_code == 2 and "did you mean sis?" in result.stderr
    calls = [(r.method, r.path) for r in server.requests]
    assert calls[-2:] == [("DELETE", "/v1/datasets/ds_1"), ("DELETE", "/v1/models/mdl_1")]


def test_a_model_the_tenant_already_had_is_never_deleted_by_a_failed_submit(
    server: FakeOccultaServer, card: Path
) -> None:
    serve_all(server, model_status=200)
    server.on("POST", "/v1/audits", (422, REFUSED))
    result = submit(server, "--model", str(card), "--data", "synthetic:corner", "--audits", "siss")
    assert result.exit_code == 2
    deletes = [r.path for r in server.requests if r.method == "DELETE"]
    assert deletes == ["/v1/datasets/ds_1"], "only what this run created goes"


def test_a_lost_answer_to_audit_creation_keeps_the_inputs_the_audit_may_need(
    server: FakeOccultaServer, card: Path
) -> None:
    serve_all(server)
    server.on("POST", "/v1/audits", (500, {"error": {"code": "internal_error", "message": "boom"}}))
    result = submit(server, "--model", str(card), "--data", "synthetic:corner", "--audits", "sis")
    assert result.exit_code == 3
    assert not [r for r in server.requests if r.method == "DELETE"]
