"""Clinicians answering their pages: "1", "ACK", "ACK 4821" by text, or 1 on the alert call."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from telehealth import escalation
from telehealth.alerts import Alerts
from telehealth.phones import to_e164
from telehealth.roster import Roster

if TYPE_CHECKING:
    from telehealth.services import Services

ACK = re.compile(r"^\W*(?:1|ack|take|taking|yes|ok|okay)\b\W*(?:case\W*)?#?(\d+)?\W*$", re.I)
HOW_TO = "To take a case, reply 1 (your newest case) or ACK and the case number, like ACK 4821."


def staff_member(services: "Services", phone: str) -> dict[str, Any] | None:
    """The roster clinician or the supervisor texting from this number, if any."""
    clinician = Roster(services.records).clinician_by_phone(phone)
    if clinician is not None:
        return clinician
    supervisor = to_e164(services.settings.supervisor_phone, services.settings.default_region)
    if supervisor and supervisor == phone:
        return {"id": None, "name": "supervisor", "phone": phone}
    return None


def reply_to_clinician(services: "Services", clinician: dict[str, Any], body: str) -> list[str]:
    """The answer to a text from a roster number."""
    match = ACK.match(body or "")
    if match is None:
        return [HOW_TO]
    if match.group(1):
        case_id = int(match.group(1))
    else:
        paged = Alerts(services.records).open_cases_for(clinician["phone"])
        open_cases = [c for c in paged if c["status"] in ("pending", "unacknowledged")]
        if not open_cases and not paged:
            return ["You have no open case to take. " + HOW_TO]
        # The newest open case; with none open, the newest case paged (so a second "1" hears
        # "already yours" or who took it, not "no open case").
        case_id = (open_cases or paged)[0]["id"]
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
        taken = f"Thank you, case {case_id} is yours." if result == "taken" else f"Case {case_id} is already yours."
        return f"{taken} Call the patient at {number} now."
    if result.startswith("taken_by:"):
        return f"Case {case_id} was already taken by {result.split(':', 1)[1]}. Thank you, no need to act."
    return f"Case {case_id} is closed. Thank you, no need to act."
