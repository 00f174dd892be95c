"""dicom node: index for the series-ready scan

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("series") as batch:
        batch.create_index("ix_series_state_last_instance_at", ["state", "last_instance_at"])


def downgrade() -> None:
    with op.batch_alter_table("series") as batch:
        batch.drop_index("ix_series_state_last_instance_at")
