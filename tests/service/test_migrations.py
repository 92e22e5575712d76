"""Alembic is the only way the schema changes: migrations and models agree, and the API refuses to
serve on an out-of-date database."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from occulta.db import Base, make_engine
from occulta.db.migrate import SchemaOutOfDateError, check_schema, upgrade

pytestmark = pytest.mark.service


def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
    finally:
        engine.dispose()


def test_upgrade_head_on_postgres_matches_the_models(pg_migrated: str) -> None:
    assert _diff(pg_migrated) == []
    check_schema(make_engine(pg_migrated))


def test_upgrade_head_on_sqlite_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    upgrade(url)
    upgrade(url)  # idempotent
    assert _diff(url) == []


def test_api_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from occulta.settings import Settings

    app = create_app(Settings(data_dir=tmp_path))
    with pytest.raises(SchemaOutOfDateError, match="run: occulta migrate"), TestClient(app):
        pass


def test_readyz_reports_an_out_of_date_schema(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from occulta.settings import Settings

    settings = Settings(data_dir=tmp_path)
    app = create_app(settings)
    client = TestClient(app)  # without lifespan: the startup check is skipped, /readyz must still say no
    r = client.get("/readyz")
    assert r.status_code == 503
    assert "occulta migrate" in r.json()["checks"]["database"]
    upgrade(settings.database_url)
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True
