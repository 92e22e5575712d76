"""One error body shape, `{"error": {"code", "message"}}`, and the one table from domain errors to HTTP."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from occulta import errors
from occulta.storage import InvalidKeyError

log = logging.getLogger("occulta.api")

# Most specific first; the first isinstance match wins.
STATUS_BY_ERROR: list[tuple[type[errors.OccultaError], int]] = [
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.TooLargeError, 413),
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
    503: "unavailable",
}


class AuthError(errors.OccultaError):
    code = "unauthorized"


def status_for(exc: errors.OccultaError) -> int:
    if isinstance(exc, AuthError):
        return 401
    return next(status for cls, status in STATUS_BY_ERROR if isinstance(exc, cls))


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


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


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.OccultaError)
    async def _domain(request: Request, exc: errors.OccultaError) -> JSONResponse:
        status = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = _validation_message(exc)
        return error_response(400 if code == "malformed_json" else 422, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = CODE_BY_STATUS.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error; the log has the details")
