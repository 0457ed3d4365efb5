"""The live board of open escalations, and taking a case from it.

The page refreshes its list by fetching the fragment every few seconds (static/console.js); the
acknowledge button is a plain form, so the board also works with scripts off.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import case, select

from telehealth import escalation
from telehealth.alerts import Alert
from telehealth.console import guard
from telehealth.records import Conversation, Escalation, EscalationStatus, Records

bp = Blueprint("board", __name__)

OPEN = (EscalationStatus.PENDING.value, EscalationStatus.UNACKNOWLEDGED.value)
RECENT = timedelta(hours=12)
ACK_MESSAGES = {
    "taken": "Case {id} is yours. Call the patient now.",
    "yours": "You already have case {id}.",
    "closed": "Case {id} is closed: nothing to do.",
    "unknown": "There is no case {id}.",
}


@bp.get("/board")
def index() -> ResponseReturnValue:
    return render_template("console/board.html", **_board())


@bp.get("/board/live")
def live() -> ResponseReturnValue:
    """The board's list alone, for the page's self-refresh."""
    return render_template("console/_board_list.html", **_board())


@bp.post("/board/<int:escalation_id>/acknowledge")
def acknowledge(escalation_id: int) -> ResponseReturnValue:
    user = guard.current_user()
    result = escalation.acknowledge(guard.services(), escalation_id, user.phone or "", user.name)
    if result == "unknown":
        abort(404)
    guard.audit(
        "escalation_acknowledged",
        target=f"escalation:{escalation_id}",
        result=result.split(":", 1)[0],
        via="console",
    )
    if result.startswith("taken_by:"):
        flash(f"Case {escalation_id} was already taken by {result.split(':', 1)[1]}.", "info")
    else:
        flash(ACK_MESSAGES[result].format(id=escalation_id), "info")
    return redirect(url_for(".index"))


def _board() -> dict[str, Any]:
    services, now = guard.services(), guard.now()
    return {
        "open_cases": open_cases(services.records),
        "recent": recently_taken(services.records, now - RECENT),
        "now": now,
        "refresh_seconds": services.settings.console_board_refresh_seconds,
    }


def open_cases(records: Records) -> list[dict[str, Any]]:
    """Open escalations, emergencies first, longest waiting first, with who was paged."""
    emergency_first = case((Escalation.level == "emergency", 0), else_=1)
    query = (
        select(Escalation, Conversation)
        .join(Conversation, Escalation.conversation_id == Conversation.id)
        .where(Escalation.status.in_(OPEN))
        .order_by(emergency_first, Escalation.created_at, Escalation.id)
    )
    with records.transaction() as session:
        rows = session.execute(query).all()
        paged = _paged(session, [e.id for e, _ in rows])
        return [_case(e, c, paged.get(e.id, [])) for e, c in rows]


def recently_taken(records: Records, since: Any) -> list[dict[str, Any]]:
    query = (
        select(Escalation, Conversation)
        .join(Conversation, Escalation.conversation_id == Conversation.id)
        .where(
            Escalation.status == EscalationStatus.ACKNOWLEDGED.value,
            Escalation.acknowledged_at >= since,
        )
        .order_by(Escalation.acknowledged_at.desc())
        .limit(20)
    )
    with records.transaction() as session:
        return [_case(e, c, []) for e, c in session.execute(query).all()]


def _paged(session: Any, escalation_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    if not escalation_ids:
        return {}
    found: dict[int, list[dict[str, Any]]] = {}
    alerts = session.scalars(
        select(Alert)
        .where(Alert.escalation_id.in_(escalation_ids), Alert.kind == "page")
        .order_by(Alert.id)
    )
    for alert in alerts:
        found.setdefault(alert.escalation_id, []).append(
            {
                "name": alert.recipient_name,
                "channel": alert.channel,
                "status": alert.status,
                "at": alert.created_at,
            }
        )
    return found


def _case(e: Escalation, c: Conversation, paged: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": e.id,
        "level": e.level,
        "status": e.status,
        "reason": e.reason,
        "summary": e.summary,
        "created_at": e.created_at,
        "acknowledged_by": e.acknowledged_by,
        "acknowledged_at": e.acknowledged_at,
        "next_due_at": e.next_due_at,
        "conversation_id": c.id,
        "channel": c.channel,
        "phone": c.phone,
        "paged": paged,
    }
