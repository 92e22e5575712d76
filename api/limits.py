"""Limits enforced at the door, before a route or the database sees a request.

- `BodySizeLimit`: the body cap, counted while it streams in (a chunked upload has no Content-Length),
  before Starlette spools a multipart upload to disk: an oversized upload is a 413, whatever the
  route's parser makes of the aborted stream.
- `InputGuard`: text the database cannot store (NUL, lone surrogates), invalid UTF-8 and JSON nested
  past a small depth are refused as 4xx here, once for every route, instead of each route meeting them
  as a driver error or a `RecursionError`.
- `Admission`: a bound on requests inside the app (no more than the pool has connections), a bounded
  line in front of it, and 503 with `Retry-After` past the line instead of client time-outs.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote_to_bytes

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ADMISSION_KEY = "occulta.admission"
# Room for multipart headers and the card beside the weights.
OVERHEAD = 4 * 1024 * 1024
MAX_JSON_DEPTH = 32
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyTooLargeError(Exception):
    """Raised from `receive` to abort the app once the cap is passed."""


class InputError(ValueError):
    """A request the guard refuses; `status` and `code` say how."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def send_error(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    """An error response in the API's shape, from a middleware (no Request object needed)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes + OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise BodyTooLargeError()
            return message

        async def guarded_send(message: Message) -> None:
            # A parser that caught the abort answers 400 "error parsing the body": the client is owed
            # the 413, so the app's own answer is dropped once the cap was passed.
            nonlocal started
            if exceeded:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:  # whatever a parser turned the abort into, the answer is the 413
                raise
        if exceeded and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        limit = self.max_bytes - OVERHEAD
        await send_error(
            send,
            413,
            "too_large",
            f"request body is larger than the upload limit of {limit} bytes",
            {"connection": "close"},
        )


