"""Typed dependencies (full-stack-fastapi-template style). Authentication and tenant scoping live here
and nowhere else: every /v1 route gets the caller's tenant from `TenantDep`, and `Scope.get` turns
another tenant's row into a 404.

Connections are held only while a thread works with them: authentication uses its own short session,
and the route's session is closed as soon as the route returns (`scope="function"`), not after the
response is sent. A request waiting for a thread therefore never sits on a pooled connection, so a
pool as large as the thread pool always suffices, however many clients queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from api.errors import AuthError
from api.queue import Queue
from occulta.service import keys
from occulta.service.scope import Owned, get_owned
from occulta.settings import Settings
from occulta.storage import ObjectStore

T = TypeVar("T", bound=Owned)

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer occ_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: occ_...`")


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session for the route; opening one does no I/O, so it takes no thread. Closing returns the
    connection (a round trip), so it runs in a thread of its own rather than on the event loop."""
    factory: sessionmaker[Session] = request.app.state.sessions
    session = factory()
    try:
        yield session
    finally:
        await anyio.to_thread.run_sync(session.close, limiter=anyio.CapacityLimiter(1))


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> ObjectStore:
    store: ObjectStore = request.app.state.store
    return store


def get_queue(request: Request) -> Queue:
    queue: Queue = request.app.state.queue
    return queue


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
QueueDep = Annotated[Queue, Depends(get_queue)]


def current_tenant(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_header)],
) -> str:
    presented = bearer.credentials if bearer is not None else header_key
    if not presented:
        raise AuthError("missing API key: send `Authorization: Bearer occ_...` or `X-API-Key: occ_...`")
    factory: sessionmaker[Session] = request.app.state.sessions
    with factory() as session:
        tenant_id = keys.authenticate(session, presented)
    if tenant_id is None:
        raise AuthError("unknown or revoked API key")
    return tenant_id


TenantDep = Annotated[str, Depends(current_tenant)]


@dataclass
class Scope:
    """The caller's tenant and session; `get` is the one place rows are fetched by id for a caller."""

    session: Session
    tenant_id: str

    def get(self, cls: type[T], obj_id: str, what: str) -> T:
        return get_owned(self.session, cls, obj_id, tenant_id=self.tenant_id, what=what)


async def get_scope(session: SessionDep, tenant_id: TenantDep) -> Scope:
    return Scope(session=session, tenant_id=tenant_id)


ScopeDep = Annotated[Scope, Depends(get_scope)]
