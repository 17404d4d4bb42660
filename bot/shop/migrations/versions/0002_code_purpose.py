"""verification codes say what they are for (binding a channel, a password reset)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("verification_codes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("purpose", sa.String(length=20), nullable=False, server_default="bind")
        )
        batch_op.create_check_constraint(
            "ck_purpose_known", "purpose IN ('bind', 'password_reset')"
        )


def downgrade() -> None:
    with op.batch_alter_table("verification_codes", schema=None) as batch_op:
        batch_op.drop_constraint("ck_purpose_known", type_="check")
        batch_op.drop_column("purpose")
