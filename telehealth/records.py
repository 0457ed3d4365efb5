"""Durable record of conversations, turns, escalations and the audit log.

Every public method of `Records` runs in its own short transaction, so one
instance can be shared by all request threads and job workers.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON, CheckConstraint, DateTime, Dialect, Engine, Float, ForeignKey, Integer, MetaData,
    Select, String, Text, UniqueConstraint, case, create_engine, event, exc, insert, literal, select, update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import (
    DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload, sessionmaker,
)
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_SQLITE_BUSY_TIMEOUT_MS = 5000
_PG_STATEMENT_TIMEOUT_MS = 5000
_PG_TCP_USER_TIMEOUT_MS = 5000
_MAX_LIST_LIMIT = 1000


class Channel(str, Enum):
    SMS = "sms"
    VOICE = "voice"


class ConversationStatus(str, Enum):
    ACTIVE = "active"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    OPTED_OUT = "opted_out"


class Disposition(str, Enum):
    EMERGENCY = "emergency"
    URGENT = "urgent"
    ROUTINE = "routine"


class Direction(str, Enum):
    IN = "in"
    OUT = "out"


class EscalationLevel(str, Enum):
    EMERGENCY = "emergency"
    URGENT = "urgent"


class EscalationStatus(str, Enum):
    PENDING = "pending"
    ACKNOWLEDGED = "acknowledged"
    UNACKNOWLEDGED = "unacknowledged"
    CANCELLED = "cancelled"


class RecordsUnavailable(Exception):
    """The records database cannot be reached or did not answer in time."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    # A naive time in a medical record is ambiguous; refuse it rather than guess.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        # SQLite's DATETIME text drops offsets, so store naive UTC there and re-attach on read.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _one_of(column: str, enum: type[Enum]) -> CheckConstraint:
    allowed = ", ".join(f"'{member.value}'" for member in enum)
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


class Base(DeclarativeBase):
    # Deterministic constraint names keep create_all and the migrations identical.
    metadata = MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        _one_of("channel", Channel),
        _one_of("status", ConversationStatus),
        _one_of("disposition", Disposition),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(8))
    phone: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16))
    disposition: Mapped[str | None] = mapped_column(String(16))
    rule: Mapped[str | None] = mapped_column(String(128))
    red_flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    protocol_version: Mapped[str] = mapped_column(String(64))
    call_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(64))

    # lazy="raise": every read says what it loads, so no query hides in serialisation.
    turns: Mapped[list[Turn]] = relationship(order_by="Turn.id", lazy="raise")
    escalation: Mapped[Escalation | None] = relationship(lazy="raise")


class Turn(Base):
    __tablename__ = "turns"
    # NULL sids never collide, so only webhook-delivered turns are deduplicated.
    __table_args__ = (UniqueConstraint("direction", "twilio_sid"), _one_of("direction", Direction))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    direction: Mapped[str] = mapped_column(String(3))
    text: Mapped[str] = mapped_column(Text)
    twilio_sid: Mapped[str | None] = mapped_column(String(128))
    # Indexed because replies_to() runs on every retried webhook.
    in_reply_to: Mapped[str | None] = mapped_column(String(128), index=True)
    question_id: Mapped[str | None] = mapped_column(String(128))
    digits: Mapped[str | None] = mapped_column(Text)
    speech: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)


class Escalation(Base):
    __tablename__ = "escalations"
    __table_args__ = (_one_of("level", EscalationLevel), _one_of("status", EscalationStatus))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), unique=True)
    level: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=EscalationStatus.PENDING.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The chain copied from flows/escalation.yaml when the escalation started, the next step to
    # run and when; NULL when nothing is left to run.
    chain: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    next_step: Mapped[int] = mapped_column(Integer, default=0)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    events: Mapped[list[EscalationEvent]] = relationship(
        order_by="EscalationEvent.id", lazy="raise"
    )


