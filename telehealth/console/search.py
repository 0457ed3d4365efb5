"""Finding conversations: the list's filters, read from a query string, as one SQL query."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import date
from typing import Any, Mapping

from sqlalchemy import Select, func, select
from sqlalchemy.orm import selectinload

from telehealth.console.display import day_bounds
from telehealth.records import (
    Channel,
    Conversation,
    ConversationStatus,
    Disposition,
    Escalation,
    EscalationStatus,
    Records,
)

PAGE_SIZE = 25
MAX_EXPORT_ROWS = 10_000
NO_DISPOSITION = "none"
# Escalation states a person filters by; "open" is paging or unanswered, "none" never escalated.
ESCALATION_STATES = ("open", "pending", "unacknowledged", "acknowledged", "cancelled", "none")
_LAST4 = re.compile(r"^\d{4}$")


@dataclass(frozen=True)
class Filters:
    date_from: date | None = None
    date_to: date | None = None
    disposition: str = ""
    channel: str = ""
    status: str = ""
    escalation: str = ""
    last4: str = ""
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> tuple["Filters", list[str]]:
        """Filters from a query string, and a message for each value that was ignored."""
        problems: list[str] = []

        def choice(name: str, allowed: tuple[str, ...]) -> str:
            value = (args.get(name) or "").strip()
            if value and value not in allowed:
                problems.append(f"Unknown {name.replace('_', ' ')}: ignored.")
                return ""
            return value

        def day(name: str, label: str) -> date | None:
            value = (args.get(name) or "").strip()
            try:
                return date.fromisoformat(value) if value else None
            except ValueError:
                problems.append(f"{label} is not a date (YYYY-MM-DD): ignored.")
                return None

        last4 = (args.get("last4") or "").strip()
        if last4 and not _LAST4.match(last4):
            problems.append("Search by exactly the last 4 digits of the phone number.")
            last4 = ""
        try:
            page = max(1, int(args.get("page") or 1))
        except ValueError:
            page = 1
        found = cls(
            date_from=day("date_from", "From"),
            date_to=day("date_to", "To"),
            disposition=choice("disposition", (*[d.value for d in Disposition], NO_DISPOSITION)),
            channel=choice("channel", tuple(c.value for c in Channel)),
            status=choice("status", tuple(s.value for s in ConversationStatus)),
            escalation=choice("escalation", ESCALATION_STATES),
            last4=last4,
            page=page,
        )
        return found, problems

    def query_args(self, **changes: Any) -> dict[str, str]:
        """The filters as query-string arguments (for page links and the export link)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)} | changes
        return {
            k: (v.isoformat() if isinstance(v, date) else str(v))
            for k, v in values.items()
            if v not in (None, "") and not (k == "page" and v == 1)
        }

    def is_filtered(self) -> bool:
        return any(v for k, v in self.query_args().items() if k != "page")

    def audit_detail(self) -> dict[str, Any]:
        """What was filtered by, for the audit log: never the digits searched for."""
        detail: dict[str, Any] = {k: v for k, v in self.query_args().items() if k != "last4"}
        if self.last4:
            detail["phone_search"] = True
        return detail


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    total: int
    number: int
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def _filtered(query: Select[Any], filters: Filters, tz_name: str) -> Select[Any]:
    if filters.date_from is not None:
        query = query.where(Conversation.started_at >= day_bounds(filters.date_from, tz_name)[0])
    if filters.date_to is not None:
        query = query.where(Conversation.started_at < day_bounds(filters.date_to, tz_name)[1])
    if filters.disposition == NO_DISPOSITION:
        query = query.where(Conversation.disposition.is_(None))
    elif filters.disposition:
        query = query.where(Conversation.disposition == filters.disposition)
    if filters.channel:
        query = query.where(Conversation.channel == filters.channel)
    if filters.status:
        query = query.where(Conversation.status == filters.status)
    if filters.last4:
        query = query.where(Conversation.phone.like(f"%{filters.last4}"))
    return _by_escalation(query, filters.escalation)


def _by_escalation(query: Select[Any], state: str) -> Select[Any]:
    if not state:
        return query
    escalated = select(Escalation.conversation_id)
    if state == "none":
        return query.where(Conversation.id.not_in(escalated))
    wanted = (
        [EscalationStatus.PENDING.value, EscalationStatus.UNACKNOWLEDGED.value]
        if state == "open"
        else [state]
    )
    return query.where(Conversation.id.in_(escalated.where(Escalation.status.in_(wanted))))


def find(records: Records, filters: Filters, tz_name: str) -> Page:
    """One page of conversations, newest first."""
    base = _filtered(select(Conversation), filters, tz_name)
    with records.transaction() as session:
        total = (
            session.scalar(_filtered(select(func.count(Conversation.id)), filters, tz_name)) or 0
        )
        last_page = max(1, -(-total // PAGE_SIZE))
        number = min(filters.page, last_page)
        convs = session.scalars(
            base.options(selectinload(Conversation.escalation))
            .order_by(Conversation.started_at.desc(), Conversation.id.desc())
            .offset((number - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE)
        ).all()
        return Page([_row(c) for c in convs], total, number)


def export_rows(records: Records, filters: Filters, tz_name: str) -> list[dict[str, Any]]:
    """Every conversation the filters match (up to MAX_EXPORT_ROWS), newest first."""
    query = (
        _filtered(select(Conversation), filters, tz_name)
        .options(selectinload(Conversation.escalation))
        .order_by(Conversation.started_at.desc(), Conversation.id.desc())
        .limit(MAX_EXPORT_ROWS)
    )
    with records.transaction() as session:
        return [_row(c) for c in session.scalars(query).all()]


def _row(conv: Conversation) -> dict[str, Any]:
    escalation = conv.escalation
    return {
        "id": conv.id,
        "channel": conv.channel,
        "phone": conv.phone,
        "status": conv.status,
        "disposition": conv.disposition,
        "rule": conv.rule,
        "red_flags": list(conv.red_flags),
        "protocol_version": conv.protocol_version,
        "started_at": conv.started_at,
        "ended_at": conv.ended_at,
        "end_reason": conv.end_reason,
        "escalation": None
        if escalation is None
        else {
            "id": escalation.id,
            "level": escalation.level,
            "status": escalation.status,
            "created_at": escalation.created_at,
            "acknowledged_by": escalation.acknowledged_by,
            "acknowledged_at": escalation.acknowledged_at,
        },
    }

