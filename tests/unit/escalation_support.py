"""Helpers shared by the escalation tests: start a case, and read what the people involved saw."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from telehealth import escalation
from telehealth.alerts import Alerts
from tests.conftest import PATIENT, Clock

SMS, VOICE = "sms", "voice"
FIRST_WORDS = "My back went when I lifted the sofa on Sunday"
EMERGENCY_ANSWERS = (FIRST_WORDS, "58", "yes")  # chest pain: yes


def pages(services: Any) -> list[tuple[str, str]]:
    return [(s.to, s.channel) for s in services.pager.sent]


def open_case(services: Any, level: str = "emergency", *, phone: str = PATIENT,
              summary: str = "58y: chest pain or short of breath", reason: str = "disposition") -> int:
    """An escalation without playing the conversation (the webhook path is tested separately)."""
    conversation_id = services.records.start_conversation(channel="sms", phone=phone, protocol_version="test",
                                                          at=services.clock())
    return escalation.open_escalation(services, conversation_id, level=level, reason=reason, summary=summary)


def play_emergency(twilio: Any, services: Any) -> int:
    for answer in EMERGENCY_ANSWERS:
        replies = twilio.sms(answer)
    assert "Call 911 now." in replies[-1]
    conversation = services.records.latest_conversation(PATIENT)
    assert conversation["disposition"] == "emergency"
    return conversation["escalation"]["id"]


def case(services: Any, escalation_id: int) -> dict[str, Any]:
    found = services.records.get_escalation(escalation_id)
    assert found is not None
    return found


def events(services: Any, escalation_id: int, kind: str | None = None) -> list[dict[str, Any]]:
    return [e for e in case(services, escalation_id)["events"] if kind is None or e["kind"] == kind]


def at(clock: Clock, start: datetime, seconds: float) -> None:
    clock.now = start + timedelta(seconds=seconds)


def one_alert_per_step_and_recipient(services: Any, escalation_id: int) -> list[dict[str, Any]]:
    alerts = [a for a in Alerts(services.records).for_escalation(escalation_id) if a["kind"] == "page"]
    keys = Counter((a["step"], a["recipient"], a["channel"]) for a in alerts)
    assert [k for k, n in keys.items() if n > 1] == []
    return alerts
