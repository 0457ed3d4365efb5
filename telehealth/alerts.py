"""Alerts: one page (or notice) to one number on one channel for one step of an escalation.

Exactly once lives here, in the database: a unique key per (escalation, step, recipient,
channel), an atomic claim before anything is sent, and statuses that only move forward.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from telehealth.records import (
    Base, Escalation, EscalationEvent, EscalationStatus, Records, UTCDateTime,
)

NOTICE_STEP = -1  # notices ("case taken by ...") are not chain steps

# Twilio message and call statuses, and ours before Twilio has the page, in the order they happen.
# A status never moves back: a late `sent` callback cannot overwrite `delivered`.
STATUS_RANK = {
    "pending": 0, "claimed": 1,
    "accepted": 2, "scheduled": 2, "queued": 2, "initiated": 3, "sending": 3,
    "sent": 4, "ringing": 4, "in-progress": 5, "answered": 5,
    "delivered": 6, "read": 7, "completed": 7,
    "undelivered": 8, "failed": 8, "busy": 8, "no-answer": 8, "canceled": 8,
}
FAILED_STATUSES = {"undelivered", "failed", "busy", "no-answer", "canceled"}


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("escalation_id", "step", "recipient", "channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    recipient: Mapped[str] = mapped_column(String(32))
    recipient_name: Mapped[str] = mapped_column(String(128))
    clinician_id: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))  # page | notice
    body: Mapped[str] = mapped_column(String(480))
    status: Mapped[str] = mapped_column(String(16), index=True)
    twilio_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    error_code: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class Target:
    recipient: str
    name: str
    channel: str
    clinician_id: int | None = None


@dataclass(frozen=True)
class Claim:
    alert: dict[str, Any]
    reclaimed: bool  # a previous sender died after claiming: check Twilio before sending again


class Alerts:
    def __init__(self, records: Records) -> None:
        self.records = records

    def claim_step(self, escalation_id: int, step: int, next_step: int, next_due_at: datetime | None,
                   now: datetime, targets: list[Target], body: str, *, finished: bool = False) -> list[int] | None:
        """Atomically take step `step` and create its alerts; None if another process took it."""
        with self.records.transaction() as session:
            values: dict[str, Any] = {"next_step": next_step, "next_due_at": next_due_at}
            if finished:
                values["status"] = EscalationStatus.UNACKNOWLEDGED.value
            taken = session.execute(
                update(Escalation)
                .where(Escalation.id == escalation_id, Escalation.next_step == step,
                       Escalation.status == EscalationStatus.PENDING.value, Escalation.next_due_at <= now)
                .values(**values)
            ).rowcount
            if taken != 1:
                return None
            ids = [self._add(session, escalation_id, step, t, body, "page", now) for t in targets]
            return ids

    def add_notices(self, escalation_id: int, targets: list[Target], body: str, now: datetime) -> list[int]:
        ids = []
        for target in targets:
            try:
                with self.records.transaction() as session:
                    ids.append(self._add(session, escalation_id, NOTICE_STEP, target, body, "notice", now))
            except IntegrityError:
                pass  # already told
        return ids

    def add_fallback(self, escalation_id: int, step: int, target: Target, body: str, now: datetime) -> int | None:
        try:
            with self.records.transaction() as session:
                return self._add(session, escalation_id, step, target, body, "page", now)
        except IntegrityError:
            return None

    @staticmethod
    def _add(session: Any, escalation_id: int, step: int, target: Target, body: str, kind: str,
             now: datetime) -> int:
        alert = Alert(escalation_id=escalation_id, step=step, recipient=target.recipient,
                      recipient_name=target.name, clinician_id=target.clinician_id, channel=target.channel,
                      kind=kind, body=body, status="pending", attempts=0, created_at=now, updated_at=now)
        session.add(alert)
        session.flush()
        return alert.id

    def claim(self, alert_id: int, now: datetime, stale_after: timedelta) -> Claim | None:
        """Take an alert to send it. A claim older than `stale_after` means its sender died."""
        with self.records.transaction() as session:
            alert = session.get(Alert, alert_id)
            if alert is None:
                return None
            reclaimed = alert.status == "claimed" and alert.claimed_at is not None \
                and alert.claimed_at <= now - stale_after
            if alert.status != "pending" and not reclaimed:
                return None
            taken = session.execute(
                update(Alert).where(Alert.id == alert_id, Alert.status == alert.status,
                                    Alert.attempts == alert.attempts)
                .values(status="claimed", claimed_at=now, attempts=alert.attempts + 1, updated_at=now)
            ).rowcount
            if taken != 1:
                return None
            session.refresh(alert)
            return Claim(_alert_dict(alert), reclaimed)

    def release(self, alert_id: int, now: datetime) -> None:
        """A transient failure: let a retry claim it again."""
        with self.records.transaction() as session:
            session.execute(update(Alert).where(Alert.id == alert_id, Alert.status == "claimed")
                            .values(status="pending", updated_at=now))

    def mark(self, alert_id: int, status: str, now: datetime, *, sid: str | None = None,
             error_code: str | None = None) -> bool:
        """Move an alert's status forward; False (no change) if that would move it back.

        One conditional UPDATE, so two callbacks racing cannot move a status back. The carrier's
        id is kept even when a status callback overtook the sender's own "queued".
        """
        rank = STATUS_RANK.get(status)
        with self.records.transaction() as session:
            if sid is not None:
                session.execute(update(Alert).where(Alert.id == alert_id, Alert.twilio_sid.is_(None))
                                .values(twilio_sid=sid))
            if rank is None:
                return False
            values: dict[str, Any] = {"status": status, "updated_at": now}
            if error_code is not None:
                values["error_code"] = error_code
            behind = [name for name, r in STATUS_RANK.items() if r < rank]
            return session.execute(
                update(Alert).where(Alert.id == alert_id, Alert.status.in_(behind)).values(**values)
            ).rowcount == 1

    def owns_sid(self, sid: str, *, other_than: int) -> bool:
        """Whether another alert already holds this carrier id."""
        with self.records.transaction() as session:
            return session.scalar(select(Alert.id).where(Alert.twilio_sid == sid, Alert.id != other_than)) is not None

    def get(self, alert_id: int) -> dict[str, Any] | None:
        with self.records.transaction() as session:
            alert = session.get(Alert, alert_id)
            return None if alert is None else _alert_dict(alert)

    def for_escalation(self, escalation_id: int) -> list[dict[str, Any]]:
        with self.records.transaction() as session:
            rows = session.scalars(select(Alert).where(Alert.escalation_id == escalation_id).order_by(Alert.id))
            return [_alert_dict(a) for a in rows]

    def stuck(self, now: datetime, *, pending_for: timedelta, claimed_for: timedelta) -> list[int]:
        """Alerts nobody is sending: created but never queued, or claimed by a sender that died."""
        with self.records.transaction() as session:
            return list(session.scalars(select(Alert.id).where(
                ((Alert.status == "pending") & (Alert.updated_at <= now - pending_for))
                | ((Alert.status == "claimed") & (Alert.claimed_at <= now - claimed_for))
            ).order_by(Alert.id)))

    def open_cases_for(self, phone: str) -> list[dict[str, Any]]:
        """Escalations that paged this number, newest first (for 'reply 1' with no case code)."""
        # IN (subquery) rather than DISTINCT: PostgreSQL cannot compare the JSON chain column.
        paged = select(Alert.escalation_id).where(Alert.recipient == phone, Alert.kind == "page")
        query = (
            select(Escalation).where(Escalation.id.in_(paged))
            .order_by(Escalation.created_at.desc(), Escalation.id.desc())
        )
        with self.records.transaction() as session:
            return [{"id": e.id, "status": e.status, "acknowledged_by": e.acknowledged_by}
                    for e in session.scalars(query)]

    def due_escalations(self, now: datetime) -> list[int]:
        with self.records.transaction() as session:
            return list(session.scalars(select(Escalation.id).where(
                Escalation.status == EscalationStatus.PENDING.value, Escalation.next_due_at <= now,
            ).order_by(Escalation.next_due_at)))

    def acknowledge(self, escalation_id: int, by: str, now: datetime) -> bool:
        """True if this call took the case; False if it was already taken or cancelled."""
        with self.records.transaction() as session:
            taken = session.execute(
                update(Escalation).where(
                    Escalation.id == escalation_id,
                    Escalation.status.in_([EscalationStatus.PENDING.value, EscalationStatus.UNACKNOWLEDGED.value]),
                ).values(status=EscalationStatus.ACKNOWLEDGED.value, acknowledged_by=by,
                         acknowledged_at=now, next_due_at=None)
            ).rowcount
            if taken == 1:
                session.add(EscalationEvent(escalation_id=escalation_id, at=now, kind="acknowledged",
                                            detail={"by": by}))
            return taken == 1

    def hurry(self, escalation_id: int, after_step: int, now: datetime) -> bool:
        """A page of `after_step` failed: make the next step due now, if it has not run yet."""
        with self.records.transaction() as session:
            return session.execute(
                update(Escalation).where(
                    Escalation.id == escalation_id, Escalation.next_step == after_step + 1,
                    Escalation.status == EscalationStatus.PENDING.value,
                ).values(next_due_at=now)
            ).rowcount == 1


def _alert_dict(a: Alert) -> dict[str, Any]:
    return {"id": a.id, "escalation_id": a.escalation_id, "step": a.step, "recipient": a.recipient,
            "recipient_name": a.recipient_name, "clinician_id": a.clinician_id, "channel": a.channel,
            "kind": a.kind, "body": a.body, "status": a.status, "twilio_sid": a.twilio_sid,
            "error_code": a.error_code, "attempts": a.attempts, "created_at": a.created_at.isoformat(),
            "updated_at": a.updated_at.isoformat(),
            "claimed_at": a.claimed_at.isoformat() if a.claimed_at else None}