class EscalationEvent(Base):
    __tablename__ = "escalation_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(128))
    target: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# --- engine and migrations -------------------------------------------------------------


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets webhook readers proceed while a job writes; busy_timeout makes
        # writers queue instead of failing at once; SQLite ignores FKs unless asked.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def create_records_engine(url: str) -> Engine:
    """An engine tuned for short webhook transactions (hide_parameters keeps PHI out of errors)."""
    parsed = make_url(url)
    options: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        options["connect_args"] = {"check_same_thread": False}
        if parsed.database in (None, "", ":memory:"):
            # Each connection to :memory: is a separate database; share one.
            options["poolclass"] = StaticPool
        engine = create_engine(parsed, **options)
        event.listen(engine, "connect", _configure_sqlite_connection)
        return engine
    if backend == "postgresql":
        options["connect_args"] = {
            "connect_timeout": 3,
            "options": f"-c statement_timeout={_PG_STATEMENT_TIMEOUT_MS}",
            # A server that vanished from the network (no RST, packets dropped) would leave a
            # query waiting for TCP's own timeout, many minutes: give up on unacknowledged data
            # after a few seconds, and notice dead idle connections by keepalives.
            "tcp_user_timeout": _PG_TCP_USER_TIMEOUT_MS,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 2,
            "keepalives_count": 3,
        }
    return create_engine(parsed, **options)


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the latest schema."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Config values go through configparser interpolation, so a literal % must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


# --- serialisation to the public JSON shape ----------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _turn_dict(turn: Turn) -> dict[str, Any]:
    return {
        "at": _iso(turn.at), "direction": turn.direction, "text": turn.text,
        "question_id": turn.question_id, "digits": turn.digits, "speech": turn.speech,
        "confidence": turn.confidence,
    }


def _escalation_dict(escalation: Escalation, *, with_events: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": escalation.id, "level": escalation.level, "reason": escalation.reason,
        "summary": escalation.summary, "status": escalation.status,
        "created_at": _iso(escalation.created_at),
        "acknowledged_by": escalation.acknowledged_by,
        "acknowledged_at": _iso(escalation.acknowledged_at),
        "next_step": escalation.next_step, "next_due_at": _iso(escalation.next_due_at),
    }
    if with_events:
        data["events"] = [
            {"at": _iso(e.at), "kind": e.kind, "detail": e.detail} for e in escalation.events
        ]
    return data


def _conversation_dict(conv: Conversation, *, full: bool) -> dict[str, Any]:
    escalation = conv.escalation
    data: dict[str, Any] = {
        "id": conv.id, "channel": conv.channel, "phone": conv.phone, "status": conv.status,
        "disposition": conv.disposition, "red_flags": list(conv.red_flags), "rule": conv.rule,
        "protocol_version": conv.protocol_version, "started_at": _iso(conv.started_at),
        "ended_at": _iso(conv.ended_at), "last_activity_at": _iso(conv.last_activity_at),
        "facts": dict(conv.facts),
    }
    if full:
        data["turns"] = [_turn_dict(t) for t in conv.turns]
    data["escalation"] = (
        None if escalation is None else _escalation_dict(escalation, with_events=full)
    )
    return data


_FULL = (
    selectinload(Conversation.turns),
    selectinload(Conversation.escalation).selectinload(Escalation.events),
)
_SUMMARY = (selectinload(Conversation.escalation),)

# --- input cleaning ----------------------------------------------------------------------

_E = TypeVar("_E", bound=Enum)
# PostgreSQL text cannot hold NUL, and lone surrogates cannot be encoded as UTF-8;
# replacing both everywhere keeps SQLite and PostgreSQL records identical.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _enum_value(enum: type[_E], value: str | _E) -> str:
    return str(enum(value).value)


def clean_text(value: str) -> str:
    return _UNSTORABLE.sub("\ufffd", value)


def _clean_optional_text(value: str | None) -> str | None:
    return None if value is None else clean_text(value)


