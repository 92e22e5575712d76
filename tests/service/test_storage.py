"""Object stores (file:// and a real S3-compatible server): all-or-nothing writes with a size cap and
sha256, streaming reads, prefix deletes, presigned URLs, and keys that cannot escape."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import pytest

from occulta.errors import NotFoundError, TooLargeError
from occulta.settings import Settings
from occulta.storage import InvalidKeyError, ObjectStore, get_store, validate_relative_path

pytestmark = pytest.mark.service


@pytest.fixture(params=["file", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "file":
        return get_store(Settings(data_dir=tmp_path, storage_url=f"file://{tmp_path}/objects"))
    endpoint = request.getfixturevalue("s3_endpoint")
    return get_store(
        Settings(
            data_dir=tmp_path,
            storage_url=f"s3://occulta-test/{tmp_path.name}",
            s3_endpoint_url=endpoint,
            s3_access_key_id="testing",
            s3_secret_access_key="testing",
        )
    )


def test_put_stream_records_size_and_sha256_and_reads_back(any_store: ObjectStore) -> None:
    data = b"x" * 3_000_000
    obj = any_store.put_stream("tenants/t/models/m/weights.pt", io.BytesIO(data), max_bytes=len(data))
    assert obj.size == len(data) and obj.sha256 == hashlib.sha256(data).hexdigest()
    assert any_store.read_bytes("tenants/t/models/m/weights.pt") == data
    assert any_store.list("tenants/t/") == ["tenants/t/models/m/weights.pt"]


def test_put_over_the_cap_raises_and_leaves_nothing(any_store: ObjectStore) -> None:
    with pytest.raises(TooLargeError):
        any_store.put_stream("tenants/t/big.bin", io.BytesIO(b"y" * 2_000_000), max_bytes=1_000_000)
    assert any_store.list("tenants/t/") == []


def test_delete_prefix_does_not_touch_a_sibling_prefix(any_store: ObjectStore) -> None:
    any_store.put_stream("tenants/a/1", io.BytesIO(b"1"))
    any_store.put_stream("tenants/ab/2", io.BytesIO(b"2"))
    assert any_store.delete_prefix("tenants/a/") == 1
    assert any_store.list("tenants/") == ["tenants/ab/2"]
    with pytest.raises(NotFoundError):
        any_store.read_bytes("tenants/a/1")


def test_presigned_url_serves_the_object_over_http(s3_endpoint: str, tmp_path: Path) -> None:
    store = get_store(
        Settings(
            data_dir=tmp_path,
            storage_url="s3://occulta-test/presign",
            s3_endpoint_url=s3_endpoint,
            s3_access_key_id="testing",
            s3_secret_access_key="testing",
        )
    )
    store.put_stream("a/plot.png", io.BytesIO(b"\x89PNG..."))
    url = store.presigned_url("a/plot.png", expires=60, media_type="image/png")
    assert url is not None and url.startswith(s3_endpoint)
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == b"\x89PNG..."
    assert r.headers["content-type"] == "image/png"


def test_file_store_has_no_presigned_urls(tmp_path: Path) -> None:
    assert get_store(Settings(data_dir=tmp_path)).presigned_url("a", expires=1) is None


@pytest.mark.parametrize(
    "bad",
    [
        "../etc/passwd",
        "a/../../b",
        "/abs/path",
        "a//b",
        "a\\b",
        "%2e%2e/secret",
        "%252e%252e/x",
        "C:/x",
        "a/./b",
        "",
        "a\x00b",
    ],
)
def test_paths_that_could_escape_are_refused_after_decoding(bad: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_relative_path(bad)


def test_a_clean_relative_path_is_kept() -> None:
    assert validate_relative_path("missingness_bias/heatmap%20one.png") == "missingness_bias/heatmap one.png"
