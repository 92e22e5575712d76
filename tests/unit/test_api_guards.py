"""The API's input guard and message scrubber as plain functions (the service tests drive them over
HTTP): JSON the database can store and nothing of the server's disk in a message."""

from __future__ import annotations

import pytest

from api.errors import scrub
from api.limits import InputError, parse_json_body


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"a": "x\\u0000y"}', 422),
        (b'{"a": "\\ud800"}', 422),
        (b'{"a": NaN}', 422),
        (b'{"a": -Infinity}', 422),
        (b'{"a": 1e400}', 422),
        (b"[" * 40 + b"]" * 40, 422),
        (b"[" * 100_000 + b"]" * 100_000, 422),
        (b'{"a": "\xff"}', 400),
        (b'{"a": 1} x', 400),
    ],
)
def test_a_body_no_column_can_hold_is_refused(raw: bytes, status: int) -> None:
    with pytest.raises(InputError) as info:
        parse_json_body(raw)
    assert info.value.status == status


def test_an_emoji_written_as_a_surrogate_pair_is_text() -> None:
    assert parse_json_body(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("no images found in /tmp/occulta-dataset-x1/extracted", "no images found in extracted"),
        ("weights file /work/data/objects/w.pt does not exist", "weights file w.pt does not exist"),
        (
            "see s3://bucket/tenants/t/data/ and /v1/audits/aud_1",
            "see s3://bucket/tenants/t/data/ and /v1/audits/aud_1",
        ),
    ],
)
def test_a_message_names_no_server_path(message: str, expected: str) -> None:
    assert scrub(message) == expected
