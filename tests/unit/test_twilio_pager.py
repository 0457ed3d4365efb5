"""TwilioPager over the real `twilio` library, with canned HTTP answers instead of the network."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

from telehealth.paging import PagingFailed, RecipientOptedOut
from telehealth.settings import Settings
from telehealth.twilio_pager import TwilioPager

ACCOUNT = "AC" + "0" * 32
FROM = "+12025550100"
CLINICIAN = "+16175550111"
SOMEONE_ELSE = "+16175550122"
API = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}"
SINCE = datetime(2026, 11, 26, 12, 0, 0, 250000, tzinfo=timezone.utc)
SMS_SID, CALL_SID = "SM" + "a" * 32, "CA" + "b" * 32
CALLBACK = "https://line.example/twilio/alerts/status?alert=7"
TWIML = "https://line.example/twilio/alerts/call?alert=8"
BODY = "EMERGENCY back pain 4821: 58y: chest pain. Call +1 617-555-0123. Reply 1 to take it."


@dataclass
class Sent:
    method: str
    url: str
    params: dict[str, Any]
    data: dict[str, Any]


class CannedHttp(TwilioHttpClient):
    """The `twilio` library's HTTP client with canned answers: records each request, never connects."""

    def __init__(self, *answers: Response | Exception) -> None:
        super().__init__(pool_connections=False)
        self.answers, self.requests = list(answers), []

    def request(self, method: str, url: str, params: Any = None, data: Any = None, headers: Any = None,
                auth: Any = None, timeout: Any = None, allow_redirects: bool = False) -> Response:
        self.requests.append(Sent(method, url, dict(params or {}), dict(data or {})))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(status, json.dumps(payload), {"Content-Type": "application/json"})


def _error(status: int, code: int | None) -> Response:
    return _json(status, {"code": code, "message": "refused", "more_info": "https://www.twilio.com/docs/errors",
                          "status": status})


def _stamp(moment: datetime) -> str:
    return format_datetime(moment.replace(microsecond=0), usegmt=True)


def _message(to: str, at: datetime, body: str = BODY, sid: str = SMS_SID) -> dict[str, Any]:
    return {"sid": sid, "to": to, "from": FROM, "body": body, "status": "queued", "account_sid": ACCOUNT,
            "date_created": _stamp(at), "date_sent": _stamp(at)}


def _call(to: str, at: datetime, sid: str = CALL_SID) -> dict[str, Any]:
    return {"sid": sid, "to": to, "from": FROM, "status": "queued", "account_sid": ACCOUNT,
            "date_created": _stamp(at), "start_time": _stamp(at)}


def _page_of(kind: str, items: list[dict[str, Any]]) -> Response:
    uri = f"/2010-04-01/Accounts/{ACCOUNT}/{kind.capitalize()}.json"
    return _json(200, {kind: items, "first_page_uri": uri, "next_page_uri": None, "previous_page_uri": None,
                       "page": 0, "page_size": 20, "start": 0, "end": len(items) - 1, "uri": uri})


def _pager(*answers: Response | Exception) -> tuple[TwilioPager, CannedHttp]:
    http = CannedHttp(*answers)
    settings = Settings(twilio_account_sid=ACCOUNT, twilio_auth_token="token", twilio_phone_number=FROM)
    return TwilioPager.from_settings(settings, http_client=http), http


# --- requests --------------------------------------------------------------------------------


def test_send_sms_posts_to_from_body_and_the_status_callback() -> None:
    pager, http = _pager(_json(201, _message(CLINICIAN, SINCE)))
    assert pager.send_sms(CLINICIAN, BODY, status_callback=CALLBACK) == SMS_SID
    (sent,) = http.requests
    assert (sent.method, sent.url) == ("POST", f"{API}/Messages.json")
    assert sent.data == {"To": CLINICIAN, "From": FROM, "Body": BODY, "StatusCallback": CALLBACK}


def test_send_sms_without_a_callback_sends_none() -> None:
    pager, http = _pager(_json(201, _message(CLINICIAN, SINCE)))
    pager.send_sms(CLINICIAN, BODY)
    assert "StatusCallback" not in http.requests[0].data


