"""Database layer: SQLAlchemy 2 models, engine factory and the Alembic schema check."""

from occulta.db.base import Base, make_engine, make_session_factory, new_id, utcnow
from occulta.db.models import (
    STATUSES,
    TERMINAL,
    ApiKey,
    ArtifactRecord,
    AuditJob,
    AuditResultRecord,
    AuditShardRecord,
    DatasetRecord,
    ModelRecord,
    OutboxMessage,
    Tenant,
)

__all__ = [
    "STATUSES",
    "TERMINAL",
    "ApiKey",
    "ArtifactRecord",
    "AuditJob",
    "AuditResultRecord",
    "AuditShardRecord",
    "Base",
    "DatasetRecord",
    "ModelRecord",
    "OutboxMessage",
    "Tenant",
    "make_engine",
    "make_session_factory",
    "new_id",
    "utcnow",
]
