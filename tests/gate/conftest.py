"""Fixtures for the gate: a real HTTP server on 127.0.0.1 that answers like the Occulta API contract."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

API_KEY = "occ_test_key"
Reply = tuple[int, Any]
Route = Callable[["Recorded"], Reply]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeOccultaServer:
    """Canned answers per (method, path); a list of replies is served in order, the last one repeats."""

    url: str = ""
    routes: dict[tuple[str, str], Route | list[Reply]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def on(self, method: str, path: str, *replies: Reply) -> None:
        self.routes[(method, path)] = list(replies)

    def on_call(self, method: str, path: str, route: Route) -> None:
        """Answer by running `route` on the request, e.g. to evaluate a gate like the service does."""
        self.routes[(method, path)] = route

    def answer(self, request: Recorded) -> Reply:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return 401, {"error": {"code": "unauthorized", "message": "missing or unknown API key"}}
        route = self.routes.get((request.method, request.path.split("?", 1)[0]))  # routed on the path alone
        if route is None:
            return 404, {"error": {"code": "not_found", "message": f"{request.path} not found"}}
        if callable(route):
            return route(request)
        return route.pop(0) if len(route) > 1 else route[0]


def _handler(server: FakeOccultaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            request = Recorded(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length),
            )
            status, body = server.answer(request)
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            payload = b"" if status == 204 else payload  # a 204 carries no body
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _serve  # noqa: N815 - the names http.server dispatches to

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

    return Handler


@pytest.fixture
def server() -> Iterator[FakeOccultaServer]:
    fake = FakeOccultaServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def refused_url() -> str:
    """A loopback port nobody listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def _ci_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast retries, and no URL, key or step summary leaking in from the machine running the tests."""
    for name in ("OCCULTA_URL", "OCCULTA_API_KEY", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OCCULTA_RETRY_BACKOFF", "0.01")
