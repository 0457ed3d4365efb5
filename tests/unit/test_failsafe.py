"""The guard around every Twilio webhook: the signature check, the fail-safe reply, and readiness.

Fail safe (CLINICAL.md s1 principle 9): whatever breaks, Twilio gets 200 and TwiML that tells the
caller to call 911 if this is an emergency; the failure is logged without patient data, written
to the audit log when the database is up, and the on-call clinician is asked to call back.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

import pytest
from twilio.request_validator import RequestValidator

from telehealth.jobs import RQJobs
from telehealth.logs import JsonFormatter
from telehealth.records import Records
from telehealth.triage import engine
from tests.conftest import (
    AUTH_TOKEN, PATIENT, PRIMARY, SUPERVISOR, Call, Twilio, VoiceTurn, alerts, audit_log, broken_redis,
    mentions, messages_of, sms_params,
)

WEBHOOKS = ["/twilio/sms", "/twilio/voice", "/twilio/voice/answer?step=2", "/twilio/voice/status"]
SECRET_BODY = "my neighbour Jane Roe says it is a slipped disc 4471"
SECRET_SPEECH = "yes it is Jane Roe speaking 4471"
CALL_SID = "CA" + "5" * 32


def params_for(path: str) -> dict[str, str]:
    if path == "/twilio/sms":
        return sms_params(SECRET_BODY)
    base = {"CallSid": CALL_SID, "From": PATIENT, "To": "+12025550100", "AccountSid": "AC" + "0" * 32}
    if path.startswith("/twilio/voice/answer"):
        return {**base, "SpeechResult": SECRET_SPEECH, "Confidence": "0.9"}
    if path == "/twilio/voice/status":
        return {**base, "CallStatus": "completed"}
    return {**base, "CallStatus": "ringing"}


def nothing_was_written(services: Any) -> None:
    assert services.records.list_conversations() == []
    assert services.sessions.client.keys("*") == []
    assert alerts(services) == []


# --- signatures --------------------------------------------------------------------------------

def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


FORGERIES: dict[str, Callable[[str, dict[str, str]], tuple[dict[str, str], dict[str, str]]]] = {
    "missing": lambda url, p: ({}, p),
    "wrong token": lambda url, p: ({"X-Twilio-Signature": sign(url, p, token="not-our-token")}, p),
    "signed for another URL": lambda url, p: (
        {"X-Twilio-Signature": sign("http://localhost/twilio/other", p)}, p),
    "tampered parameter": lambda url, p: (
        {"X-Twilio-Signature": sign(url, p)}, {**p, "From": "+16175550999"}),
}


@pytest.mark.parametrize("forgery", FORGERIES)
@pytest.mark.parametrize("path", WEBHOOKS)
def test_a_request_not_signed_by_twilio_is_refused_and_changes_nothing(
        path: str, forgery: str, client: Any, services: Any, console: Any) -> None:
    headers, params = FORGERIES[forgery](f"http://localhost{path}", params_for(path))
    response = client.post(path, data=params, headers=headers)
    assert response.status_code == 403
    nothing_was_written(services)


@pytest.mark.parametrize("path", WEBHOOKS)
def test_a_signed_request_is_accepted(path: str, twilio: Twilio) -> None:
    assert 200 <= twilio.post(path, params_for(path)).status_code < 300


@pytest.mark.parametrize("path", WEBHOOKS)
def test_behind_a_proxy_the_signature_covers_the_public_url(
        path: str, twilio: Twilio, services: Any) -> None:
    services.settings = services.settings.with_overrides(public_base_url="https://triage.example.org")
    params = params_for(path)
    assert twilio.post(path, params).status_code == 403  # signed for the URL the app sees
    public = twilio.post(path, params, signed_url=f"https://triage.example.org{path}")
    assert 200 <= public.status_code < 300


# --- the fail-safe -----------------------------------------------------------------------------

def break_redis(services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services.sessions, "client", broken_redis())


def break_database(services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    services.records.dispose()
    monkeypatch.setattr(services, "records", Records.from_url("sqlite:////nonexistent/dir/records.sqlite3"))


def break_engine(services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        # An error whose message carries patient data must not carry it into the logs.
        raise RuntimeError(f"engine broke on {PATIENT}: {SECRET_BODY} / {SECRET_SPEECH}")

    for name in ("start", "resume", "provisional_level"):
        monkeypatch.setattr(engine, name, explode)


def break_everything(services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis and the database at once. (The database alone is not a failure of the webhook: the
    conversation goes on from Redis and its writes wait in the outbox; see tests/faults.)"""
    break_redis(services, monkeypatch)
    break_database(services, monkeypatch)


BREAKAGES = {"redis": break_redis, "everything": break_everything, "engine": break_engine}
FAILING = {"redis": "SessionUnavailable", "everything": "SessionUnavailable", "engine": "RuntimeError"}


def prepare(path: str, twilio: Twilio) -> None:
    """Before the failure: a conversation in progress on this channel, so every step has state."""
    if path == "/twilio/sms":
        twilio.sms("my back hurts")
    elif path != "/twilio/voice":
        Call(twilio, sid=CALL_SID).start()


