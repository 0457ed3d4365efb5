"""Conversation pages: the filtered list, one conversation, and a clinician's note on it."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from telehealth.console import casefile, guard, search
from telehealth.notes import OUTCOME_LABELS, NoteError, Notes
from telehealth.records import Channel, ConversationStatus, Disposition

bp = Blueprint("conversations", __name__)


@bp.get("/")
def index() -> ResponseReturnValue:
    services = guard.services()
    filters, problems = search.Filters.from_args(request.args)
    for problem in problems:
        flash(problem, "error")
    page = search.find(services.records, filters, services.settings.console_timezone)
    guard.audit("conversation_list", detail_filters=filters.audit_detail(), page=page.number)
    return render_template(
        "console/conversations.html",
        page=page,
        filters=filters,
        dispositions=[d.value for d in Disposition],
        channels=[c.value for c in Channel],
        statuses=[s.value for s in ConversationStatus],
        escalation_states=search.ESCALATION_STATES,
    )


@bp.get("/<int:conversation_id>")
def show(conversation_id: int) -> ResponseReturnValue:
    services = guard.services()
    found = casefile.load(services.records, services.protocol, conversation_id)
    if found is None:
        abort(404)
    guard.audit("conversation_view", target=f"conversation:{conversation_id}")
    return render_template(
        "console/conversation.html",
        case=found,
        outcomes=OUTCOME_LABELS,
        protocol_version=services.protocol.version,
    )


@bp.post("/<int:conversation_id>/notes")
def add_note(conversation_id: int) -> ResponseReturnValue:
    user = guard.current_user()
    try:
        note_id = Notes(guard.services().records).add(
            conversation_id,
            author_id=user.id,
            author_name=user.name,
            outcome=request.form.get("outcome", ""),
            text=request.form.get("text", ""),
            now=guard.now(),
        )
    except NoteError as exc:
        flash(f"The note was not saved: {exc}.", "error")
    else:
        guard.audit(
            "note_added",
            target=f"conversation:{conversation_id}",
            note=note_id,
            outcome=request.form.get("outcome", ""),
        )
        flash("Note saved.", "info")
    return redirect(url_for(".show", conversation_id=conversation_id) + "#notes")