def test_place_call_posts_the_twiml_url_and_asks_for_every_call_status() -> None:
    pager, http = _pager(_json(201, _call(CLINICIAN, SINCE)))
    assert pager.place_call(CLINICIAN, twiml_url=TWIML, status_callback=CALLBACK) == CALL_SID
    (sent,) = http.requests
    assert (sent.method, sent.url) == ("POST", f"{API}/Calls.json")
    assert (sent.data["To"], sent.data["From"]) == (CLINICIAN, FROM)
    assert (sent.data["Url"], sent.data["Method"]) == (TWIML, "POST")
    assert (sent.data["StatusCallback"], sent.data["StatusCallbackMethod"]) == (CALLBACK, "POST")
    assert sent.data["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]


# --- errors, translated at the boundary ------------------------------------------------------


@pytest.mark.parametrize(("answer", "transient", "code"), [
    (_error(429, 20429), True, "20429"),
    (_error(500, None), True, "500"),
    (_error(503, 20503), True, "20503"),
    (_error(400, 21211), False, "21211"),  # not a valid phone number
    (_error(400, 21614), False, "21614"),  # not a mobile number
    (_error(401, 20003), False, "20003"),  # bad credentials: retrying will not help
    (requests.Timeout("read timed out"), True, "network"),
    (requests.ConnectionError("connection refused"), True, "network"),
])
@pytest.mark.parametrize("channel", ["sms", "voice"])
def test_twilio_errors_become_paging_failed(
    answer: Response | Exception, transient: bool, code: str, channel: str,
) -> None:
    pager, _ = _pager(answer)
    with pytest.raises(PagingFailed) as caught:
        if channel == "sms":
            pager.send_sms(CLINICIAN, BODY)
        else:
            pager.place_call(CLINICIAN, twiml_url=TWIML)
    assert (caught.value.transient, caught.value.code) == (transient, code)
    assert not isinstance(caught.value, RecipientOptedOut)
    assert CLINICIAN not in str(caught.value)


def test_an_sms_opt_out_becomes_recipient_opted_out() -> None:
    pager, _ = _pager(_error(400, 21610))
    with pytest.raises(RecipientOptedOut) as caught:
        pager.send_sms(CLINICIAN, BODY)
    assert (caught.value.transient, caught.value.code) == (False, "21610")


@pytest.mark.parametrize("to", ["console", "6175550111", ""])
def test_a_number_twilio_cannot_use_fails_permanently_without_a_request(to: str) -> None:
    pager, http = _pager()
    with pytest.raises(PagingFailed) as caught:
        pager.send_sms(to, BODY)
    assert (caught.value.transient, caught.value.code) == (False, "21211")
    assert http.requests == []


def test_the_from_number_must_be_e164() -> None:
    settings = Settings(twilio_account_sid=ACCOUNT, twilio_auth_token="token", twilio_phone_number="202-555-0100")
    with pytest.raises(ValueError, match="E.164"):
        TwilioPager.from_settings(settings, http_client=CannedHttp())


# --- find_sent: only a page that is really this one ------------------------------------------


def test_find_sent_asks_for_pages_to_that_number_from_our_number_since_then() -> None:
    pager, http = _pager(_page_of("messages", []), _page_of("calls", []))
    pager.find_sent(CLINICIAN, "sms", SINCE)
    pager.find_sent(CLINICIAN, "voice", SINCE)
    sms, call = http.requests
    assert (sms.method, sms.url) == ("GET", f"{API}/Messages.json")
    assert (sms.params["To"], sms.params["From"]) == (CLINICIAN, FROM)
    assert sms.params["DateSent>"] == "2026-11-26T12:00:00Z"
    assert (call.method, call.url) == ("GET", f"{API}/Calls.json")
    assert (call.params["To"], call.params["From"]) == (CLINICIAN, FROM)
    assert call.params["StartTime>"] == "2026-11-26T12:00:00Z"


@pytest.mark.parametrize(("channel", "items", "found"), [
    ("sms", [_message(CLINICIAN, SINCE)], SMS_SID),  # Twilio's stamp drops the 0.25 s
    ("sms", [_message(CLINICIAN, SINCE + timedelta(seconds=5), body="Sent from your Twilio trial account - " + BODY)],
     SMS_SID),
    ("sms", [], None),
    ("sms", [_message(SOMEONE_ELSE, SINCE)], None),  # a filter Twilio (or a mock) ignored
    ("sms", [_message(CLINICIAN, SINCE - timedelta(hours=3))], None),  # earlier the same day
    ("sms", [_message(CLINICIAN, SINCE, body=BODY.replace("4821", "4822"))], None),  # another case
    ("sms", [_message(SOMEONE_ELSE, SINCE, sid="SM" + "c" * 32), _message(CLINICIAN, SINCE)], SMS_SID),
    ("voice", [_call(CLINICIAN, SINCE + timedelta(seconds=1))], CALL_SID),
    ("voice", [_call(SOMEONE_ELSE, SINCE)], None),
    ("voice", [_call(CLINICIAN, SINCE - timedelta(minutes=30))], None),
])
def test_find_sent_only_returns_a_page_that_matches(
    channel: str, items: list[dict[str, Any]], found: str | None,
) -> None:
    pager, _ = _pager(_page_of("messages" if channel == "sms" else "calls", items))
    body = BODY if channel == "sms" else TWIML
    assert pager.find_sent(CLINICIAN, channel, SINCE, body=body) == found


def test_find_sent_failing_is_a_transient_paging_failure() -> None:
    pager, _ = _pager(_error(503, 20503))
    with pytest.raises(PagingFailed) as caught:
        pager.find_sent(CLINICIAN, "sms", SINCE, body=BODY)
    assert caught.value.transient is True
