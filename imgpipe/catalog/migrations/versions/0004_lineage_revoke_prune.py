"""An image's life after the bake: the parent image a target was built from, a build's
revocation, the deprecation of its AMIs, its pruning, and the journal of a prune.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("build", sa.Column("revoked_at", _WHEN, nullable=True))
    op.add_column("build", sa.Column("revoked_reason", sa.Text(), nullable=True))
    op.add_column("build", sa.Column("revoked_by", sa.String(255), nullable=True))
    op.add_column("build", sa.Column("deprecated_at", _WHEN, nullable=True))
    op.add_column("build", sa.Column("pruned_at", _WHEN, nullable=True))
    op.add_column("build", sa.Column("pruning", sa.JSON(), nullable=True))
    op.add_column("target_build", sa.Column("parent_build_id", sa.String(64), nullable=True))
    op.add_column("target_build", sa.Column("parent_target", sa.String(200), nullable=True))
    op.add_column("target_build", sa.Column("parent_ref", sa.Text(), nullable=True))
    op.create_index("ix_target_build_parent", "target_build", ["parent_build_id"])


def downgrade() -> None:
    op.drop_index("ix_target_build_parent", "target_build")
    with op.batch_alter_table("target_build") as batch:
        for column in ("parent_ref", "parent_target", "parent_build_id"):
            batch.drop_column(column)
    with op.batch_alter_table("build") as batch:
        for column in ("pruning", "pruned_at", "deprecated_at", "revoked_by", "revoked_reason", "revoked_at"):
            batch.drop_column(column)
