"""fair dispatch: an audit's priority (interactive first) and when the dispatcher released it

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 00:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    # Audits queued before the upgrade already had their message sent: they count as dispatched.
    op.execute("UPDATE audits SET dispatched_at = COALESCE(heartbeat_at, created_at)")
    op.create_index("ix_audits_dispatch", "audits", ["status", "dispatched_at", "tenant_id"], unique=False)
    op.create_index("ix_audits_tenant_dispatched", "audits", ["tenant_id", "dispatched_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audits_tenant_dispatched", table_name="audits")
    op.drop_index("ix_audits_dispatch", table_name="audits")
    with op.batch_alter_table("audits") as batch:
        batch.drop_column("dispatched_at")
        batch.drop_column("priority")
