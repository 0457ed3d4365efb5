"""Admin pages: the audit log with filters, and the CSV export of conversations (audited)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from typing import Any, Mapping

from flask import Blueprint, Response, flash, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Select, func, select

from telehealth.console import guard, search
from telehealth.console.display import day_bounds, local
from telehealth.phones import masked
from telehealth.records import AuditEntry, Records

bp = Blueprint("audit", __name__)
bp.before_request(guard.require_admin)

PAGE_SIZE = 50
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class AuditFilters:
    actor: str = ""
    action: str = ""
    target: str = ""
    date_from: date | None = None
    date_to: date | None = None
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> "AuditFilters":
        def day(name: str) -> date | None:
            try:
                return date.fromisoformat(args.get(name, "").strip()) if args.get(name) else None
            except ValueError:
                flash(f"{name.replace('_', ' ')} is not a date (YYYY-MM-DD): ignored.", "error")
                return None

        try:
            page = max(1, int(args.get("page") or 1))
        except ValueError:
            page = 1
        return cls(
            actor=args.get("actor", "").strip()[:128],
            action=args.get("action", "").strip()[:128],
            target=args.get("target", "").strip()[:255],
            date_from=day("date_from"),
            date_to=day("date_to"),
            page=page,
        )

    def query_args(self, **changes: Any) -> dict[str, str]:
        values = {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "date_from": self.date_from.isoformat() if self.date_from else "",
            "date_to": self.date_to.isoformat() if self.date_to else "",
            "page": self.page,
        } | changes
        return {k: str(v) for k, v in values.items() if v and not (k == "page" and v == 1)}


def _filtered(query: Select[Any], f: AuditFilters, tz_name: str) -> Select[Any]:
    if f.actor:
        query = query.where(AuditEntry.actor.contains(f.actor, autoescape=True))
    if f.action:
        query = query.where(AuditEntry.action == f.action)
    if f.target:
        query = query.where(AuditEntry.target.contains(f.target, autoescape=True))
    if f.date_from:
        query = query.where(AuditEntry.at >= day_bounds(f.date_from, tz_name)[0])
    if f.date_to:
        query = query.where(AuditEntry.at < day_bounds(f.date_to, tz_name)[1])
    return query


def entries(
    records: Records, f: AuditFilters, tz_name: str
) -> tuple[list[AuditEntry], int, list[str]]:
    """A page of entries newest first, the total, and every action name (for the filter)."""
    with records.transaction() as session:
        total = session.scalar(_filtered(select(func.count(AuditEntry.id)), f, tz_name)) or 0
        rows = list(
            session.scalars(
                _filtered(select(AuditEntry), f, tz_name)
                .order_by(AuditEntry.id.desc())
                .offset((f.page - 1) * PAGE_SIZE)
                .limit(PAGE_SIZE)
            )
        )
        actions = list(
            session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action))
        )
        return rows, total, actions


@bp.get("/audit")
def index() -> ResponseReturnValue:
    services = guard.services()
    filters = AuditFilters.from_args(request.args)
    rows, total, actions = entries(services.records, filters, services.settings.console_timezone)
    guard.audit("audit_view", page=filters.page)
    return render_template(
        "console/audit.html",
        rows=rows,
        total=total,
        actions=actions,
        filters=filters,
        pages=max(1, -(-total // PAGE_SIZE)),
    )


@bp.get("/conversations/export.csv")
def export_conversations() -> ResponseReturnValue:
    services = guard.services()
    tz_name = services.settings.console_timezone
    filters, _ = search.Filters.from_args(request.args)
    rows = search.export_rows(services.records, filters, tz_name)
    guard.audit("conversation_export", rows=len(rows), detail_filters=filters.audit_detail())
    response = Response(_csv(rows, tz_name), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="conversations.csv"'
    return response


EXPORT_COLUMNS = (
    "id",
    "started",
    "ended",
    "channel",
    "phone",
    "status",
    "disposition",
    "rule",
    "red_flags",
    "protocol_version",
    "escalation",
    "acknowledged_by",
    "minutes_to_acknowledge",
)


def _csv(rows: list[dict[str, Any]], tz_name: str) -> str:
    """Phone numbers stay masked: an export leaves the building, the last four digits are enough."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        e = row["escalation"] or {}
        wait = (
            (e["acknowledged_at"] - e["created_at"]).total_seconds() / 60
            if e.get("acknowledged_at")
            else None
        )
        writer.writerow(
            [
                _cell(v)
                for v in (
                    row["id"],
                    local(row["started_at"], tz_name, "%Y-%m-%d %H:%M"),
                    local(row["ended_at"], tz_name, "%Y-%m-%d %H:%M"),
                    row["channel"],
                    masked(row["phone"]),
                    row["status"],
                    row["disposition"] or "",
                    row["rule"] or "",
                    " ".join(row["red_flags"]),
                    row["protocol_version"],
                    e.get("status", ""),
                    e.get("acknowledged_by") or "",
                    "" if wait is None else f"{wait:.1f}",
                )
            ]
        )
    return out.getvalue()


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
