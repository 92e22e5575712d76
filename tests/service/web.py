"""The dashboard as a signed-in browser would drive it in the service tests: the CSRF token of a
page and a TestClient signed in with a tenant's key."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient


def csrf_of(html: str) -> str:
    """The CSRF token a dashboard form carries."""
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def signed_in(app: Any, caller: Any) -> TestClient:
    """A client signed in to the dashboard with `caller.key`; production cookies are Secure, hence
    https. No `with`: the session's shared app keeps its lifespan."""
    web = TestClient(app, base_url="https://testserver")
    login = web.get("/dashboard/login")
    r = web.post(
        "/dashboard/login",
        data={"api_key": caller.key, "csrf": csrf_of(login.text), "next": "/dashboard/launch"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return web
