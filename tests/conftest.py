"""Fixtures layered app -> client -> helper: a signed Twilio client and the flows."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import fakeredis
import pytest
from sqlalchemy import event
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
def services(settings: Settings, clock: Clock, protocol: protocol_module.Protocol) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        if Path(settings.flows_dir) == ROOT / "flows":  # parsed once per session, not per test
            patch.setattr(protocol_module, "load", lambda _flows_dir: protocol)
        built = services_module.build(
            settings, pager=FakePager(), client=fakeredis.FakeRedis(), jobs=InlineJobs(synchronous=True),
        )
    built.jobs.services = built  # type: ignore[attr-defined]
    built.clock = clock
    # A throw-away test database need not survive a power cut: no fsync on any commit, from the
    # schema on (the disk is shared with everything else running on the machine).
    event.listen(built.records.engine, "connect",
                 lambda connection, _record: connection.execute("PRAGMA synchronous=OFF"))
    built.records.create_schema()
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

    def post(self, path: str, params: dict[str, str], *, sign: bool = True,
             signed_url: str | None = None) -> Any:
        """POST `params` to `path`; `signed_url` is the URL the signature covers (default: this one)."""
        url = signed_url or f"http://localhost{path}"
        headers = {"X-Twilio-Signature": self.validator.compute_signature(url, params)} if sign else {}
        return self.client.post(path, data=params, headers=headers)

    def sms(self, body: str, phone: str = PATIENT, sid: str | None = None) -> list[str]:
        return messages_of(self.sms_response(body, phone=phone, sid=sid))

    def sms_response(self, body: str, phone: str = PATIENT, sid: str | None = None) -> Any:
        self.count += 1
        return self.post("/twilio/sms", sms_params(body, phone, sid or f"SM{self.count:032d}"))


@pytest.fixture
def twilio(client: Any) -> Twilio:
    return Twilio(client)


def api_get(client: Any, path: str) -> Any:
    return client.get(path, headers={"Authorization": f"Bearer {API_TOKEN}"})


# --- escalation: an on-call roster, a supervisor, and jobs the test runs by hand -------------

PRIMARY, PRIMARY_NAME = "+16175550111", "Dana Prime"
BACKUP, BACKUP_NAME = "+16175550122", "Bo Backup"
SUPERVISOR = "+16175550199"
BASE_URL = "http://localhost"  # what the `twilio` helper signs, so status callbacks verify


@pytest.fixture
def on_call(services: Any, clock: Clock) -> Any:
    """A primary and a backup on shift now (and for 12 hours), SUPERVISOR_PHONE set, pages timed by `clock`."""
    from datetime import timedelta

    from telehealth.roster import Roster

    services.settings = services.settings.with_overrides(supervisor_phone=SUPERVISOR, public_base_url=BASE_URL)
    services.pager.clock = clock
    roster = Roster(services.records)
    start, end = clock.now - timedelta(hours=1), clock.now + timedelta(hours=12)
    for name, phone, tier in ((PRIMARY_NAME, PRIMARY, "primary"), (BACKUP_NAME, BACKUP, "backup")):
        clinician_id = roster.add_clinician(name=name, role="physician", phone=phone)
        roster.add_shift(clinician_id, starts_at=start, ends_at=end, tier=tier)
    return roster


class RecordingJobs:
    """Jobs that wait for the test: `run_next()` / `drain()` run them the way an rq worker would."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.queued: list[tuple[str, tuple[Any, ...]]] = []
        self.scheduled: list[tuple[datetime, str, tuple[Any, ...]]] = []
        self.failures: list[tuple[str, Exception]] = []

    def enqueue(self, func_path: str, *args: Any, job_id: str | None = None) -> None:
        self.queued.append((func_path, args))

    def enqueue_at(self, when: datetime, func_path: str, *args: Any) -> None:
        self.scheduled.append((when, func_path, args))

    def ping(self) -> bool:
        return True

    def names(self) -> list[str]:
        return [name.rsplit(".", 1)[-1] for name, _ in self.queued]

    def run_next(self) -> None:
        """Run the oldest queued job; its exception (as RQ would record it) propagates."""
        from telehealth.jobs import resolve

        name, args = self.queued.pop(0)
        resolve(name)(*args, services=self.services)

    def drain(self) -> None:
        """Run every queued job, and the jobs they queue; failures are kept in `failures`."""
        while self.queued:
            name = self.queued[0][0]
            try:
                self.run_next()
            except Exception as exc:  # what RQ would mark as a failed job
                self.failures.append((name, exc))


