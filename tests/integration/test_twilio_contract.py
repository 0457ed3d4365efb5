"""The Twilio pager's real REST calls, checked against Twilio's own API contract.

The `twilio` library talks to Stoplight Prism serving ../shared/vendor/twilio_api_v2010.json
(Twilio's OpenAPI description). Prism validates each request (path, auth, form fields and their
types) and answers from the spec's examples, so a 2xx means the request is one Twilio's contract
accepts. Prism does not check what the spec cannot say: From or MessagingServiceSid, Body or
MediaUrl, E.164 numbers. Those are asserted here on the requests themselves, and the pager's own
checks (that stop a bad page before any request) are tested beside them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest

from telehealth.paging import PagingFailed
from telehealth.settings import Settings
from telehealth.twilio_pager import BaseUrlHttpClient, TwilioPager
from tests.integration.conftest import ACCOUNT_SID, LINE_NUMBER, TWILIO_TOKEN

pytestmark = pytest.mark.integration

CLINICIAN = "+16175550111"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
CALLBACK = "https://line.example.org/twilio/alerts/status?alert=7"
TWIML = "https://line.example.org/twilio/alerts/call?alert=7"
ALERT = "EMERGENCY back pain 7: loss of bladder control. Call +1 617-555-0123. Reply 1 to take it."


@dataclass
class Exchange:
    method: str
    url: str
    params: dict[str, Any]
    data: dict[str, Any]
    auth: tuple[str, str] | None
    status: int
    text: str


class PrismHttpClient(BaseUrlHttpClient):
    """The production base-URL client, plus what Prism needs and a record of every exchange.

    Prism does not read repeated form keys as an array (stoplight/prism#2473), so list values go
    as `Key[]`; Twilio itself wants the repeated keys the library sends.
    """

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, timeout=10)
        self.exchanges: list[Exchange] = []

    def request(self, method: str, url: str, params: Any = None, data: Any = None, headers: Any = None,
                *args: Any, **kwargs: Any) -> Any:
        if data:
            data = {(f"{k}[]" if isinstance(v, list) else k): v for k, v in data.items()}
        response = super().request(method, url, params, data, headers, *args, **kwargs)
        sent = self._test_only_last_request
        self.exchanges.append(Exchange(method, sent.url, dict(params or {}), dict(data or {}),
                                       sent.auth, response.status_code, response.text))
        return response


@pytest.fixture
def settings(prism: str) -> Settings:
    return Settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=TWILIO_TOKEN,
                    twilio_phone_number=LINE_NUMBER, twilio_api_base_url=prism)


@pytest.fixture
def http(prism: str) -> PrismHttpClient:
    return PrismHttpClient(prism)


@pytest.fixture
def pager(settings: Settings, http: PrismHttpClient) -> TwilioPager:
    return TwilioPager.from_settings(settings, http_client=http)


def only(http: PrismHttpClient) -> Exchange:
    assert len(http.exchanges) == 1, [(e.method, e.url, e.status) for e in http.exchanges]
    return http.exchanges[0]


def assert_accepted(exchange: Exchange, method: str, resource: str, status: int) -> None:
    """Prism took it: our account's resource path, Basic auth with the account SID, a 2xx."""
    assert exchange.status == status, f"Prism refused {exchange.method} {exchange.url}: {exchange.text[:1500]}"
    assert exchange.method == method
    assert urlsplit(exchange.url).path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/{resource}.json"
    assert exchange.auth == (ACCOUNT_SID, TWILIO_TOKEN)  # HTTP Basic, as the spec's security scheme says


def test_send_sms_is_a_request_twilio_accepts(pager: TwilioPager, http: PrismHttpClient) -> None:
    sid = pager.send_sms(CLINICIAN, ALERT, status_callback=CALLBACK)

    assert re.fullmatch(r"SM[0-9a-fA-F]{32}", sid)
    exchange = only(http)
    assert_accepted(exchange, "POST", "Messages", 201)
    form = exchange.data
    # What Prism cannot check: a sender, a body, numbers in E.164, the status callback.
    assert E164.match(form["To"]) and form["To"] == CLINICIAN
    assert E164.match(form["From"]) and form["From"] == LINE_NUMBER
    assert "MessagingServiceSid" not in form
    assert form["Body"] == ALERT and 0 < len(form["Body"]) <= 1600
    assert form["StatusCallback"] == CALLBACK
    assert set(form) == {"To", "From", "Body", "StatusCallback"}


def test_place_call_with_status_events_is_a_request_twilio_accepts(
        pager: TwilioPager, http: PrismHttpClient) -> None:
    sid = pager.place_call(CLINICIAN, twiml_url=TWIML, status_callback=CALLBACK)

    assert re.fullmatch(r"CA[0-9a-fA-F]{32}", sid)
    exchange = only(http)
    assert_accepted(exchange, "POST", "Calls", 201)
    form = exchange.data
    assert E164.match(form["To"]) and form["To"] == CLINICIAN
    assert E164.match(form["From"]) and form["From"] == LINE_NUMBER
    assert form["Url"] == TWIML and form["Method"] == "POST"  # Url (not Twiml or ApplicationSid)
    assert form["StatusCallback"] == CALLBACK and form["StatusCallbackMethod"] == "POST"
    assert form["StatusCallbackEvent[]"] == ["initiated", "ringing", "answered", "completed"]


def test_a_call_without_status_callback_sends_no_callback_fields(pager: TwilioPager, http: PrismHttpClient) -> None:
    pager.place_call(CLINICIAN, twiml_url=TWIML)

    exchange = only(http)
    assert_accepted(exchange, "POST", "Calls", 201)
    assert set(exchange.data) == {"To", "From", "Url", "Method"}


@pytest.mark.parametrize(("channel", "resource", "after"), [
    ("sms", "Messages", "DateSent>"), ("voice", "Calls", "StartTime>")])
def test_find_sent_lists_by_recipient_and_trusts_only_a_matching_one(
        pager: TwilioPager, http: PrismHttpClient, channel: str, resource: str, after: str) -> None:
    since = datetime.now(timezone.utc) - timedelta(minutes=2)

    found = pager.find_sent(CLINICIAN, channel, since, body=ALERT if channel == "sms" else TWIML)

    exchange = only(http)
    assert_accepted(exchange, "GET", resource, 200)
    assert exchange.params["To"] == CLINICIAN and exchange.params["From"] == LINE_NUMBER
    assert datetime.fromisoformat(exchange.params[after].replace("Z", "+00:00")) <= since
    assert 1 <= exchange.params["PageSize"] <= 50  # only the newest few
    # Prism answers with the spec's example, a page to another number: "already sent" would
    # lose this page, so the pager must not believe it.
    assert CLINICIAN not in exchange.text
    assert found is None


def test_prism_checks_requests_so_an_accepted_one_means_something(settings: Settings, prism: str) -> None:
    """Without the `Key[]` renaming, Prism refuses the repeated StatusCallbackEvent: it validates."""
    pager = TwilioPager.from_settings(settings, http_client=BaseUrlHttpClient(prism, timeout=10))

    with pytest.raises(PagingFailed) as refused:
        pager.place_call(CLINICIAN, twiml_url=TWIML, status_callback=CALLBACK)

    assert refused.value.code == "422" and not refused.value.transient


def test_the_base_url_setting_reaches_the_mock_without_a_test_client(settings: Settings) -> None:
    """TWILIO_API_BASE_URL alone (as the workers in the chain tests use it) is enough for a text."""
    pager = TwilioPager.from_settings(settings)

    assert isinstance(pager.client.http_client, BaseUrlHttpClient)
    assert re.fullmatch(r"SM[0-9a-fA-F]{32}", pager.send_sms(CLINICIAN, ALERT))


def test_the_default_base_url_is_twilio_itself() -> None:
    pager = TwilioPager.from_settings(Settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=TWILIO_TOKEN,
                                               twilio_phone_number=LINE_NUMBER))

    assert not isinstance(pager.client.http_client, BaseUrlHttpClient)


