"""handoffs to people, agents' private notes, customers' ratings

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "handoffs",
        sa.Column("id", _ID, nullable=False),
        sa.Column("conversation_id", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("group_name", sa.String(length=30), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("topic_intent", sa.String(length=60), nullable=True),
        sa.Column("state", sa.String(length=14), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(length=60), nullable=True),
        sa.Column("transfers", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.String(length=14), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'with_agent', 'closed', 'cancelled', 'message_left')",
            name="ck_state_known",
        ),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_handoffs_conversation", "handoffs", ["conversation_id", "requested_at"])
    op.create_index("ix_handoffs_customer", "handoffs", ["customer_id", "requested_at"])
    op.create_index("ix_handoffs_state", "handoffs", ["state"])
    op.create_table(
        "handoff_notes",
        sa.Column("id", _ID, nullable=False),
        sa.Column("handoff_id", _ID, nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["handoff_id"], ["handoffs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_notes_handoff", "handoff_notes", ["handoff_id"])
    op.create_table(
        "ratings",
        sa.Column("id", _ID, nullable=False),
        sa.Column("conversation_id", sa.String(length=200), nullable=False),
        sa.Column("handoff_id", _ID, nullable=True),
        sa.Column("solved", sa.Integer(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("score IS NULL OR (score BETWEEN 1 AND 5)", name="ck_score_range"),
        sa.ForeignKeyConstraint(["handoff_id"], ["handoffs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ratings_conversation", "ratings", ["conversation_id", "created_at"])
    op.create_index("ix_ratings_handoff", "ratings", ["handoff_id"])


def downgrade() -> None:
    op.drop_table("ratings")
    op.drop_table("handoff_notes")
    op.drop_table("handoffs")
