"""One error body shape, `{"error": {"code", "message"}}`, and the one table from errors to HTTP.

Every exception becomes such a response, inside the app: nothing reaches Starlette's last-resort
handler, which re-raises to the server, and the server then drops the client's keep-alive connection
so its next request is reset. A database that cannot be reached is a 503 with `Retry-After` (the
client should come back), never a 500; a value the database refuses is the client's 422; no message
carries a server path.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from occulta import errors
from occulta.storage import InvalidKeyError

log = logging.getLogger("occulta.api")

# Most specific first; the first isinstance match wins.
STATUS_BY_ERROR: list[tuple[type[errors.OccultaError], int]] = [
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.TooLargeError, 413),
    (errors.RateLimitedError, 429),
    (errors.CardError, 422),
    (errors.WeightsError, 422),
    (errors.DatasetError, 422),
    (errors.AuditConfigError, 422),
    (errors.PolicyError, 422),
    (InvalidKeyError, 400),
    (errors.ServiceError, 503),
    (errors.OccultaError, 400),
]

CODE_BY_STATUS = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}

# The database could not be reached or could not answer in time: the request may succeed later.
UNAVAILABLE_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)

# An absolute path under a server directory; clients see only its last part.
_SERVER_PATH = re.compile(
    r"(?<![\w/:.])/(?:tmp|var|home|root|usr|opt|srv|app|work|mnt|etc|proc|data|private|run)"
    r"(?:/[^\s'\"(),;:]*)?"
)


class AuthError(errors.OccultaError):
    code = "unauthorized"


def status_for(exc: errors.OccultaError) -> int:
    if isinstance(exc, AuthError):
        return 401
    return next(status for cls, status in STATUS_BY_ERROR if isinstance(exc, cls))


def scrub(message: str) -> str:
    """`/tmp/occulta-upload-x1/weights.pt` -> `weights.pt`: a message never maps the server's disk."""
    return _SERVER_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1] or "<path>", message)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": scrub(message)}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def retry_after(app: Any) -> dict[str, str]:
    settings = getattr(getattr(app, "state", None), "settings", None)
    return {"Retry-After": str(getattr(settings, "retry_after_seconds", 5))}


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    errs = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errs):
        detail = next(e for e in errs if e.get("type") == "json_invalid")
        where = detail.get("ctx", {}).get("error", "")
        return "malformed_json", f"the request body is not valid JSON{': ' + str(where) if where else ''}"
    parts = []
    for e in errs[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg')}")
    return "invalid_request", "; ".join(parts)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: Any, scope: Scope) -> list[str]:
    """Every method some route serves at this path (the router names only its first candidate's),
    found by asking the router itself, method by method."""
    allowed = []
    for method in HTTP_METHODS:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


def response_for(app: Any, scope: Scope, exc: BaseException) -> JSONResponse:
    """The one mapping from any exception to an error response."""
    if isinstance(exc, errors.OccultaError):
        status = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if status == 503:
            headers = retry_after(app)
        if isinstance(exc, errors.RateLimitedError):
            headers = {"Retry-After": str(exc.retry_after)}
        return error_response(status, exc.code, exc.message, headers)
    if isinstance(exc, RequestValidationError):
        code, message = _validation_message(exc)
        return error_response(400 if code == "malformed_json" else 422, code, message)
    if isinstance(exc, StarletteHTTPException):
        code = CODE_BY_STATUS.get(exc.status_code, f"http_{exc.status_code}")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(app, scope))
        return error_response(exc.status_code, code, str(exc.detail), headers or None)
    if isinstance(exc, UNAVAILABLE_ERRORS):
        log.warning("database unavailable on %s %s: %s", scope.get("method"), scope.get("path"), exc)
        return error_response(
            503, "database_unavailable", "the database is not reachable; retry later", retry_after(app)
        )
    if isinstance(exc, sa_exc.DataError):
        # The database refused a value (an integer past its column, a NUL in text): the caller's input.
        return error_response(
            422, "invalid_request", "a value is out of range or contains a character that cannot be stored"
        )
    if isinstance(exc, RecursionError):
        return error_response(422, "invalid_request", "the input is nested too deeply")
    if isinstance(exc, UnicodeError):
        return error_response(400, "invalid_request", "the input is not valid UTF-8 text")
    log.error("unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
    return error_response(500, "internal_error", "internal server error; the log has the details")


class ErrorBoundary:
    """Turns any exception that escaped the routes and the inner middleware into its error response,
    so the server never sees an exception and keeps the connection alive. An exception after the
    response started can only be logged: the client sees a cut-off body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                log.error("error after the response started on %s", scope.get("path"), exc_info=exc)
                return
            await response_for(scope.get("app"), scope, exc)(scope, receive, send)


def install(app: FastAPI) -> None:
    """Route-level handlers (these run inside FastAPI's dependency cleanup) and the boundary."""

    async def _handle(request: Request, exc: Exception) -> JSONResponse:
        return response_for(request.app, request.scope, exc)

    for cls in (
        errors.OccultaError,
        RequestValidationError,
        StarletteHTTPException,
        sa_exc.SQLAlchemyError,
        RecursionError,
        UnicodeError,
    ):
        app.add_exception_handler(cls, _handle)
