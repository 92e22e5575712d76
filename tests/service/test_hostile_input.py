"""Every request of the hostile corpus (tests/service/hostile.py) is a clean 4xx in the error shape,
names no server path, and leaves nothing behind: no row, no stored object, no temp file."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from occulta.db import ApiKey, AuditJob, DatasetRecord, ModelRecord
from occulta.storage import tenant_prefix
from tests.service.hostile import CORPUS, Case, Ctx, png_header_only
from tests.service.rows import add_dataset, add_job, add_model

pytestmark = pytest.mark.service

SERVER_PATH = re.compile(r"/(tmp|var|home|root|usr|opt|srv|app|work|mnt|proc)/")


@pytest.fixture(scope="module")
def private_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The in-process API's temp files go here, so a leftover is seen (and no other process's)."""
    folder = tmp_path_factory.mktemp("api-tmp")
    saved = tempfile.tempdir
    tempfile.tempdir = str(folder)
    yield folder
    tempfile.tempdir = saved


def _model_with_input_size(sessions, tenant_id: str) -> str:  # type: ignore[no-untyped-def]
    """A model row whose card names its input size, so a region can be checked against it."""
    model_id = add_model(sessions, tenant_id)
    with sessions() as s:
        row = s.get(ModelRecord, model_id)
        row.card = {"arch": "occulta_resnet_tiny", "input_size": [3, 32, 32]}
        s.commit()
    return model_id


@pytest.fixture
def ctx(sessions, alice, tiny_model) -> Ctx:  # type: ignore[no-untyped-def]
    return Ctx(
        model_id=_model_with_input_size(sessions, alice.tenant_id),
        dataset_id=add_dataset(sessions, alice.tenant_id),
        audit_id=add_job(sessions, alice.tenant_id),
        card=tiny_model.card.read_bytes(),
        weights=tiny_model.weights.read_bytes(),
    )


def _footprint(sessions, store, tenant_id: str) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        counts = tuple(
            s.scalar(select(func.count()).select_from(cls).where(cls.tenant_id == tenant_id)) or 0
            for cls in (ModelRecord, DatasetRecord, AuditJob, ApiKey)
        )
    return (*counts, len(store.list(tenant_prefix(tenant_id))))


def test_the_corpus_is_large_and_its_ids_are_unique() -> None:
    ids = [case.id for case in CORPUS]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 150


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_a_hostile_request_is_a_clean_4xx_that_saves_nothing(  # type: ignore[no-untyped-def]
    case: Case, client, alice, ctx: Ctx, sessions, store, private_tmp: Path
) -> None:
    before = _footprint(sessions, store, alice.tenant_id)
    request = case.request(ctx)
    headers = alice.headers | request.pop("headers", {})
    r = client.request(case.method, case.url(ctx), headers=headers, **request)
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    if case.status:
        assert r.status_code in case.status, r.text[:500]
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    assert not SERVER_PATH.search(body["error"]["message"]), body["error"]["message"]
    assert _footprint(sessions, store, alice.tenant_id) == before
    assert list(private_tmp.iterdir()) == []


def test_an_emoji_class_name_written_as_a_yaml_surrogate_pair_is_stored_as_the_emoji(  # type: ignore[no-untyped-def]
    client, alice, tiny_model
) -> None:
    card = (
        "arch: occulta_resnet_tiny\ninput_size: [3, 32, 32]\nweights: w.safetensors\n"
        'class_names: ["circle", "square", "triangle", "cross \\ud83d\\ude00"]\n'
    )
    files = {
        "card": ("card.yaml", card.encode(), "application/yaml"),
        "weights": ("w.safetensors", tiny_model.weights.read_bytes(), "application/octet-stream"),
    }
    r = client.post("/v1/models", files=files, headers=alice.headers)
    assert r.status_code == 201, r.text
    assert r.json()["class_names"][-1] == "cross \U0001f600"
    listed = client.get("/v1/models", headers=alice.headers).json()
    assert listed[0]["class_names"][-1] == "cross \U0001f600"


def test_405_names_every_method_the_path_serves(client, alice) -> None:  # type: ignore[no-untyped-def]
    r = client.request("PATCH", "/v1/audits", headers=alice.headers)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "POST"}


def test_a_chunked_upload_past_the_cap_is_413_and_leaves_nothing(  # type: ignore[no-untyped-def]
    prod_settings, alice, sessions, store, tiny_model
) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app

    small = prod_settings.model_copy(update={"max_upload_bytes": 10_000})
    boundary = "occulta-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="card"; filename="card.json"\r\n'
        f"Content-Type: application/json\r\n\r\n"
    ).encode() + tiny_model.card.read_bytes()
    head += (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="weights"; filename="w.safetensors"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:  # no Content-Length: the cap is met while streaming
        yield head
        for _ in range(6):
            yield b"\0" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    with TestClient(create_app(small)) as client:
        r = client.post(
            "/v1/models",
            content=body(),
            headers=alice.headers | {"content-type": f"multipart/form-data; boundary={boundary}"},
        )
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "too_large"
    assert _footprint(sessions, store, alice.tenant_id) == (0, 0, 0, 1, 0)


def test_a_png_decompression_bomb_is_a_dataset_error_before_it_is_decoded(tmp_path: Path) -> None:
    from occulta.datasets import load_dataset
    from occulta.errors import DatasetError

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    with pytest.raises(DatasetError, match="decompression bomb"):
        load_dataset(str(tmp_path), input_size=(32, 32), model_classes=["a", "b"])
