"""dicom: instances.sha256 becomes content_digest, which names its algorithm

New rows hold ``blake3:<64 hex>`` (71 characters); rows written before keep
their bare SHA-256 hex, which dicom_node.digest reads as SHA-256.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIGEST_LENGTH = 80
SHA256_HEX_LENGTH = 64


def upgrade() -> None:
    _rename("sha256", "content_digest", SHA256_HEX_LENGTH, DIGEST_LENGTH)


def downgrade() -> None:
    # Only SHA-256 digests fit the old column; BLAKE3 rows cannot go back.
    named = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM instances WHERE content_digest LIKE '%:%'"))
        .scalar_one()
    )
    if named:
        raise RuntimeError(
            f"{named} instances hold BLAKE3 digests, which the sha256 column cannot hold"
        )
    _rename("content_digest", "sha256", DIGEST_LENGTH, SHA256_HEX_LENGTH)


def _rename(old: str, new: str, old_length: int, new_length: int) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite renames in place (3.25+) and does not enforce VARCHAR lengths; a batch
        # copy of the table would gain nothing.
        op.execute(f"ALTER TABLE instances RENAME COLUMN {old} TO {new}")
        return
    op.alter_column(
        "instances",
        old,
        new_column_name=new,
        existing_type=sa.String(length=old_length),
        type_=sa.String(length=new_length),
        existing_nullable=False,
    )
