"""Initial schema: conversations, turns, escalations, escalation events, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Names are spelled out (op.f marks them final) and match the naming convention in
telehealth.records.Base, so create_all and this migration build the same schema.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    # Models use records.UTCDateTime, which is stored as this type.
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("disposition", sa.String(16), nullable=True),
        sa.Column("rule", sa.String(128), nullable=True),
        sa.Column("red_flags", sa.JSON(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("protocol_version", sa.String(64), nullable=False),
        sa.Column("call_sid", sa.String(64), nullable=True),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("last_activity_at", _utc(), nullable=False),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.Column("end_reason", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
        sa.UniqueConstraint("call_sid", name=op.f("uq_conversations_call_sid")),
        sa.CheckConstraint("channel IN ('sms', 'voice')", name=op.f("ck_conversations_channel")),
        sa.CheckConstraint(
            "status IN ('active', 'completed', 'abandoned', 'opted_out')",
            name=op.f("ck_conversations_status"),
        ),
        sa.CheckConstraint(
            "disposition IN ('emergency', 'urgent', 'routine')",
            name=op.f("ck_conversations_disposition"),
        ),
    )
    op.create_index(op.f("ix_conversations_phone"), "conversations", ["phone"])

    op.create_table(
        "turns",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("twilio_sid", sa.String(128), nullable=True),
        sa.Column("in_reply_to", sa.String(128), nullable=True),
        sa.Column("question_id", sa.String(128), nullable=True),
        sa.Column("digits", sa.Text(), nullable=True),
        sa.Column("speech", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_turns")),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversations.id"],
            name=op.f("fk_turns_conversation_id_conversations"),
        ),
        # NULL sids never collide, so only webhook-delivered turns are deduplicated.
        sa.UniqueConstraint("direction", "twilio_sid", name=op.f("uq_turns_direction_twilio_sid")),
        sa.CheckConstraint("direction IN ('in', 'out')", name=op.f("ck_turns_direction")),
    )
    op.create_index(op.f("ix_turns_conversation_id"), "turns", ["conversation_id"])
    op.create_index(op.f("ix_turns_in_reply_to"), "turns", ["in_reply_to"])

    op.create_table(
        "escalations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("acknowledged_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalations")),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversations.id"],
            name=op.f("fk_escalations_conversation_id_conversations"),
        ),
        # One escalation per conversation: the idempotency key for create_escalation.
        sa.UniqueConstraint("conversation_id", name=op.f("uq_escalations_conversation_id")),
        sa.CheckConstraint("level IN ('emergency', 'urgent')", name=op.f("ck_escalations_level")),
        sa.CheckConstraint(
            "status IN ('pending', 'acknowledged', 'unacknowledged', 'cancelled')",
            name=op.f("ck_escalations_status"),
        ),
    )

    op.create_table(
        "escalation_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("escalation_id", sa.Integer(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_events")),
        sa.ForeignKeyConstraint(
            ["escalation_id"], ["escalations.id"],
            name=op.f("fk_escalation_events_escalation_id_escalations"),
        ),
    )
    op.create_index(
        op.f("ix_escalation_events_escalation_id"), "escalation_events", ["escalation_id"]
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("target", sa.String(255), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_index(op.f("ix_escalation_events_escalation_id"), table_name=op.f("escalation_events"))
    op.drop_table("escalation_events")
    op.drop_table("escalations")
    op.drop_index(op.f("ix_turns_in_reply_to"), table_name=op.f("turns"))
    op.drop_index(op.f("ix_turns_conversation_id"), table_name=op.f("turns"))
    op.drop_table("turns")
    op.drop_index(op.f("ix_conversations_phone"), table_name=op.f("conversations"))
    op.drop_table("conversations")
