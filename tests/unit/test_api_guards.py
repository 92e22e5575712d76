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


def test_past_the_line_a_client_gets_503_with_retry_after_not_a_wait() -> None:
    import asyncio

    import httpx

    from api.limits import Admission

    release = asyncio.Event()

    async def slow_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = Admission(slow_app, max_active=1, max_waiting=1, max_wait=30, retry_after=7)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            inside = asyncio.create_task(http.get("/v1/models"))
            waiting = asyncio.create_task(http.get("/v1/models"))
            await asyncio.sleep(0.05)
            refused = await http.get("/v1/models")  # one inside, one waiting: the line is full
            release.set()
            return [await inside, await waiting, refused]

    inside, waiting, refused = asyncio.run(scenario())
    assert (inside.status_code, waiting.status_code) == (200, 200)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "7"
    assert refused.json()["error"]["code"] == "overloaded"
