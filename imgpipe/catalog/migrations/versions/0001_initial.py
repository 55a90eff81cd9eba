"""The first catalog: its HMAC key, specs and who owns each name, builds, their targets
and the artifacts they made.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    key = op.create_table(
        "catalog_key",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
    )
    # Created once, with the schema, so every runner sharing the catalog reads the same key.
    op.bulk_insert(
        key,
        [{"id": 1, "key": secrets.token_bytes(32), "created_at": _now(op.get_bind().dialect.name)}],
    )
    op.create_table(
        "spec",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("claimed_at", _WHEN, nullable=False),
    )
    op.create_table(
        "build",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("spec_name", sa.String(200), sa.ForeignKey("spec.name"), nullable=False),
        sa.Column("spec_path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("target_names", sa.JSON(), nullable=False),
        sa.Column("imgpipe_version", sa.String(64), nullable=False),
        sa.Column("ansible_core", sa.String(64), nullable=False),
        sa.Column("owner_host", sa.String(255), nullable=False),
        sa.Column("owner_pid", sa.Integer(), nullable=False),
        sa.Column("owner_pid_start", sa.String(32), nullable=True),
        sa.Column("owner_boot", sa.String(64), nullable=False),
        sa.Column("owner_pidns", sa.String(64), nullable=False),
        sa.Column("owner_machine", sa.String(64), nullable=False),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN, nullable=True),
    )
    op.create_index("ix_build_spec_started", "build", ["spec_name", "started_at"])
    op.create_index("ix_build_status", "build", ["status"])
    op.create_table(
        "target_build",
        sa.Column("build_id", sa.String(64), sa.ForeignKey("build.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("target", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=True),
        sa.Column("fingerprint_parts", sa.JSON(), nullable=False),
        sa.Column("publish_fingerprint", sa.String(128), nullable=True),
        sa.Column("artifact_id", sa.Text(), nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("finished_at", _WHEN, nullable=True),
    )
    op.create_index("ix_target_build_fingerprint", "target_build", ["target", "fingerprint"])
    op.create_table(
        "artifact",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("build_id", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("region", sa.String(64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["build_id", "target"], ["target_build.build_id", "target_build.target"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_artifact_kind_ref", "artifact", ["kind", "ref"])


def downgrade() -> None:
    for table in ("artifact", "target_build", "build", "spec", "catalog_key"):
        op.drop_table(table)


def _now(dialect: str) -> datetime:
    now = datetime.now(UTC)
    return now.replace(tzinfo=None) if dialect == "sqlite" else now  # as models.UTCDateTime stores it
