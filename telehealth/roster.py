"""The on-call roster: clinicians and their shifts, and who is on call at a given moment."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Iterable

from sqlalchemy import Boolean, ForeignKey, Integer, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from telehealth.records import Base, Records, UTCDateTime, as_utc, utcnow


class Tier(str, Enum):
    PRIMARY = "primary"
    BACKUP = "backup"


class Clinician(Base):
    __tablename__ = "clinicians"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(32), unique=True)
    # Set when Twilio reports the number has opted out of SMS (error 21610): page by voice.
    sms_opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Shift(Base):
    __tablename__ = "shifts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clinician_id: Mapped[int] = mapped_column(ForeignKey("clinicians.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    tier: Mapped[str] = mapped_column(String(16))


@dataclass(frozen=True)
class OnCall:
    clinician_id: int | None
    name: str
    phone: str
    sms_opted_out: bool = False


class RosterError(ValueError):
    """A roster change that makes no sense (unknown clinician, a shift that ends before it starts)."""


class Roster:
    def __init__(self, records: Records) -> None:
        self.records = records

    def add_clinician(self, *, name: str, role: str, phone: str) -> int:
        with self.records.transaction() as session:
            if session.scalar(select(Clinician.id).where(Clinician.phone == phone)) is not None:
                raise RosterError(f"a clinician with number {phone} is already on the roster")
            clinician = Clinician(name=name, role=role, phone=phone, created_at=utcnow())
            session.add(clinician)
            session.flush()
            return clinician.id

    def add_shift(self, clinician_id: int, *, starts_at: datetime, ends_at: datetime, tier: str) -> int:
        starts_at, ends_at = as_utc(starts_at), as_utc(ends_at)
        if ends_at <= starts_at:
            raise RosterError("a shift must end after it starts")
        with self.records.transaction() as session:
            if session.get(Clinician, clinician_id) is None:
                raise RosterError(f"no clinician {clinician_id}")
            shift = Shift(clinician_id=clinician_id, starts_at=starts_at, ends_at=ends_at,
                          tier=Tier(tier).value)
            session.add(shift)
            session.flush()
            return shift.id

    def remove_clinician(self, clinician_id: int) -> None:
        with self.records.transaction() as session:
            if session.get(Clinician, clinician_id) is None:
                raise RosterError(f"no clinician {clinician_id}")
            session.execute(delete(Shift).where(Shift.clinician_id == clinician_id))
            session.execute(delete(Clinician).where(Clinician.id == clinician_id))

    def remove_shift(self, shift_id: int) -> None:
        with self.records.transaction() as session:
            session.execute(delete(Shift).where(Shift.id == shift_id))

    def clinicians(self) -> list[dict[str, Any]]:
        with self.records.transaction() as session:
            rows = session.scalars(select(Clinician).order_by(Clinician.name, Clinician.id)).all()
            return [_clinician_dict(c) for c in rows]

    def shifts(self, *, ending_after: datetime | None = None) -> list[dict[str, Any]]:
        query = select(Shift, Clinician).join(Clinician, Shift.clinician_id == Clinician.id)
        if ending_after is not None:
            query = query.where(Shift.ends_at > as_utc(ending_after))
        with self.records.transaction() as session:
            return [
                {"id": s.id, "clinician_id": c.id, "name": c.name, "phone": c.phone, "tier": s.tier,
                 "starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat()}
                for s, c in session.execute(query.order_by(Shift.starts_at, Shift.id)).all()
            ]

    def clinician_by_phone(self, phone: str) -> dict[str, Any] | None:
        with self.records.transaction() as session:
            found = session.scalar(select(Clinician).where(Clinician.phone == phone))
            return None if found is None else _clinician_dict(found)

    def on_call(self, tier: str, at: datetime) -> list[OnCall]:
        """Everyone on a shift of this tier at `at`, earliest shift first."""
        at = as_utc(at)
        query = (
            select(Clinician).join(Shift, Shift.clinician_id == Clinician.id)
            .where(Shift.tier == Tier(tier).value, Shift.starts_at <= at, Shift.ends_at > at)
            .order_by(Shift.starts_at, Shift.id)
        )
        with self.records.transaction() as session:
            seen: dict[int, OnCall] = {}
            for c in session.scalars(query):
                seen.setdefault(c.id, OnCall(c.id, c.name, c.phone, c.sms_opted_out))
            return list(seen.values())

    def mark_sms_opted_out(self, phone: str) -> None:
        with self.records.transaction() as session:
            for clinician in session.scalars(select(Clinician).where(Clinician.phone == phone)):
                clinician.sms_opted_out = True

    def import_entries(self, entries: Iterable[dict[str, Any]]) -> tuple[int, int]:
        """Add clinicians (matched by phone) and their shifts; return (clinicians added, shifts added)."""
        added_clinicians = added_shifts = 0
        for entry in entries:
            existing = self.clinician_by_phone(entry["phone"])
            if existing is None:
                clinician_id = self.add_clinician(name=entry["name"], role=entry.get("role", "clinician"),
                                                  phone=entry["phone"])
                added_clinicians += 1
            else:
                clinician_id = existing["id"]
            for shift in entry.get("shifts", []):
                self.add_shift(clinician_id, starts_at=shift["start"], ends_at=shift["end"], tier=shift["tier"])
                added_shifts += 1
        return added_clinicians, added_shifts


def _clinician_dict(c: Clinician) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "role": c.role, "phone": c.phone,
            "sms_opted_out": c.sms_opted_out, "created_at": c.created_at.isoformat()}
