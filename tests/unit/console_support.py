"""Console test helpers: staff accounts, signing in, patients played through the webhooks."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from telehealth.roster import Roster
from telehealth.users import Users

ADMIN_EMAIL, CLINICIAN_EMAIL = "ann.admin@clinic.example", "cy.clinician@clinic.example"
PASSWORD = "correct horse battery staple"
PRIMARY_PHONE, BACKUP_PHONE = "+16175550111", "+16175550122"

# Patients, played as text messages through the signed /twilio/sms webhook.
EMERGENCY = ["My lower back hurts", "58", "yes"]  # chest pain: 911, escalated
ROUTINE = ["back ache", "40", *["no"] * 13]
URGENT_FEVER = ["back pain", "33", *["no"] * 9, "yes", "no", "no", "no"]  # fever alone
ABANDONED_URGENT = ["back pain", "45", *["no"] * 9, "yes"]  # fever, then silence

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def use_cheap_hashing(monkeypatch: Any) -> None:
    """Argon2 with tiny costs: the real ones take 0.2 s a hash, too slow for many sign-ins."""
    from argon2 import PasswordHasher

    import telehealth.users

    monkeypatch.setattr(
        telehealth.users, "_HASHER", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )


def add_staff(
    services: Any,
    role: str,
    email: str | None = None,
    name: str | None = None,
    phone: str | None = None,
) -> int:
    email = email or (ADMIN_EMAIL if role == "admin" else CLINICIAN_EMAIL)
    name = name or ("Ann Admin" if role == "admin" else "Cy Clinician")
    return Users(services.records).add(
        email=email, name=name, role=role, password=PASSWORD, phone=phone, now=services.clock()
    )


class Staff:
    """A browser-like user of the console: keeps the cookie and the CSRF token."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.token = ""

    def csrf(self, path: str = "/console/sign-in") -> str:
        page = self.client.get(path, follow_redirects=True)
        found = _CSRF.search(page.get_data(as_text=True))
        assert found, f"no CSRF token on {path}"
        self.token = found.group(1)
        return self.token

    def sign_in(
        self, email: str = ADMIN_EMAIL, password: str = PASSWORD, next_path: str | None = None
    ) -> Any:
        token = self.csrf()
        path = "/console/sign-in" + (f"?next={next_path}" if next_path else "")
        response = self.client.post(
            path, data={"email": email, "password": password, "csrf_token": token}
        )
        self.token = ""  # a new session has a new token
        return response

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> Any:
        if not self.token:
            self.csrf("/console/board")  # a page with a form whose view is not audited
        return self.client.post(path, data={**(data or {}), "csrf_token": self.token}, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, **kwargs)


def play(twilio: Any, messages: list[str], phone: str) -> list[str]:
    replies: list[str] = []
    for body in messages:
        replies = twilio.sms(body, phone=phone)
    return replies


def call(twilio: Any, call_sid: str, phone: str, answers: list[dict[str, str]]) -> None:
    """A call through the signed voice webhooks; each answer is Digits or SpeechResult."""
    base = {"CallSid": call_sid, "From": phone, "To": "+12025550100"}
    assert twilio.post("/twilio/voice", base).status_code == 200
    for step, answer in enumerate(answers, start=2):  # the call itself was step 1
        response = twilio.post(f"/twilio/voice/answer?step={step}", {**base, **answer})
        assert response.status_code == 200, response.data


def put_on_call(services: Any, clock: Any, hours: int = 12) -> None:
    roster = Roster(services.records)
    for name, phone, tier in (
        ("Dana Prime", PRIMARY_PHONE, "primary"),
        ("Bo Backup", BACKUP_PHONE, "backup"),
    ):
        clinician_id = roster.add_clinician(name=name, role="physician", phone=phone)
        roster.add_shift(
            clinician_id,
            starts_at=clock.now - timedelta(hours=1),
            ends_at=clock.now + timedelta(hours=hours),
            tier=tier,
        )


def conversation_ids(services: Any) -> list[int]:
    return [c["id"] for c in services.records.list_conversations(limit=1000)]


def audit_actions(services: Any) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    from sqlalchemy import select

    from telehealth.records import AuditEntry

    with services.records.transaction() as session:
        return [
            (e.actor, e.action, e.target, dict(e.detail))
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]