def assert_no_patient_data(caplog: pytest.LogCaptureFixture) -> None:
    secrets = [PATIENT, PATIENT.removeprefix("+1"), "Jane Roe", SECRET_BODY, SECRET_SPEECH]
    formatters = [JsonFormatter(), logging.Formatter("%(levelname)s %(name)s %(message)s")]
    for record in caplog.records:
        shown = [fmt.format(record) for fmt in formatters] + [repr(record.__dict__)]
        if record.exc_info:
            shown.append(formatters[1].formatException(record.exc_info))
        for text in shown:
            for secret in secrets:
                assert secret not in text, f"{secret!r} leaked into the log: {text}"
            assert not mentions(text), f"the patient's number leaked into the log: {text}"
    assert all(secret not in caplog.text for secret in secrets) and not mentions(caplog.text)


@pytest.mark.parametrize("breakage", BREAKAGES)
@pytest.mark.parametrize("path", WEBHOOKS)
def test_whatever_breaks_the_caller_still_hears_to_call_911(
        path: str, breakage: str, twilio: Twilio, services: Any, console: Any,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare(path, twilio)
    alerts_before = len(alerts(services))
    BREAKAGES[breakage](services, monkeypatch)
    caplog.set_level(logging.DEBUG)

    response = twilio.post(path, params_for(path))

    if path == "/twilio/voice/status":  # Twilio reads no TwiML from a status callback
        assert 200 <= response.status_code < 300
    elif path == "/twilio/sms":
        [message] = messages_of(response)
        assert "911" in message
    else:
        turn = VoiceTurn(response)
        assert turn.verbs == ["Say", "Hangup"] and "911" in turn.said[0]

    failures = [r for r in caplog.records
                if r.levelno >= logging.ERROR and r.getMessage() == "webhook failed"]
    assert [getattr(r, "error", None) for r in failures] == [FAILING[breakage]]
    assert_no_patient_data(caplog)

    if breakage != "everything":
        [entry] = [e for e in audit_log(services) if e["action"] == "webhook_failure"]
        assert entry["detail"]["error"] == FAILING[breakage]
        assert PATIENT not in json.dumps(entry)
    [fault] = alerts(services)[alerts_before:]
    assert fault.startswith("LINE FAULT") and mentions(fault)  # the callback number belongs in an alert


@pytest.mark.parametrize("breakage, paged", [
    ("redis", PRIMARY), ("engine", PRIMARY), ("everything", SUPERVISOR),
])
def test_the_fault_page_goes_to_the_clinician_on_call_or_without_a_roster_to_the_supervisor(
        breakage: str, paged: str, on_call: Any, twilio: Twilio, services: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    twilio.sms("my back hurts")
    BREAKAGES[breakage](services, monkeypatch)  # the roster lives in the database
    assert "911" in twilio.sms("45")[0]
    [page] = services.pager.sent
    assert page.to == paged and page.body.startswith("LINE FAULT") and mentions(page.body)


def test_when_the_queue_is_down_too_the_fault_alert_is_sent_from_the_web_process(
        twilio: Twilio, services: Any, console: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Production shape: RQ lives on the same Redis, so a Redis outage also takes the queue down.
    dead = broken_redis()
    monkeypatch.setattr(services.sessions, "client", dead)
    monkeypatch.setattr(services, "jobs", RQJobs(dead))
    assert "911" in twilio.sms("hello")[0]
    deadline = time.monotonic() + 5
    while not alerts(services) and time.monotonic() < deadline:
        time.sleep(0.01)
    [fault] = alerts(services)
    assert fault.startswith("LINE FAULT") and mentions(fault)


def test_redis_failing_mid_conversation_still_answers_and_recovers(
        twilio: Twilio, services: Any, protocol: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    twilio.sms("my back hurts")
    working = services.sessions.client
    monkeypatch.setattr(services.sessions, "client", broken_redis())
    assert "911" in twilio.sms("45")[0]
    monkeypatch.setattr(services.sessions, "client", working)
    assert twilio.sms("45") == [protocol.question("chest_pain").sms]


def test_the_fail_safe_texts_fit_one_sms_and_tell_the_caller_what_to_do() -> None:
    from telehealth.triage.gsm import fits_one_segment
    from telehealth.web.twilio_guard import FAILSAFE_SMS, FAILSAFE_VOICE

    assert fits_one_segment(FAILSAFE_SMS) and "911" in FAILSAFE_SMS
    assert "911" in FAILSAFE_VOICE


# --- health --------------------------------------------------------------------------------------

def test_liveness_is_always_ok(client: Any) -> None:
    assert client.get("/healthz").status_code == 200


def test_ready_when_everything_is_up(client: Any) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {
        "redis": True, "database": True, "queue": True, "protocol": True}


@pytest.mark.parametrize("breakage, check", [("redis", "redis"), ("database", "database")])
def test_not_ready_names_the_failing_check(
        breakage: str, check: str, client: Any, services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    {"redis": break_redis, "database": break_database}[breakage](services, monkeypatch)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert [name for name, ok in body["checks"].items() if not ok] == [check]