def _conversation_changes(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - {
        "status", "disposition", "rule", "red_flags", "facts", "ended_at", "end_reason",
    }
    if unknown:
        raise TypeError(f"cannot update conversation fields: {sorted(unknown)}")
    changes = dict(fields)
    if "status" in changes:
        changes["status"] = _enum_value(ConversationStatus, changes["status"])
    if changes.get("disposition") is not None:
        changes["disposition"] = _enum_value(Disposition, changes["disposition"])
    if "red_flags" in changes:
        changes["red_flags"] = list(changes["red_flags"] or [])
    if "facts" in changes:
        changes["facts"] = dict(changes["facts"] or {})
    if changes.get("ended_at") is not None:
        changes["ended_at"] = as_utc(changes["ended_at"])
    return changes


def _is_unavailable(error: exc.SQLAlchemyError) -> bool:
    if isinstance(error, (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)):
        return True
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


@contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except exc.SQLAlchemyError as error:
        if not _is_unavailable(error):
            raise
        # Only the error class in the message: the chained error carries the detail.
        raise RecordsUnavailable(
            f"records database unavailable ({type(error).__name__})"
        ) from error


# --- repository --------------------------------------------------------------------------


class Records:
    """Repository over the records database; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str) -> Records:
        return cls(create_records_engine(url))

    @property
    def engine(self) -> Engine:
        return self._engine

    def ping(self) -> bool:
        """Readiness: can the database answer a trivial query right now?"""
        try:
            with self._engine.connect() as connection:
                connection.execute(select(1))
            return True
        except exc.SQLAlchemyError:
            return False

    def dispose(self) -> None:
        self._engine.dispose()

    def create_schema(self) -> None:
        # The roster, alert, staff and note tables share this metadata; importing them registers them.
        import telehealth.alerts  # noqa: F401
        import telehealth.notes  # noqa: F401
        import telehealth.roster  # noqa: F401
        import telehealth.users  # noqa: F401

        with _translated_errors():
            Base.metadata.create_all(self._engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work for the repositories beside this one (roster, alerts)."""
        with _translated_errors(), self._sessions.begin() as session:
            yield session

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with _translated_errors(), self._sessions.begin() as session:
            yield session

    # --- conversations -------------------------------------------------------------------

    def start_conversation(
        self, *, channel: str, phone: str, protocol_version: str,
        call_sid: str | None = None, at: datetime | None = None,
    ) -> int:
        """Open a conversation; for a CallSid already recorded, return that conversation's id."""
        when = utcnow() if at is None else as_utc(at)
        conv = Conversation(
            channel=_enum_value(Channel, channel), phone=phone,
            status=ConversationStatus.ACTIVE.value, protocol_version=protocol_version,
            call_sid=call_sid, started_at=when, last_activity_at=when, red_flags=[], facts={},
        )
        if call_sid is not None:
            existing = self._conversation_id_for_call(call_sid)
            if existing is not None:
                return existing
        try:
            with self._transaction() as session:
                session.add(conv)
                session.flush()
                return conv.id
        except exc.IntegrityError:
            # A retried voice webhook raced us to the same CallSid.
            existing = None if call_sid is None else self._conversation_id_for_call(call_sid)
            if existing is None:
                raise
            return existing

    def _conversation_id_for_call(self, call_sid: str) -> int | None:
        with self._transaction() as session:
            return session.scalar(
                select(Conversation.id).where(Conversation.call_sid == call_sid)
            )

    def update_conversation(self, conversation_id: int, **fields: Any) -> None:
        """Set status, disposition, rule, red_flags, facts, ended_at and/or end_reason."""
        changes = _conversation_changes(fields)
        with self._transaction() as session:
            conv = session.get(Conversation, conversation_id)
            if conv is None:
                raise LookupError(f"no conversation {conversation_id}")
            for name, value in changes.items():
                setattr(conv, name, value)

    def get_conversation(self, conversation_id: int) -> dict[str, Any] | None:
        return self._one(select(Conversation).where(Conversation.id == conversation_id))

    def latest_conversation(self, phone: str, channel: str | None = None) -> dict[str, Any] | None:
        query = select(Conversation).where(Conversation.phone == phone)
        if channel is not None:
            query = query.where(Conversation.channel == _enum_value(Channel, channel))
        return self._one(query.order_by(*_NEWEST_FIRST).limit(1))

    def conversation_by_call_sid(self, call_sid: str) -> dict[str, Any] | None:
        return self._one(select(Conversation).where(Conversation.call_sid == call_sid))

    def _one(self, query: Select[Any]) -> dict[str, Any] | None:
        with self._transaction() as session:
            conv = session.scalars(query.options(*_FULL)).first()
            return None if conv is None else _conversation_dict(conv, full=True)

    def list_conversations(
        self, *, phone: str | None = None, disposition: str | None = None,
        status: str | None = None, limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Newest first, without "turns" and escalation "events" (fetch one for those)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = select(Conversation)
        if phone is not None:
            query = query.where(Conversation.phone == phone)
        if disposition is not None:
            query = query.where(Conversation.disposition == _enum_value(Disposition, disposition))
        if status is not None:
            query = query.where(Conversation.status == _enum_value(ConversationStatus, status))
        query = query.order_by(*_NEWEST_FIRST).limit(min(limit, _MAX_LIST_LIMIT))
        return self._summaries(query)

    def stale_active_conversations(
        self, *, idle_since: datetime, channel: str | None = None,
    ) -> list[dict[str, Any]]:
        """Active conversations with no activity since `idle_since`, longest idle first."""
        query = select(Conversation).where(
            Conversation.status == ConversationStatus.ACTIVE.value,
            Conversation.last_activity_at < as_utc(idle_since),
        )
        if channel is not None:
            query = query.where(Conversation.channel == _enum_value(Channel, channel))
        return self._summaries(query.order_by(Conversation.last_activity_at, Conversation.id))

    def _summaries(self, query: Select[Any]) -> list[dict[str, Any]]:
        with self._transaction() as session:
            convs = session.scalars(query.options(*_SUMMARY)).all()
            return [_conversation_dict(conv, full=False) for conv in convs]

    # --- turns ---------------------------------------------------------------------------

    def record_turn(
        self, conversation_id: int, *, direction: str, text: str,
        twilio_sid: str | None = None, in_reply_to: str | None = None,
        question_id: str | None = None, digits: str | None = None, speech: str | None = None,
        confidence: float | None = None, at: datetime | None = None,
    ) -> bool:
        """Append a turn; False (nothing written) if this (direction, twilio_sid) is recorded.

        Text is stored as received except NUL and lone surrogates, which become U+FFFD.
        """
        turn = self._turn_row(conversation_id, direction=direction, text=text, twilio_sid=twilio_sid,
                              in_reply_to=in_reply_to, question_id=question_id, digits=digits,
                              speech=speech, confidence=confidence, at=at)
        direction, when = turn.direction, turn.at
        if twilio_sid is not None and self._turn_exists(direction, twilio_sid):
            return False
        try:
            with self._transaction() as session:
                conv = session.get(Conversation, conversation_id)
                if conv is None:
                    raise LookupError(f"no conversation {conversation_id}")
                conv.last_activity_at = max(conv.last_activity_at, when)
                session.add(turn)
        except exc.IntegrityError:
            # A concurrent retry of the same webhook won the insert.
            if twilio_sid is not None and self._turn_exists(direction, twilio_sid):
                return False
            raise
        return True

    def record_exchange(self, conversation_id: int, turns: list[dict[str, Any]],
                        changes: dict[str, Any] | None = None) -> bool:
        """Write one webhook's turns and the conversation's new state in a single transaction.

        Each turn takes record_turn's keyword arguments. False (nothing written) when an inbound
        turn's sid is already recorded: a retried webhook. Plain statements, no reads: this runs
        on every turn.
        """
        fields = _conversation_changes(changes or {})
        rows = [_turn_values(self._turn_row(conversation_id, **turn)) for turn in turns]
        inbound = [r for r in rows if r["direction"] == Direction.IN.value and r["twilio_sid"] is not None]
        others = [r for r in rows if r not in inbound]
        try:
            with self._transaction() as session:
                if inbound and len(session.execute(_insert_new(session, inbound)).all()) != len(inbound):
                    raise _AlreadyRecorded
                if rows:
                    latest = literal(max(r["at"] for r in rows), UTCDateTime())
                    fields["last_activity_at"] = case(
                        (Conversation.last_activity_at < latest, latest), else_=Conversation.last_activity_at)
                if fields and session.execute(update(Conversation).where(
                        Conversation.id == conversation_id).values(**fields)).rowcount != 1:
                    raise LookupError(f"no conversation {conversation_id}")
                if others:
                    session.execute(insert(Turn), others)
        except (_AlreadyRecorded, exc.IntegrityError):
            return False  # a retry of the same webhook (perhaps concurrent) was recorded first
        return True

    @staticmethod
    def _turn_row(conversation_id: int, *, direction: str, text: str, twilio_sid: str | None = None,
                  in_reply_to: str | None = None, question_id: str | None = None,
                  digits: str | None = None, speech: str | None = None,
                  confidence: float | None = None, at: datetime | None = None) -> Turn:
        return Turn(
            conversation_id=conversation_id, at=utcnow() if at is None else as_utc(at),
            direction=_enum_value(Direction, direction), text=clean_text(text), twilio_sid=twilio_sid,
            in_reply_to=in_reply_to, question_id=question_id, digits=_clean_optional_text(digits),
            speech=_clean_optional_text(speech), confidence=confidence,
        )

    def record_failsafe(
        self, *, channel: str, phone: str, protocol_version: str, reply: str, at: datetime,
        idle_since: datetime, sid: str | None = None, text: str | None = None,
        call_sid: str | None = None, digits: str | None = None, speech: str | None = None,
        confidence: float | None = None,
    ) -> int | None:
        """Record a webhook the fail-safe answered: what arrived (if anything) and the fail-safe reply.

        Used when the live state (Redis) could not be used. The turn goes into the caller's open
        conversation: the call's, or the number's SMS conversation active since `idle_since` (or
        opted out); otherwise a new one. Returns its id, or None when the inbound turn was
        already recorded (the failure came after the turn was written, or a retry).
        """
        when = as_utc(at)
        kind = _enum_value(Channel, channel)
        try:
            with self._transaction() as session:
                if sid is not None and session.scalar(select(Turn.id).where(
                        Turn.direction == Direction.IN.value, Turn.twilio_sid == sid)) is not None:
                    return None
                conv = self._failsafe_conversation(session, kind, phone, call_sid, as_utc(idle_since))
                if conv is None:
                    conv = Conversation(
                        channel=kind, phone=phone, status=ConversationStatus.ACTIVE.value,
                        protocol_version=protocol_version, call_sid=call_sid, started_at=when,
                        last_activity_at=when, red_flags=[], facts={},
                    )
                    session.add(conv)
                    session.flush()
                rows = []
                if text is not None:
                    rows.append(self._turn_row(conv.id, direction="in", text=text, twilio_sid=sid,
                                               digits=digits, speech=speech, confidence=confidence,
                                               at=when))
                rows.append(self._turn_row(conv.id, direction="out", text=reply, in_reply_to=sid, at=when))
                conv.last_activity_at = max(conv.last_activity_at, when)
                session.add_all(rows)
                return conv.id
        except exc.IntegrityError:
            return None  # a concurrent retry of the same webhook won

    @staticmethod
    def _failsafe_conversation(session: Session, channel: str, phone: str, call_sid: str | None,
                               idle_since: datetime) -> Conversation | None:
        if call_sid:
            return session.scalars(select(Conversation).where(Conversation.call_sid == call_sid)).first()
        latest = session.scalars(
            select(Conversation).where(Conversation.phone == phone, Conversation.channel == channel)
            .order_by(*_NEWEST_FIRST).limit(1)
        ).first()
        if latest is None:
            return None
        if latest.status == ConversationStatus.OPTED_OUT.value:
            return latest
        if latest.status == ConversationStatus.ACTIVE.value and latest.last_activity_at >= idle_since:
            return latest
        return None

    def _turn_exists(self, direction: str, twilio_sid: str) -> bool:
        with self._transaction() as session:
            found = session.scalar(
                select(Turn.id).where(Turn.direction == direction, Turn.twilio_sid == twilio_sid)
            )
            return found is not None

    def replies_to(self, twilio_sid: str) -> list[str] | None:
        """Texts already sent in answer to inbound `twilio_sid`; None if it was never recorded."""
        with self._transaction() as session:
            inbound = session.scalar(select(Turn.id).where(
                Turn.direction == Direction.IN.value, Turn.twilio_sid == twilio_sid
            ))
            if inbound is None:
                return None
            return list(session.scalars(
                select(Turn.text)
                .where(Turn.direction == Direction.OUT.value, Turn.in_reply_to == twilio_sid)
                .order_by(Turn.id)
            ))

    # --- escalations and audit -----------------------------------------------------------

    def create_escalation(
        self, conversation_id: int, *, level: str, reason: str, summary: str,
        chain: dict[str, Any] | None = None, at: datetime | None = None,
    ) -> tuple[int, bool]:
        """(id, True) for a new escalation, (existing id, False) if the conversation has one.

        The first step of `chain` is due at once.
        """
        existing = self._escalation_id_for(conversation_id)
        if existing is not None:
            return existing, False
        when = utcnow() if at is None else as_utc(at)
        escalation = Escalation(
            conversation_id=conversation_id, level=_enum_value(EscalationLevel, level),
            reason=reason, summary=summary, status=EscalationStatus.PENDING.value,
            created_at=when, chain=dict(chain or {}), next_step=0, next_due_at=when,
        )
        try:
            with self._transaction() as session:
                if session.get(Conversation, conversation_id) is None:
                    raise LookupError(f"no conversation {conversation_id}")
                session.add(escalation)
                session.flush()
                return escalation.id, True
        except exc.IntegrityError:
            # Another worker escalated the same conversation between our check and insert.
            existing = self._escalation_id_for(conversation_id)
            if existing is None:
                raise
            return existing, False

    def _escalation_id_for(self, conversation_id: int) -> int | None:
        with self._transaction() as session:
            return session.scalar(
                select(Escalation.id).where(Escalation.conversation_id == conversation_id)
            )

    def get_escalation(self, escalation_id: int) -> dict[str, Any] | None:
        """The public escalation shape plus "conversation_id" and the "chain" snapshot."""
        with self._transaction() as session:
            escalation = session.scalars(
                select(Escalation).where(Escalation.id == escalation_id)
                .options(selectinload(Escalation.events))
            ).first()
            if escalation is None:
                return None
            data = _escalation_dict(escalation, with_events=True)
            data["conversation_id"] = escalation.conversation_id
            data["chain"] = dict(escalation.chain)
            return data

    def add_escalation_event(
        self, escalation_id: int, kind: str, detail: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        with self._transaction() as session:
            if session.get(Escalation, escalation_id) is None:
                raise LookupError(f"no escalation {escalation_id}")
            session.add(EscalationEvent(
                escalation_id=escalation_id, at=utcnow() if at is None else as_utc(at),
                kind=kind, detail=dict(detail or {}),
            ))

    def audit(
        self, action: str, *, actor: str = "system", target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append to the audit log; callers keep patient data out of `detail`."""
        with self._transaction() as session:
            session.add(AuditEntry(
                at=utcnow(), actor=actor, action=action, target=target, detail=dict(detail or {}),
            ))


_NEWEST_FIRST = (Conversation.started_at.desc(), Conversation.id.desc())


class _AlreadyRecorded(Exception):
    """Rolls back an exchange whose inbound turn is already in the record."""


def _turn_values(turn: Turn) -> dict[str, Any]:
    return {c.key: getattr(turn, c.key) for c in Turn.__table__.columns if c.key != "id"}


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on the (direction, twilio_sid) key, for either backend."""
    dialect = session.get_bind().dialect.name
    build = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (build(Turn).values(rows).on_conflict_do_nothing(index_elements=["direction", "twilio_sid"])
            .returning(Turn.id))
