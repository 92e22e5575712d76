"""Alembic driven from code, so `occulta migrate` works from any directory and the API can refuse to
serve on an out-of-date schema (MLflow does the same and names the command that fixes it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from occulta.errors import OccultaError

FIX = "run: occulta migrate"


class SchemaOutOfDateError(OccultaError):
    """The database is not at the migration head; the message says what to run."""

    code = "schema_out_of_date"


def migrations_dir() -> Path:
    spec = importlib.util.find_spec("migrations")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the `migrations` package is not installed next to `occulta`")
    return Path(next(iter(spec.submodule_search_locations)))


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # `%` is ConfigParser interpolation; URLs with encoded passwords contain it.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def head_revision(database_url: str = "sqlite://") -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Raise `SchemaOutOfDateError` unless the database is exactly at the head revision."""
    head = head_revision()
    current = current_revision(engine)
    if current != head:
        where = "empty (no tables)" if current is None else f"at revision {current}"
        raise SchemaOutOfDateError(
            f"database schema is out of date: it is {where}, the code needs {head}; {FIX}"
        )
