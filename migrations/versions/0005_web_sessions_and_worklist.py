"""web: server-side sessions, worklist order indexes, trigram search on PostgreSQL

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRIORITY_RANK = "(CASE WHEN (priority = 'stat') THEN 0 ELSE 1 END)"
ACQUIRED = "coalesce(acquired_at, created_at)"
# app.services.worklist.SEARCH_TEXT spells the same expression.
SEARCH_TEXT = (
    "lower(accession_number || ' ' || dicom_patient_id || ' ' || "
    "dicom_patient_name || ' ' || study_description)"
)


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
    )
    op.create_index(op.f("ix_web_sessions_user_id"), "web_sessions", ["user_id"])
    op.create_index(
        "ix_studies_worklist_priority",
        "studies",
        [sa.text(PRIORITY_RANK), sa.text(ACQUIRED), "id"],
    )
    op.create_index("ix_studies_worklist_acquired", "studies", [sa.text(ACQUIRED), "id"])
    if op.get_bind().dialect.name == "postgresql":
        # pg_trgm is a trusted extension: the database owner may create it.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            f"CREATE INDEX ix_studies_search_trgm ON studies USING gin ({SEARCH_TEXT} gin_trgm_ops)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_studies_search_trgm")
    op.drop_index("ix_studies_worklist_acquired", table_name="studies")
    op.drop_index("ix_studies_worklist_priority", table_name="studies")
    op.drop_index(op.f("ix_web_sessions_user_id"), table_name="web_sessions")
    op.drop_table("web_sessions")
