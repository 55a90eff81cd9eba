"""Channels: named pointers at builds (`latest`, `stable`, ...), the journal of a move in
progress, and every move's history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "channel",
        sa.Column("spec_name", sa.String(200), sa.ForeignKey("spec.name"), primary_key=True),
        sa.Column("channel", sa.String(64), primary_key=True),
        sa.Column("build_id", sa.String(64), nullable=True),
        sa.Column("moved_at", _WHEN, nullable=True),
        sa.Column("places", sa.JSON(), nullable=False),
        sa.Column("pending", sa.JSON(), nullable=True),
    )
    op.create_table(
        "channel_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("spec_name", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("from_build", sa.String(64), nullable=True),
        sa.Column("to_build", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("moved_by", sa.String(255), nullable=False),
        sa.Column("moved_at", _WHEN, nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_channel_history_channel", "channel_history", ["spec_name", "channel", "moved_at"])


def downgrade() -> None:
    op.drop_index("ix_channel_history_channel", "channel_history")
    op.drop_table("channel_history")
    op.drop_table("channel")
