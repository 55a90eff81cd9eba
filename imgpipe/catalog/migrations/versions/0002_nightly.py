"""Nightly runs: leases (one runner bakes a spec at a time), a spec's last nightly check
and whether it is disabled, what started a build, and the host an image file lives on.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("spec", sa.Column("nightly_checked_at", _WHEN, nullable=True))
    op.add_column("spec", sa.Column("disabled_at", _WHEN, nullable=True))
    op.add_column("spec", sa.Column("disabled_reason", sa.Text(), nullable=True))
    op.add_column("spec", sa.Column("nightly_failures", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("build", sa.Column("trigger", sa.String(16), nullable=False, server_default="bake"))
    op.add_column("artifact", sa.Column("host", sa.String(255), nullable=True))
    op.create_table(
        "lease",
        sa.Column("spec_name", sa.String(200), sa.ForeignKey("spec.name"), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("owner", sa.JSON(), nullable=False),
        sa.Column("acquired_at", _WHEN, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lease")
    with op.batch_alter_table("artifact") as batch:
        batch.drop_column("host")
    with op.batch_alter_table("build") as batch:
        batch.drop_column("trigger")
    with op.batch_alter_table("spec") as batch:
        for column in ("nightly_failures", "disabled_reason", "disabled_at", "nightly_checked_at"):
            batch.drop_column(column)
