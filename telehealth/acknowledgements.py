"""Clinicians answering their pages: "1", "ACK", "ACK 4821" by text, or 1 on the alert call."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from telehealth import escalation
from telehealth.alerts import Alerts

if TYPE_CHECKING:
    from telehealth.services import Services

ACK = re.compile(r"^\W*(?:1|ack|take|taking|yes|ok|okay)\b\W*(?:case\W*)?#?(\d+)?\W*$", re.I)
HOW_TO = "To take a case, reply 1 (your newest case) or ACK and the case number, like ACK 4821."


def reply_to_clinician(services: "Services", clinician: dict[str, Any], body: str) -> list[str]:
    """The answer to a text from a roster number."""
    match = ACK.match(body or "")
    if match is None:
        return [HOW_TO]
    if match.group(1):
        case_id = int(match.group(1))
    else:
        open_cases = [c for c in Alerts(services.records).open_cases_for(clinician["phone"])
                      if c["status"] in ("pending", "unacknowledged")]
        if not open_cases:
            return ["You have no open case to take. " + HOW_TO]
        case_id = open_cases[0]["id"]
    return [take(services, case_id, clinician["phone"], clinician["name"])]


def take(services: "Services", case_id: int, phone: str, name: str) -> str:
    """Acknowledge a case and say, politely, what happened."""
    result = escalation.acknowledge(services, case_id, phone, name)
    if result == "unknown":
        return f"There is no case {case_id}. " + HOW_TO
    if result in ("taken", "yours"):
        found = services.records.get_escalation(case_id) or {}
        conversation = services.records.get_conversation(found.get("conversation_id", 0)) or {}
        number = escalation.readable(conversation.get("phone", "unknown"))
        lead = "Thank you, case" if result == "taken" else "You already have case"
        return f"{lead} {case_id} is yours. Call the patient at {number} now."
    if result.startswith("taken_by:"):
        return f"Case {case_id} was already taken by {result.split(':', 1)[1]}. Thank you, no need to act."
    return f"Case {case_id} is closed. Thank you, no need to act."
