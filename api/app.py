"""The FastAPI application factory: `uvicorn --factory api.app:create_app`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import Depends, FastAPI

from api import dashboard, errors
from api.deps import current_tenant
from api.limits import Admission, BodySizeLimit, InputGuard
from api.metrics import Metrics, MetricsMiddleware
from api.queue import Queue
from api.routes import audits, datasets, gate, health, keys, models
from occulta import __version__
from occulta.db import make_engine, make_session_factory
from occulta.db.migrate import check_schema
from occulta.settings import Settings, get_settings
from occulta.storage import get_store

log = logging.getLogger("occulta.api")
V1_ROUTERS = (models, datasets, audits, gate, keys)

DESCRIPTION = """Audit image classifiers for missingness bias, overinterpretation and spurious signals.

Every `/v1` route needs an API key: `Authorization: Bearer occ_...` or `X-API-Key: occ_...`.
Errors always have the body `{"error": {"code": "...", "message": "..."}}`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for one settings object. The schema is checked at startup: on an out-of-date
    database the process refuses to serve and says `run: occulta migrate`."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.database_url, **settings.engine_options())
    sessions = make_session_factory(engine)
    metrics = Metrics(sessions)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_schema(engine)
        # Sync routes run on these threads; the pool holds a connection for each (Settings.db_pool_size).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        app.state.queue.start_relay()  # sends the outbox rows a request could not (broker down)
        yield
        app.state.queue.close()
        engine.dispose()

    app = FastAPI(title="Occulta", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.store = get_store(settings)
    app.state.queue = Queue(settings, sessions)
    app.state.metrics = metrics
    errors.install(app)

    # Authentication is attached to every /v1 router here, so a new route cannot forget it.
    for module in V1_ROUTERS:
        app.include_router(module.router, prefix="/v1", dependencies=[Depends(current_tenant)])
    app.include_router(health.router)
    dashboard.install(app)
    # Outermost last: metrics see every final status, the boundary turns any exception into one,
    # admission is decided before a body is read, the size cap before the input guard reads a body.
    app.add_middleware(InputGuard, max_json_bytes=settings.max_json_bytes)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(
        Admission,
        max_active=settings.max_active_requests,
        max_waiting=settings.max_waiting_requests,
        max_wait=settings.max_wait_seconds,
        retry_after=settings.retry_after_seconds,
    )
    app.add_middleware(errors.ErrorBoundary)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
