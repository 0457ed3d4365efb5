"""Clinician notes on a conversation: what was done after the line finished, and the outcome."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from telehealth.records import Base, Conversation, Records, UTCDateTime, as_utc, clean_text

MAX_NOTE_LENGTH = 4000


class Outcome(str, Enum):
    SENT_TO_ER = "sent_to_er"
    CALLED_911 = "called_911"
    APPOINTMENT = "appointment"
    SELF_CARE = "self_care"
    NO_ANSWER = "no_answer"
    NOTE_ONLY = "note_only"

    @property
    def label(self) -> str:
        return OUTCOME_LABELS[self]


OUTCOME_LABELS = {
    Outcome.SENT_TO_ER: "Called back, sent to ER",
    Outcome.CALLED_911: "Called back, 911 called",
    Outcome.APPOINTMENT: "Called back, appointment booked",
    Outcome.SELF_CARE: "Called back, advised self-care",
    Outcome.NO_ANSWER: "Could not reach the patient",
    Outcome.NOTE_ONLY: "Note only",
}


class Note(Base):
    __tablename__ = "notes"
    __table_args__ = (
        CheckConstraint(
            "outcome IN ({})".format(", ".join(f"'{o.value}'" for o in Outcome)), name="outcome"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    author_name: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)


class NoteError(ValueError):
    """A note that cannot be saved (empty, too long, unknown outcome or conversation)."""


class Notes:
    def __init__(self, records: Records) -> None:
        self.records = records

    def add(
        self,
        conversation_id: int,
        *,
        author_id: int,
        author_name: str,
        outcome: str,
        text: str,
        now: datetime,
    ) -> int:
        try:
            outcome = Outcome(outcome).value
        except ValueError as exc:
            raise NoteError("choose an outcome") from exc
        text = clean_text(text.strip())
        if len(text) > MAX_NOTE_LENGTH:
            raise NoteError(f"a note can hold at most {MAX_NOTE_LENGTH} characters")
        if not text and outcome == Outcome.NOTE_ONLY.value:
            raise NoteError("write a note or choose an outcome")
        with self.records.transaction() as session:
            if session.get(Conversation, conversation_id) is None:
                raise NoteError(f"no conversation {conversation_id}")
            note = Note(
                conversation_id=conversation_id,
                author_id=author_id,
                author_name=author_name,
                at=as_utc(now),
                outcome=outcome,
                text=text,
            )
            session.add(note)
            session.flush()
            return note.id

    def for_conversation(self, conversation_id: int) -> list[dict[str, Any]]:
        with self.records.transaction() as session:
            rows = session.scalars(
                select(Note)
                .where(Note.conversation_id == conversation_id)
                .order_by(Note.at, Note.id)
            )
            return [
                {
                    "id": n.id,
                    "author": n.author_name,
                    "at": n.at,
                    "outcome": Outcome(n.outcome),
                    "text": n.text,
                }
                for n in rows
            ]
