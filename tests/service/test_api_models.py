"""POST /v1/models: a good upload is stored and described; every bad one is a clear 4xx that leaves
no row and no object behind, and nothing in a pickle ever runs."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path

import pytest
from sqlalchemy import func, select

from occulta.db import ModelRecord
from occulta.storage import tenant_prefix

pytestmark = pytest.mark.service


def _upload(client, caller, card: bytes, weights: bytes | None, name: str = "w.safetensors"):  # type: ignore[no-untyped-def]
    files = {"card": ("card.json", card, "application/json")}
    if weights is not None:
        files["weights"] = (name, weights, "application/octet-stream")
    return client.post("/v1/models", files=files, headers=caller.headers)


def _nothing_left(sessions, store, caller) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        n = s.scalar(
            select(func.count()).select_from(ModelRecord).where(ModelRecord.tenant_id == caller.tenant_id)
        )
    assert n == 0
    assert store.list(tenant_prefix(caller.tenant_id)) == []


def test_upload_stores_the_model_and_describes_it(client, alice, store, tiny_model) -> None:  # type: ignore[no-untyped-def]
    weights = tiny_model.weights.read_bytes()
    r = _upload(client, alice, tiny_model.card.read_bytes(), weights)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["arch"] == "occulta_resnet_tiny" and body["format"] == "safetensors"
    assert body["sha256"] == hashlib.sha256(weights).hexdigest() and body["size_bytes"] == len(weights)
    assert body["num_classes"] == 4 and body["name"] == "tiny-shapes"
    keys = store.list(tenant_prefix(alice.tenant_id))
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == ["card.json", "weights.safetensors"]
    assert all(k.startswith(f"tenants/{alice.tenant_id}/models/{body['id']}/") for k in keys)
    assert client.get(f"/v1/models/{body['id']}", headers=alice.headers).json() == body
    assert [m["id"] for m in client.get("/v1/models", headers=alice.headers).json()] == [body["id"]]
    assert client.delete(f"/v1/models/{body['id']}", headers=alice.headers).status_code == 204
    assert store.list(tenant_prefix(alice.tenant_id)) == []


class _Payload:
    """Unpickling this would create `marker`; a safe loader must refuse before that happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_a_pickle_with_a_payload_is_refused_and_never_executed(
    client, alice, sessions, store, tiny_model, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import torch

    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"fc.weight": _Payload(marker)}, buf)
    r = _upload(client, alice, tiny_model.card.read_bytes(), buf.getvalue(), name="w.pt")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_weights"
    assert not marker.exists()
    _nothing_left(sessions, store, alice)


def test_a_pickled_module_is_refused(client, alice, sessions, store, tiny_model) -> None:  # type: ignore[no-untyped-def]
    import timm
    import torch

    buf = io.BytesIO()
    torch.save(timm.create_model("occulta_resnet_tiny", num_classes=4), buf)
    r = _upload(client, alice, tiny_model.card.read_bytes(), buf.getvalue(), name="w.pt")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_weights", r.text
    _nothing_left(sessions, store, alice)


def test_a_plain_pickle_file_is_refused(client, alice, sessions, store, tiny_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "pwned2"
    r = _upload(client, alice, tiny_model.card.read_bytes(), pickle.dumps(_Payload(marker)), name="w.pkl")
    assert r.status_code == 422, r.text
    assert not marker.exists()
    _nothing_left(sessions, store, alice)


def test_a_truncated_checkpoint_is_refused(client, alice, sessions, store, tiny_model) -> None:  # type: ignore[no-untyped-def]
    data = tiny_model.weights.read_bytes()
    r = _upload(client, alice, tiny_model.card.read_bytes(), data[: len(data) // 2])
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_weights", r.text
    _nothing_left(sessions, store, alice)


def test_an_unknown_arch_is_refused(client, alice, sessions, store, tiny_model) -> None:  # type: ignore[no-untyped-def]
    card = json.loads(tiny_model.card.read_text()) | {"arch": "evil_net"}
    r = _upload(client, alice, json.dumps(card).encode(), tiny_model.weights.read_bytes())
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_model_card", r.text
    assert "allow-list" in r.json()["error"]["message"]
    _nothing_left(sessions, store, alice)


def test_weights_that_do_not_fit_the_arch_are_refused(client, alice, sessions, store, tiny_model) -> None:  # type: ignore[no-untyped-def]
    card = json.loads(tiny_model.card.read_text())
    card |= {"arch_kwargs": {"num_classes": 3}, "class_names": ["a", "b", "c"]}
    r = _upload(client, alice, json.dumps(card).encode(), tiny_model.weights.read_bytes())
    assert r.status_code == 422, r.text
    assert "do not fit" in r.json()["error"]["message"]
    _nothing_left(sessions, store, alice)


def test_a_card_that_is_not_json_or_yaml_is_refused(client, alice, sessions, store, tiny_model) -> None:  # type: ignore[no-untyped-def]
    r = _upload(client, alice, b"{arch: [unclosed", tiny_model.weights.read_bytes())
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_model_card", r.text
    _nothing_left(sessions, store, alice)


def test_an_upload_over_the_cap_is_413_and_leaves_nothing(
    prod_settings, alice, sessions, store, tiny_model
) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from api.app import create_app

    small = prod_settings.model_copy(update={"max_upload_bytes": 10_000})
    with TestClient(create_app(small)) as client:
        r = _upload(client, alice, tiny_model.card.read_bytes(), b"\0" * 20_000)
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "too_large"
        big = b"\0" * (6 * 1024 * 1024)  # past the body cap: refused while streaming, before spooling
        r = _upload(client, alice, tiny_model.card.read_bytes(), big)
        assert r.status_code == 413
    _nothing_left(sessions, store, alice)


@pytest.mark.parametrize("missing", ["card", "weights"])
def test_a_missing_file_is_a_clear_4xx(client, alice, tiny_model, missing: str) -> None:  # type: ignore[no-untyped-def]
    files = {"card": ("card.json", tiny_model.card.read_bytes()), "weights": ("w.safetensors", b"x")}
    files.pop(missing)
    r = client.post("/v1/models", files=files, headers=alice.headers)
    assert r.status_code == 422
    assert missing in r.json()["error"]["message"]
