"""dicom: instances keep what series selection needs of their header

``selection_attributes`` holds dicom_node.selection.SliceSummary's record as
JSON text, written when the instance is indexed, so ranking a ready series reads rows
instead of every file's header.  Rows from before stay NULL; selection reads
their files as it did.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("instances", sa.Column("selection_attributes", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("selection_attributes")