@pytest.fixture
def jobs(services: Any) -> RecordingJobs:
    services.jobs = RecordingJobs(services)
    return services.jobs


# --- webhook helpers: Twilio's parameters, TwiML read as XML, a caller driven like Twilio ------

ACCOUNT_SID = "AC" + "0" * 32
TWILIO_NUMBER = "+12025550100"


def sms_params(body: str, phone: str = PATIENT, sid: str = "SM" + "1" * 32) -> dict[str, str]:
    return {"From": phone, "To": TWILIO_NUMBER, "Body": body, "MessageSid": sid,
            "AccountSid": ACCOUNT_SID, "NumMedia": "0"}


def twiml_root(response: Any) -> ElementTree.Element:
    """The TwiML document of a webhook response, checked the way Twilio would read it."""
    assert response.status_code == 200, (response.status_code, response.data)
    assert response.mimetype == "text/xml", response.mimetype
    root = ElementTree.fromstring(response.data)
    assert root.tag == "Response"
    return root


def messages_of(response: Any) -> list[str]:
    """The texts of an SMS reply, in order; only <Message> verbs are allowed."""
    root = twiml_root(response)
    assert all(child.tag == "Message" for child in root), [child.tag for child in root]
    return [m.text or "" for m in root]


class VoiceTurn:
    """One TwiML document Twilio would play on a call, with what a caller hears and can do."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.root = twiml_root(response)

    @property
    def verbs(self) -> list[str]:
        return [child.tag for child in self.root]

    @property
    def said(self) -> list[str]:
        """Every <Say> in the order the caller hears it, the ones inside <Gather> included."""
        return [say.text or "" for say in self.root.iter("Say")]

    @property
    def gather(self) -> ElementTree.Element | None:
        return self.root.find("Gather")

    @property
    def prompt(self) -> str | None:
        """The question read inside <Gather>, while the caller can answer."""
        gather = self.gather
        return None if gather is None else " ".join(s.text or "" for s in gather.iter("Say"))

    @property
    def redirect(self) -> ElementTree.Element | None:
        return self.root.find("Redirect")

    @property
    def hung_up(self) -> bool:
        return bool(self.verbs) and self.verbs[-1] == "Hangup"


class Call:
    """A caller on the line, driven the way Twilio drives a call.

    Input goes to the <Gather action>; saying nothing follows the <Redirect> after the <Gather>,
    as Twilio does when the gather times out; `retry()` re-sends the last request unchanged.
    """

    def __init__(self, twilio: Twilio, phone: str = PATIENT, sid: str = "CA" + "1" * 32) -> None:
        self.twilio, self.phone, self.sid = twilio, phone, sid
        self.last: VoiceTurn | None = None
        self.turns: list[VoiceTurn] = []
        self._last_request: tuple[str, dict[str, str]] | None = None

    def params(self, **extra: str) -> dict[str, str]:
        return {"CallSid": self.sid, "From": self.phone, "To": TWILIO_NUMBER, "AccountSid": ACCOUNT_SID,
                "Direction": "inbound", "CallStatus": "in-progress", **extra}

    def start(self) -> VoiceTurn:
        return self._post("/twilio/voice", self.params(CallStatus="ringing"))

    def press(self, digits: str) -> VoiceTurn:
        return self._post(self._action(), self.params(Digits=digits))

    def say(self, speech: str, confidence: float = 0.92) -> VoiceTurn:
        return self._post(self._action(), self.params(SpeechResult=speech, Confidence=str(confidence)))

    def silence(self) -> VoiceTurn:
        """The gather timed out with no input: Twilio goes on to the next verb, the <Redirect>."""
        assert self.last is not None and self.last.redirect is not None, "nothing to follow on silence"
        redirect = self.last.redirect
        assert redirect.get("method", "POST") == "POST"
        return self._post(self._resolve(redirect.text or ""), self.params())

    def retry(self) -> VoiceTurn:
        assert self._last_request is not None
        return self._post(*self._last_request)

    def answer(self, *inputs: str) -> VoiceTurn:
        """Press keys ("2", "45#"), say words ("say:yes") or stay silent ("silence"), in turn."""
        for given in inputs:
            if given == "silence":
                self.silence()
            elif given.startswith("say:"):
                self.say(given.removeprefix("say:"))
            else:
                self.press(given)
        assert self.last is not None
        return self.last

    def status(self, status: str = "completed") -> Any:
        return self.twilio.post("/twilio/voice/status", self.params(CallStatus=status, CallDuration="42"))

    def _action(self) -> str:
        assert self.last is not None and self.last.gather is not None, "the call is not waiting for input"
        gather = self.last.gather
        assert gather.get("method", "POST") == "POST"
        return self._resolve(gather.get("action") or "")

    @staticmethod
    def _resolve(url: str) -> str:
        # Twilio resolves a relative URL against the document's URL; tests only need the path.
        parsed = urlsplit(url)
        assert parsed.path.startswith("/twilio/voice/"), url
        return parsed.path + (f"?{parsed.query}" if parsed.query else "")

    def _post(self, path: str, params: dict[str, str]) -> VoiceTurn:
        self._last_request = (path, params)
        self.last = VoiceTurn(self.twilio.post(path, params))
        self.turns.append(self.last)
        return self.last


@pytest.fixture
def call(twilio: Twilio) -> Call:
    return Call(twilio)


def conversation(client: Any, phone: str = PATIENT, index: int = 0) -> dict[str, Any]:
    """The JSON API's full view of a number's conversation, newest first (index 0)."""
    listed = api_get(client, f"/api/conversations?phone={quote(phone)}")
    assert listed.status_code == 200, listed.data
    summaries = listed.get_json()["conversations"]
    assert len(summaries) > index, summaries
    found = api_get(client, f"/api/conversations/{summaries[index]['id']}")
    assert found.status_code == 200, found.data
    return found.get_json()


@pytest.fixture
def console(services: Any) -> Any:
    """Pages are printed, as in embedded mode with nobody on call: what the operator sees."""
    import io

    from telehealth.paging import ConsolePager

    services.pager = ConsolePager(io.StringIO())
    return services.pager.stream


def alerts(services: Any) -> list[str]:
    """What clinicians were paged with, in order: the console's lines, or a fake pager's texts."""
    stream = getattr(services.pager, "stream", None)
    if stream is not None:
        return [line.split("] ", 1)[-1] for line in stream.getvalue().splitlines()]
    return [page.body for page in services.pager.sent]


def audit_log(services: Any) -> list[dict[str, Any]]:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from telehealth.records import AuditEntry

    with Session(services.records.engine) as session:
        return [{"action": e.action, "detail": e.detail}
                for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def broken_redis() -> Any:
    """A Redis client whose every command fails the way a dead server does (ConnectionError)."""
    server = fakeredis.FakeServer()
    server.connected = False
    return fakeredis.FakeRedis(server=server)


def mentions(text: str, phone: str = PATIENT) -> bool:
    """Whether `text` gives `phone` in any format: +16175550123, +1 617-555-0123, (617) 555-0123."""
    digits = "".join(ch for ch in text if ch.isdigit())
    return phone.removeprefix("+1") in digits
