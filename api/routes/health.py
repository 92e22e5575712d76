"""/livez, /readyz and /metrics: unauthenticated, for probes and Prometheus."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.schemas import Health
from occulta.db.migrate import SchemaOutOfDateError, check_schema

router = APIRouter(tags=["health"])
log = logging.getLogger("occulta.api")


@router.get("/livez", response_model=Health, summary="The process is up")
def livez() -> Health:
    return Health(ok=True)


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health}},
    summary="Database at the migration head, broker and storage reachable",
)
def readyz(request: Request) -> JSONResponse:
    """Says which dependency is down, never how it is reached: the body is public, while the driver's
    error names hosts, ports and users. The details go to the log."""
    state = request.app.state
    checks: dict[str, str] = {}
    for name, check in (
        ("database", lambda: check_schema(state.engine)),
        ("broker", state.queue.check),
        ("storage", state.store.check),
    ):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:
            log.warning("readiness: %s is not ready: %s", name, exc)
            # Our own schema check says what to run; any other error may name hosts and ports.
            checks[name] = exc.message if isinstance(exc, SchemaOutOfDateError) else "unavailable"
    ok = all(v == "ok" for v in checks.values())
    headers = None if ok else {"Retry-After": str(state.settings.retry_after_seconds)}
    return JSONResponse(
        Health(ok=ok, checks=checks).model_dump(), status_code=200 if ok else 503, headers=headers
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
