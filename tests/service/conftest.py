"""Fixtures for the service tests: real PostgreSQL, Redis and S3 (see tests/fixtures/service.py)."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import occulta
from tests.fixtures.service import *  # noqa: F403
from tests.fixtures.service import prod_env, settings_from

# `occulta.cli` imports the `occulta audit` module from the foundation branch; until it is merged here an
# empty module stands in so the service commands can be tested (the gate tests do the same).
if not (Path(occulta.__file__).parent / "cli" / "audit.py").exists():
    sys.modules.setdefault("occulta.cli.audit", types.ModuleType("occulta.cli.audit"))


@pytest.fixture(scope="session")
def prod_settings(
    pg_migrated: str, redis_url: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
):
    env = prod_env(
        pg_url=pg_migrated,
        redis_url=redis_url,
        s3_endpoint=s3_endpoint,
        data_dir=tmp_path_factory.mktemp("prod-data"),
    )
    settings = settings_from(env)
    yield settings
    import redis

    redis.Redis.from_url(redis_url).delete(settings.queue)  # leave no test messages behind


@pytest.fixture(scope="session")
def app(prod_settings):  # type: ignore[no-untyped-def]
    from api.app import create_app

    return create_app(prod_settings)


@pytest.fixture(scope="session")
def client(app) -> Iterator:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def sessions(app):  # type: ignore[no-untyped-def]
    return app.state.sessions


@pytest.fixture(scope="session")
def store(app):  # type: ignore[no-untyped-def]
    return app.state.store


@dataclass
class Caller:
    tenant_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def _caller(sessions, name: str) -> Caller:  # type: ignore[no-untyped-def]
    import secrets

    from occulta.service.keys import create_tenant_key

    with sessions() as session:
        new = create_tenant_key(session, tenant=f"{name}-{secrets.token_hex(3)}")
    return Caller(new.tenant_id, new.key)


@pytest.fixture
def alice(sessions) -> Caller:  # type: ignore[no-untyped-def]
    return _caller(sessions, "alice")


@pytest.fixture
def bob(sessions) -> Caller:  # type: ignore[no-untyped-def]
    return _caller(sessions, "bob")


@pytest.fixture
def worker_resources(app, prod_settings):  # type: ignore[no-untyped-def]
    """The worker's per-process resources, bound to this test session's database and store (for
    running worker code in-process)."""
    import os

    from worker import base

    resources = base.Resources(prod_settings, app.state.engine, app.state.sessions, app.state.store)
    base._RESOURCES[os.getpid()] = resources
    yield resources
    base._RESOURCES.pop(os.getpid(), None)