# --- the pager's own checks: what Prism lets through, refused before any request -------------

@pytest.mark.parametrize("to", ["6175550111", "+1 617 555 0111", "(617) 555-0111", "+0617555011", "", "+1617555011112345"])
def test_a_number_not_in_e164_is_refused_before_any_request(
        pager: TwilioPager, http: PrismHttpClient, to: str) -> None:
    for send in (lambda: pager.send_sms(to, ALERT), lambda: pager.place_call(to, twiml_url=TWIML)):
        with pytest.raises(PagingFailed) as refused:
            send()
        assert refused.value.code == "21211" and not refused.value.transient
    assert http.exchanges == []


@pytest.mark.parametrize("body", ["", "   "])
def test_an_empty_text_is_refused_before_any_request(pager: TwilioPager, http: PrismHttpClient, body: str) -> None:
    with pytest.raises(PagingFailed) as refused:
        pager.send_sms(CLINICIAN, body)

    assert not refused.value.transient
    assert http.exchanges == []


def test_a_call_without_an_absolute_twiml_url_is_refused_before_any_request(
        pager: TwilioPager, http: PrismHttpClient) -> None:
    """PUBLIC_BASE_URL unset makes the TwiML URL relative; Twilio would answer 21205."""
    with pytest.raises(PagingFailed) as refused:
        pager.place_call(CLINICIAN, twiml_url="/twilio/alerts/call?alert=7")

    assert refused.value.code == "21205" and not refused.value.transient
    assert http.exchanges == []


@pytest.mark.parametrize("sender", ["", "2025550100", "+1 202 555 0100", "MG" + "0" * 32])
def test_the_line_number_must_be_e164(prism: str, sender: str) -> None:
    settings = Settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=TWILIO_TOKEN,
                        twilio_phone_number=sender, twilio_api_base_url=prism)

    with pytest.raises(ValueError, match="TWILIO_PHONE_NUMBER"):
        TwilioPager.from_settings(settings)
