"""Prometheus metrics: request counts and latency by route template, and audits by status (read from
the database at scrape time, so every API replica reports the same truth)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from occulta.db import AuditJob
from occulta.db.models import STATUSES

log = logging.getLogger("occulta.api")


class AuditStatusCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        """Without the database the gauge is left out of the scrape: the request metrics still count."""
        gauge = GaugeMetricFamily("occulta_audits", "Audit jobs by status", labels=["status"])
        try:
            with self.sessions() as session:
                query = select(AuditJob.status, func.count()).group_by(AuditJob.status)
                rows = session.execute(query).all()
        except SQLAlchemyError as exc:
            log.warning("metrics: audit counts unavailable: %s", exc)
            return
        counts = {status: int(n) for status, n in rows}
        for status in STATUSES:
            gauge.add_metric([status], counts.get(status, 0))
        yield gauge


class Metrics:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "occulta_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "occulta_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(AuditStatusCollector(sessions))


def route_template(scope: Scope) -> str:
    """`/v1/audits/{audit_id}` for `/v1/audits/aud_123`. Rebuilt from the path params because a route
    included through a prefixed router reports its path without the prefix."""
    if scope.get("route") is None:
        return "unmatched"
    path: str = scope["path"]
    for name, value in (scope.get("path_params") or {}).items():
        head, sep, tail = path.rpartition(f"/{value}")
        if sep:
            path = f"{head}/{{{name}}}{tail}"
    return path


class MetricsMiddleware:
    """Labels by route template (`/v1/audits/{audit_id}`), never the raw path: ids would explode the
    label cardinality."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = route_template(scope)
            self.metrics.requests.labels(scope["method"], template, str(status)).inc()
            self.metrics.latency.labels(scope["method"], template).observe(time.perf_counter() - start)
