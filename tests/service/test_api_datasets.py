"""POST /v1/datasets: synthetic refs, s3 prefixes inside the tenant's own space, and archives; URLs,
server paths, other tenants' prefixes and hostile archives are refused without fetching anything."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest
from sqlalchemy import func, select

from occulta.db import DatasetRecord
from occulta.storage import tenant_prefix

pytestmark = pytest.mark.service


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _count(sessions, caller) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(DatasetRecord)
                .where(DatasetRecord.tenant_id == caller.tenant_id)
            )
            or 0
        )


def test_a_synthetic_ref_is_registered_with_its_size_and_classes(client, alice) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/datasets", json={"ref": "synthetic:shapes?classes=3&size=32&n=60"}, headers=alice.headers
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "synthetic" and body["n_images"] == 60 and len(body["class_names"]) == 3
    assert client.get(f"/v1/datasets/{body['id']}", headers=alice.headers).json() == body
    assert [d["id"] for d in client.get("/v1/datasets", headers=alice.headers).json()] == [body["id"]]


def test_an_s3_prefix_inside_the_tenants_space_is_scanned(client, alice, store) -> None:  # type: ignore[no-untyped-def]
    base = tenant_prefix(alice.tenant_id) + "data/val/"
    for cls in ("cat", "dog"):
        for i in range(3):
            store.put_stream(f"{base}{cls}/{i}.png", io.BytesIO(_png()))
    ref = f"s3://{store.bucket}/{store.prefix}/{base}"
    r = client.post("/v1/datasets", json={"ref": ref}, headers=alice.headers)
    assert r.status_code == 201, r.text
    assert (
        r.json()["kind"] == "s3" and r.json()["n_images"] == 6 and r.json()["class_names"] == ["cat", "dog"]
    )


@pytest.mark.parametrize(
    "ref",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://example.com/data.tar",
        "/etc",
        "file:///etc/passwd",
        "s3://another-bucket/tenants/x/data/",
    ],
)
def test_urls_server_paths_and_foreign_buckets_are_refused(client, alice, sessions, ref: str) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/datasets", json={"ref": ref}, headers=alice.headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_dataset"
    assert _count(sessions, alice) == 0


def test_an_s3_prefix_of_another_tenant_is_refused(client, alice, bob, sessions, store) -> None:  # type: ignore[no-untyped-def]
    theirs = tenant_prefix(bob.tenant_id) + "data/"
    store.put_stream(theirs + "a/1.png", io.BytesIO(_png()))
    for ref in (
        f"s3://{store.bucket}/{store.prefix}/{theirs}",
        f"s3://{store.bucket}/{store.prefix}/{tenant_prefix(alice.tenant_id)}../{bob.tenant_id}/data/",
    ):
        r = client.post("/v1/datasets", json={"ref": ref}, headers=alice.headers)
        assert r.status_code == 422, r.text
        assert "tenant" in r.json()["error"]["message"] or ".." in r.json()["error"]["message"]
    assert _count(sessions, alice) == 0


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(add) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        add(tf)
    return buf.getvalue()


def _file(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _link(tf: tarfile.TarFile, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tf.addfile(info)


def test_an_archive_upload_is_validated_and_stored(client, alice, store) -> None:  # type: ignore[no-untyped-def]
    data = _zip({f"ds/{c}/{i}.png": _png() for c in ("a", "b") for i in range(2)})
    r = client.post("/v1/datasets", files={"archive": ("../../evil name.zip", data)}, headers=alice.headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "archive" and body["n_images"] == 4 and body["class_names"] == ["a", "b"]
    assert store.list(tenant_prefix(alice.tenant_id)) == [
        f"tenants/{alice.tenant_id}/datasets/{body['id']}/archive.zip"
    ]


@pytest.mark.parametrize(
    "archive",
    [
        pytest.param(lambda: _zip({"../escape.png": _png()}), id="zip-dotdot"),
        pytest.param(lambda: _zip({"/abs/x.png": _png()}), id="zip-absolute"),
        pytest.param(lambda: _tar(lambda tf: _file(tf, "a/../../x.png", _png())), id="tar-dotdot"),
        pytest.param(lambda: _tar(lambda tf: _file(tf, "/etc/x.png", _png())), id="tar-absolute"),
        pytest.param(lambda: _tar(lambda tf: _link(tf, "a/link.png", "/etc/passwd")), id="tar-symlink"),
        pytest.param(
            lambda: _tar(lambda tf: _link(tf, "a/hard.png", "/etc/passwd", tarfile.LNKTYPE)),
            id="tar-hardlink",
        ),
        pytest.param(lambda: b"PK\x03\x04 this is not really a zip", id="corrupt"),
        pytest.param(lambda: b"plain text", id="not-an-archive"),
    ],
)
def test_hostile_or_broken_archives_are_refused_and_leave_nothing(
    client, alice, sessions, store, archive
) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/datasets", files={"archive": ("x.tar.gz", archive())}, headers=alice.headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_dataset"
    assert _count(sessions, alice) == 0
    assert store.list(tenant_prefix(alice.tenant_id)) == []


def test_malformed_json_is_a_400_with_the_error_shape(client, alice) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/datasets", content=b'{"ref": ', headers=alice.headers | {"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json"
