"""`/metrics` labels every request by the route that served it, dashboard pages and static files too."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.service


def _request_lines(client) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        line for line in client.get("/metrics").text.splitlines() if line.startswith("occulta_http_requests")
    ]


def test_dashboard_pages_static_files_and_docs_are_labelled_by_their_route(client) -> None:  # type: ignore[no-untyped-def]
    client.get("/dashboard/login")
    client.get("/dashboard/static/dashboard.css")
    client.get("/docs")
    lines = _request_lines(client)
    assert any('route="/dashboard/login",status="200"' in line for line in lines)
    assert any('route="/dashboard/static/{path}",status="200"' in line for line in lines)
    assert any('route="/docs",status="200"' in line for line in lines)
    assert not any('route="unmatched",status="200"' in line for line in lines), lines


def test_only_a_path_no_route_serves_is_unmatched(client) -> None:  # type: ignore[no-untyped-def]
    client.get("/no/such/page")
    assert any('route="unmatched",status="404"' in line for line in _request_lines(client))
