"""Fixtures layered app -> client -> helper: a signed Twilio client and the flows."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import fakeredis
import pytest
from twilio.request_validator import RequestValidator

from telehealth import services as services_module
from telehealth.app import create_app
from telehealth.jobs import InlineJobs
from telehealth.paging import FakePager
from telehealth.settings import ROOT, Settings
from telehealth.triage import protocol as protocol_module

AUTH_TOKEN = "test-auth-token"
API_TOKEN = "test-api-token"
PATIENT = "+16175550123"


@pytest.fixture(scope="session")
def protocol() -> protocol_module.Protocol:
    return protocol_module.load(ROOT / "flows")


class Clock:
    """A clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        from datetime import timedelta

        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        twilio_auth_token=AUTH_TOKEN, twilio_account_sid="AC" + "0" * 32,
        twilio_phone_number="+12025550100", database_url=f"sqlite:///{tmp_path / 'test.sqlite3'}",
        api_token=API_TOKEN, secret_key="test-secret", run_jobs_inline=True,
    )


@pytest.fixture
def services(settings: Settings, clock: Clock) -> Any:
    built = services_module.build(
        settings, pager=FakePager(), client=fakeredis.FakeRedis(), create_schema=True,
        jobs=InlineJobs(synchronous=True),
    )
    built.jobs.services = built  # type: ignore[attr-defined]
    built.clock = clock
    yield built
    built.records.dispose()


@pytest.fixture
def app(services: Any) -> Any:
    return create_app(services=services)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


class Twilio:
    """Posts webhooks the way Twilio does: form-encoded and signed."""

    def __init__(self, client: Any, token: str = AUTH_TOKEN) -> None:
        self.client, self.validator = client, RequestValidator(token)
        self.count = 0

    def post(self, path: str, params: dict[str, str], *, sign: bool = True) -> Any:
        url = f"http://localhost{path}"
        headers = {"X-Twilio-Signature": self.validator.compute_signature(url, params)} if sign else {}
        return self.client.post(path, data=params, headers=headers)

    def sms(self, body: str, phone: str = PATIENT, sid: str | None = None) -> list[str]:
        self.count += 1
        response = self.post("/twilio/sms", {"From": phone, "To": "+12025550100", "Body": body,
                                             "MessageSid": sid or f"SM{self.count:032d}"})
        assert response.status_code == 200, response.data
        root = ElementTree.fromstring(response.data)
        assert root.tag == "Response"
        return [m.text or "" for m in root.findall("./Message")]


@pytest.fixture
def twilio(client: Any) -> Twilio:
    return Twilio(client)


def api_get(client: Any, path: str) -> Any:
    return client.get(path, headers={"Authorization": f"Bearer {API_TOKEN}"})
