"""Dashboard sign-in. The API key is checked once at sign-in; after that an HMAC-signed, HttpOnly,
SameSite=Lax cookie carries the key's *id* (never the secret), the tenant and a per-session CSRF token.
Every request re-checks that the key is still active, so revoking a key also signs its browsers out.
Signed with the stdlib `hmac` and `OCCULTA_SECRET_KEY`: no extra dependency for one cookie."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from api.deps import Scope, SessionDep
from occulta.errors import OccultaError
from occulta.service import keys
from occulta.settings import Settings

COOKIE = "occulta_session"
LOGIN_COOKIE = "occulta_login"  # double-submit token for the sign-in form (no session exists yet)
MAX_AGE_SECONDS = 12 * 3600


class SignInRequiredError(OccultaError):
    code = "sign_in_required"


class CsrfError(OccultaError):
    code = "csrf_failed"


@dataclass(frozen=True)
class WebSession:
    key_id: str
    tenant_id: str
    csrf: str


def _secret(settings: Settings) -> bytes:
    # Derived, so the cookie key differs from anything else that might be signed with the same secret.
    raw = settings.secret_key.get_secret_value().encode()
    return hashlib.sha256(b"occulta-dashboard-session\0" + raw).digest()


def sign(settings: Settings, payload: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
    mac = hmac.new(_secret(settings), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def unsign(settings: Settings, token: str, *, max_age: int = MAX_AGE_SECONDS) -> dict[str, Any] | None:
    """The payload of a token this server signed less than `max_age` seconds ago, else None."""
    body, _, mac = token.rpartition(".")
    expected = hmac.new(_secret(settings), body.encode(), hashlib.sha256).hexdigest()
    if not body or not hmac.compare_digest(mac, expected):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        return None
    if not isinstance(payload, dict) or time.time() - float(payload.get("iat", 0)) > max_age:
        return None
    return payload


def _secure(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return request.url.scheme == "https" or settings.env == "production"


def read_session(request: Request) -> WebSession | None:
    token = request.cookies.get(COOKIE)
    payload = unsign(request.app.state.settings, token) if token else None
    if payload is None:
        return None
    try:
        return WebSession(key_id=str(payload["k"]), tenant_id=str(payload["t"]), csrf=str(payload["c"]))
    except KeyError:
        return None


def start_session(request: Request, response: Response, *, key_id: str, tenant_id: str) -> None:
    payload = {"k": key_id, "t": tenant_id, "c": secrets.token_urlsafe(24), "iat": int(time.time())}
    response.set_cookie(
        COOKIE,
        sign(request.app.state.settings, payload),
        max_age=MAX_AGE_SECONDS,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/")


def end_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/")


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def set_login_token(request: Request, response: Response, token: str) -> None:
    """The sign-in form's double-submit token, as a short-lived cookie beside the form field."""
    response.set_cookie(
        LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="lax", secure=_secure(request), path="/"
    )


def check_login_token(request: Request, presented: str) -> None:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, presented):
        raise CsrfError("the sign-in form expired or was not sent from this site; reload and try again")


def current_web_session(request: Request, session: SessionDep) -> WebSession:
    web = read_session(request)
    if web is None or not keys.is_active(session, key_id=web.key_id, tenant_id=web.tenant_id):
        raise SignInRequiredError("sign in with an API key")
    request.state.web = web
    return web


WebSessionDep = Annotated[WebSession, Depends(current_web_session)]


def dashboard_scope(web: WebSessionDep, session: SessionDep) -> Scope:
    """The same `Scope` the /v1 routes get from an API key, built from the session cookie instead."""
    return Scope(session=session, tenant_id=web.tenant_id)


DashScope = Annotated[Scope, Depends(dashboard_scope)]


def check_csrf(web: WebSession, presented: str | None) -> None:
    """Every state-changing form posts the session's token; a cross-site form cannot know it."""
    if not presented or not hmac.compare_digest(web.csrf, presented):
        raise CsrfError("the form's security token is missing or stale; reload the page and try again")
