"""Paging through Twilio's REST API with the `twilio` library. Twilio errors are translated here."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Callable

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from telehealth.paging import PagingFailed, RecipientOptedOut
from telehealth.settings import Settings

# Twilio's own codes for a recipient that cannot be reached whatever we do.
PERMANENT_CODES = {21211, 21212, 21214, 21217, 21401, 21407, 21408, 21421, 21612, 21614, 13224}
OPTED_OUT = 21610
REQUEST_TIMEOUT_SECONDS = 10.0
FIND_LIMIT = 20  # the newest pages to one clinician that crash recovery looks through
TWILIO_API = "https://api.twilio.com"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
# What Twilio itself answers for a 'To' it cannot use; checked here, before any request.
INVALID_TO = "21211"


class BaseUrlHttpClient(TwilioHttpClient):
    """Sends the REST calls meant for api.twilio.com to another base URL (a local fake or mock).

    The `twilio` client's edge and region settings can only name Twilio's own hosts.
    """

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith(TWILIO_API + "/"):
            url = self.base_url + url[len(TWILIO_API):]
        return super().request(method, url, *args, **kwargs)


class TwilioPager:
    def __init__(self, client: Client, from_number: str) -> None:
        if not from_number:
            raise ValueError("TWILIO_PHONE_NUMBER is needed to send alerts")
        if not E164.match(from_number):
            raise ValueError(f"TWILIO_PHONE_NUMBER must be in E.164 form, like +12025550100: {from_number!r}")
        self.client, self.from_number = client, from_number

    @classmethod
    def from_settings(cls, settings: Settings, http_client: TwilioHttpClient | None = None) -> "TwilioPager":
        if http_client is None:
            base = settings.twilio_api_base_url.rstrip("/")
            http_client = (TwilioHttpClient(timeout=REQUEST_TIMEOUT_SECONDS) if base in ("", TWILIO_API)
                           else BaseUrlHttpClient(base, timeout=REQUEST_TIMEOUT_SECONDS))
        client = Client(settings.twilio_account_sid, settings.twilio_auth_token, http_client=http_client)
        return cls(client, settings.twilio_phone_number)

    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        _check_to(to)
        if not body.strip():
            raise PagingFailed("an alert text needs a body", transient=False, code="empty-body")
        extra = {"status_callback": status_callback} if status_callback else {}
        message = self._call(lambda: self.client.messages.create(to=to, from_=self.from_number, body=body, **extra))
        return str(message.sid)

    def place_call(self, to: str, *, twiml_url: str, status_callback: str | None = None) -> str:
        _check_to(to)
        if not twiml_url.startswith(("https://", "http://")):  # PUBLIC_BASE_URL unset: Twilio says 21205
            raise PagingFailed("an alert call needs an absolute TwiML URL (set PUBLIC_BASE_URL)",
                               transient=False, code="21205")
        extra: dict[str, Any] = {}
        if status_callback:
            extra = {"status_callback": status_callback, "status_callback_method": "POST",
                     "status_callback_event": ["initiated", "ringing", "answered", "completed"]}
        call = self._call(lambda: self.client.calls.create(to=to, from_=self.from_number, url=twiml_url,
                                                           method="POST", **extra))
        return str(call.sid)

    def find_sent(self, to: str, channel: str, since: datetime, *, body: str | None = None) -> str | None:
        if channel == "sms":
            found = self._call(lambda: list(self.client.messages.page(to=to, from_=self.from_number,
                                                                      date_sent_after=since, page_size=FIND_LIMIT)))
        else:
            found = self._call(lambda: list(self.client.calls.page(to=to, from_=self.from_number,
                                                                   start_time_after=since, page_size=FIND_LIMIT)))
        # One page, one request: `list(limit=...)` would follow next_page_uri for more.
        # Check what came back rather than trust the filters: a wrong "already sent" loses a page.
        # Twilio documents these date filters by day, so the time is checked here too (its stamps
        # have whole seconds); an SMS must also carry this alert's text (a trial account prefixes it).
        # A call's TwiML URL is not in its resource: calls are matched by number and time only.
        earliest = since.replace(microsecond=0)
        matching = [
            item for item in found
            if getattr(item, "to", None) == to
            and isinstance(getattr(item, "date_created", None), datetime) and item.date_created >= earliest
            and (body is None or channel != "sms" or str(getattr(item, "body", "") or "").endswith(body))
        ]
        return str(matching[0].sid) if matching else None

    @staticmethod
    def _call(request: Callable[[], Any]) -> Any:
        try:
            return request()
        except TwilioRestException as exc:
            if exc.code == OPTED_OUT:
                raise RecipientOptedOut() from exc
            transient = exc.status == 429 or exc.status >= 500
            if exc.code in PERMANENT_CODES:
                transient = False
            raise PagingFailed(f"Twilio refused the request ({exc.status})", transient=transient,
                               code=str(exc.code or exc.status)) from exc
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise PagingFailed(f"Twilio unreachable ({type(exc).__name__})", transient=True,
                               code="network") from exc
        except TwilioException as exc:
            raise PagingFailed(f"Twilio client error ({type(exc).__name__})", transient=True,
                               code="client") from exc


def _check_to(to: str) -> None:
    """Twilio would refuse it (21211) after a round trip; a bad number never becomes good: permanent."""
    if not E164.match(to or ""):
        raise PagingFailed("not an E.164 phone number", transient=False, code=INVALID_TO)
