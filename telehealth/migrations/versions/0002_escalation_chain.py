"""Escalation chain: chain snapshot and timetable on escalations, the roster, and alerts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("escalations") as batch:
        batch.add_column(sa.Column("chain", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("next_step", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_due_at", _utc(), nullable=True))
        batch.create_index(op.f("ix_escalations_next_due_at"), ["next_due_at"])

    op.create_table(
        "clinicians",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("sms_opted_out", sa.Boolean(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinicians")),
        sa.UniqueConstraint("phone", name=op.f("uq_clinicians_phone")),
    )
    op.create_table(
        "shifts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("clinician_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", _utc(), nullable=False),
        sa.Column("ends_at", _utc(), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(["clinician_id"], ["clinicians.id"], ondelete="CASCADE",
                                name=op.f("fk_shifts_clinician_id_clinicians")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shifts")),
    )
    op.create_index(op.f("ix_shifts_clinician_id"), "shifts", ["clinician_id"])
    op.create_index(op.f("ix_shifts_starts_at"), "shifts", ["starts_at"])
    op.create_index(op.f("ix_shifts_ends_at"), "shifts", ["ends_at"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("escalation_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(32), nullable=False),
        sa.Column("recipient_name", sa.String(128), nullable=False),
        sa.Column("clinician_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", sa.String(480), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("twilio_sid", sa.String(64), nullable=True),
        sa.Column("error_code", sa.String(16), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("claimed_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(["escalation_id"], ["escalations.id"],
                                name=op.f("fk_alerts_escalation_id_escalations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("escalation_id", "step", "recipient", "channel",
                            name=op.f("uq_alerts_escalation_id_step_recipient_channel")),
        sa.UniqueConstraint("twilio_sid", name=op.f("uq_alerts_twilio_sid")),
    )
    op.create_index(op.f("ix_alerts_escalation_id"), "alerts", ["escalation_id"])
    op.create_index(op.f("ix_alerts_status"), "alerts", ["status"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("shifts")
    op.drop_table("clinicians")
    with op.batch_alter_table("escalations") as batch:
        batch.drop_index(op.f("ix_escalations_next_due_at"))
        batch.drop_column("next_due_at")
        batch.drop_column("next_step")
        batch.drop_column("chain")
