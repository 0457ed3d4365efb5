"""Browser tests: Debian's headless Chromium, driven by Playwright, against a live server.

The server is the real app on a free port, in a thread, with the test services; patients are played
through the signed Twilio webhooks over HTTP. Screenshots land in tests/browser/artifacts/.
Without /usr/bin/chromium (or Playwright) these tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from twilio.request_validator import RequestValidator
from werkzeug.serving import make_server

from telehealth import services as services_module
from tests.conftest import AUTH_TOKEN
from tests.unit.console_support import BACKUP_PHONE, PRIMARY_PHONE, add_staff

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable("no /usr/bin/chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[browser]')")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Patients:
    """Posts signed Twilio webhooks to the live server over HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url, self.validator, self.count = base_url, RequestValidator(AUTH_TOKEN), 0

    def post(self, path: str, params: dict[str, str]) -> requests.Response:
        url = f"{self.base_url}{path}"
        signature = self.validator.compute_signature(url, params)
        response = requests.post(
            url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10
        )
        assert response.status_code in (200, 204), response.text
        return response

    def texts(self, phone: str, *bodies: str) -> None:
        for body in bodies:
            self.count += 1
            self.post(
                "/twilio/sms",
                {
                    "From": phone,
                    "To": "+12025550100",
                    "Body": body,
                    "MessageSid": f"SM{self.count:032d}",
                },
            )

    def calls(self, call_sid: str, phone: str, *answers: dict[str, str]) -> None:
        base = {"CallSid": call_sid, "From": phone, "To": "+12025550100"}
        self.post("/twilio/voice", base)
        for step, answer in enumerate(answers, start=2):
            self.post(f"/twilio/voice/answer?step={step}", {**base, **answer})


@pytest.fixture
def live(app: Any, services: Any) -> Iterator[dict[str, Any]]:
    """The app served on 127.0.0.1 on the wall clock, with a roster on call and two accounts."""
    services.clock = services_module.utcnow  # real time, as a person at the browser sees it
    put_on_call(services)
    add_staff(services, "admin")
    add_staff(services, "clinician")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield {"base_url": base_url, "patients": Patients(base_url), "services": services}
    finally:
        server.shutdown()
        thread.join(timeout=5)


def put_on_call(services: Any) -> None:
    """A primary and a backup on call now; the primary's next shift leaves a gap in the week."""
    from datetime import timedelta

    from telehealth.roster import Roster

    roster, now = Roster(services.records), services.clock()
    dana = roster.add_clinician(name="Dana Prime", role="physician", phone=PRIMARY_PHONE)
    bo = roster.add_clinician(name="Bo Backup", role="nurse practitioner", phone=BACKUP_PHONE)
    roster.add_shift(
        dana, starts_at=now - timedelta(hours=2), ends_at=now + timedelta(hours=30), tier="primary"
    )
    roster.add_shift(
        dana, starts_at=now + timedelta(days=2), ends_at=now + timedelta(days=4), tier="primary"
    )
    roster.add_shift(
        bo, starts_at=now - timedelta(hours=2), ends_at=now + timedelta(days=7), tier="backup"
    )
