"""Paging through Twilio's REST API with the `twilio` library. Twilio errors are translated here."""
from __future__ import annotations

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


class TwilioPager:
    def __init__(self, client: Client, from_number: str) -> None:
        if not from_number:
            raise ValueError("TWILIO_PHONE_NUMBER is needed to send alerts")
        self.client, self.from_number = client, from_number

    @classmethod
    def from_settings(cls, settings: Settings, http_client: TwilioHttpClient | None = None) -> "TwilioPager":
        client = Client(settings.twilio_account_sid, settings.twilio_auth_token,
                        http_client=http_client or TwilioHttpClient(timeout=REQUEST_TIMEOUT_SECONDS))
        return cls(client, settings.twilio_phone_number)

    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        extra = {"status_callback": status_callback} if status_callback else {}
        message = self._call(lambda: self.client.messages.create(to=to, from_=self.from_number, body=body, **extra))
        return str(message.sid)

    def place_call(self, to: str, *, twiml_url: str, status_callback: str | None = None) -> str:
        extra: dict[str, Any] = {}
        if status_callback:
            extra = {"status_callback": status_callback, "status_callback_method": "POST",
                     "status_callback_event": ["initiated", "ringing", "answered", "completed"]}
        call = self._call(lambda: self.client.calls.create(to=to, from_=self.from_number, url=twiml_url,
                                                           method="POST", **extra))
        return str(call.sid)

    def find_sent(self, to: str, channel: str, since: datetime) -> str | None:
        if channel == "sms":
            found = self._call(lambda: self.client.messages.list(to=to, from_=self.from_number,
                                                                 date_sent_after=since, limit=1))
        else:
            found = self._call(lambda: self.client.calls.list(to=to, from_=self.from_number,
                                                              start_time_after=since, limit=1))
        # Check what came back rather than trust the filters: a wrong "already sent" loses a page.
        matching = [item for item in found if getattr(item, "to", None) == to]
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