def check_text(value: str, where: str) -> None:
    if "\x00" in value:
        raise InputError(422, "invalid_request", f"{where} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(422, "invalid_request", f"{where} contains a lone UTF-16 surrogate") from None


def check_json_value(value: Any, where: str = "body", max_depth: int = MAX_JSON_DEPTH) -> None:
    """Walk a parsed JSON document without recursion: depth, text and numbers every column can hold."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > max_depth:
            raise InputError(422, "invalid_request", f"the body is nested deeper than {max_depth} levels")
        if isinstance(item, str):
            check_text(item, path)
        elif isinstance(item, float) and not math.isfinite(item):
            raise InputError(422, "invalid_request", f"{path} is {item}; numbers must be finite")
        elif isinstance(item, dict):
            for k, v in item.items():
                check_text(k, f"a key of {path}")
                stack.append((v, f"{path}.{k}", depth + 1))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))


def parse_json_body(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The body as JSON, or an InputError: strict UTF-8, no NaN/Infinity, bounded depth."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            400, "malformed_json", f"the request body is not valid UTF-8 (byte {exc.start})"
        ) from None

    def _refuse_constant(name: str) -> float:
        raise InputError(422, "invalid_request", f"{name} is not a number JSON allows")

    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise InputError(422, "invalid_request", "the body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise InputError(400, "malformed_json", f"the request body is not valid JSON: {exc}") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        if isinstance(exc, InputError):
            raise
        raise InputError(422, "invalid_request", f"the request body has an unreadable value: {exc}") from None
    check_json_value(value, max_depth=max_depth)
    return value


def _body_kind(scope: Scope) -> str | None:
    """'json', 'form' or None (a body the guard leaves to the route, e.g. a multipart upload)."""
    if scope["method"] not in BODY_METHODS:
        return None
    content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
    if content_type in (b"", b"application/json") or content_type.endswith(b"+json"):
        return "json"
    if content_type == b"application/x-www-form-urlencoded":
        return "form"
    return None


def check_target(scope: Scope) -> None:
    """Path and query: UTF-8 once decoded (the server would otherwise substitute U+FFFD silently), and
    no NUL in an id, a filter or a cursor."""
    for what, raw in (
        ("path", scope.get("raw_path") or b""),
        ("query string", scope.get("query_string", b"")),
    ):
        decoded = unquote_to_bytes(raw.replace(b"+", b" ") if what == "query string" else raw)
        try:
            decoded.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(400, "invalid_request", f"the {what} is not valid UTF-8 once decoded") from None
        if b"\x00" in decoded:
            raise InputError(422, "invalid_request", f"the {what} contains a NUL character")
    check_text(scope["path"], "the path")


class InputGuard:
    def __init__(self, app: ASGIApp, max_json_bytes: int) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_target(scope)
            kind = _body_kind(scope)
            if kind is None:
                await self.app(scope, receive, send)
                return
            raw = await self._read(receive)
            if kind == "json" and raw.strip():
                parse_json_body(raw)
            elif kind == "form" and b"\x00" in unquote_to_bytes(raw.replace(b"+", b" ")):
                raise InputError(422, "invalid_request", "a form field contains a NUL character")
        except InputError as exc:
            await send_error(send, exc.status, exc.code, exc.message)
            return
        await self.app(scope, _replay(raw, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_json_bytes:
                raise InputError(
                    413, "too_large", f"a JSON or form body is limited to {self.max_json_bytes} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(raw: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay


class Admission:
    """At most `max_active` requests inside the app; the rest wait here, holding nothing.

    A sync route's request holds its pooled connection from the route through FastAPI's response
    serialization, which waits for a thread of its own; with every client let in, requests past their
    route sit on connections while the threads wait for connections, and the pool runs dry (the
    original failure: `QueuePool limit ... reached` after 30 s). With no more requests inside than
    the pool has connections, a checkout never waits. Past `max_waiting` waiting clients, or after
    `max_wait` seconds in line, the answer is 503 with `Retry-After`: never a client time-out.
    Probes and metrics skip the line, so a loaded server is not declared dead.
    """

    EXEMPT = frozenset({"/livez", "/readyz", "/metrics"})

    def __init__(
        self, app: ASGIApp, max_active: int, max_waiting: int, max_wait: float, retry_after: int
    ) -> None:
        self.app = app
        self.max_active = max_active
        self.max_waiting = max_waiting
        self.max_wait = max_wait
        self.retry_after = retry_after
        self.waiting = 0
        self._slots: anyio.Semaphore | None = None

    async def _overloaded(self, send: Send, why: str) -> None:
        await send_error(
            send,
            503,
            "overloaded",
            f"the server is at capacity ({why}); retry after the seconds in Retry-After",
            {"retry-after": str(self.retry_after)},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = anyio.Semaphore(self.max_active)
        slots = self._slots
        try:
            slots.acquire_nowait()  # a free slot: straight in, never counted as waiting
        except anyio.WouldBlock:
            if self.waiting >= self.max_waiting:
                await self._overloaded(send, f"{self.waiting} requests waiting")
                return
            self.waiting += 1
            acquired = False
            try:
                with anyio.move_on_after(self.max_wait):
                    await slots.acquire()
                    acquired = True
            finally:
                self.waiting -= 1
            if not acquired:
                await self._overloaded(send, f"no slot within {self.max_wait:.0f} s")
                return
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                slots.release()

        async def reacquire() -> None:
            nonlocal released
            await slots.acquire()
            released = False

        scope[ADMISSION_KEY] = (release, reacquire)  # for `outside_admission` (long-polls)

        async def releasing_send(message: Message) -> None:
            # Once the response starts the route is done with the database: a slow reader of a
            # streamed report no longer holds a slot.
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.app(scope, receive, releasing_send)
        finally:
            release()


@asynccontextmanager
async def outside_admission(scope: Scope) -> AsyncIterator[None]:
    """Give the request's slot back while it only waits (a long-poll holds no thread and no
    connection), and take one again before it reads the database once more."""
    hooks = scope.get(ADMISSION_KEY)
    if hooks is None:
        yield
        return
    release, reacquire = hooks
    release()
    try:
        yield
    finally:
        await reacquire()
