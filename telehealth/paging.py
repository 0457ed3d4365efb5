"""Paging clinicians: SMS and voice calls through one small interface.

Three implementations: Twilio (production, in telehealth/twilio_pager.py), console (embedded
default: alerts are printed) and a fake for tests. Vendor errors are translated at this boundary
into PagingFailed, which says whether trying again can help.
"""
from __future__ import annotations

import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Protocol, TextIO


class PagingFailed(Exception):
    """A page could not be handed to the carrier. `transient` failures are worth retrying."""

    def __init__(self, message: str, *, transient: bool, code: str | None = None) -> None:
        super().__init__(message)
        self.transient, self.code = transient, code


class RecipientOptedOut(PagingFailed):
    """The number has opted out of SMS (Twilio error 21610): only a voice call can reach it."""

    def __init__(self, message: str = "recipient has opted out of SMS") -> None:
        super().__init__(message, transient=False, code="21610")


class Pager(Protocol):
    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        """Hand one SMS to the carrier; return its id (a Twilio Message SID)."""
        ...

    def place_call(self, to: str, *, twiml_url: str, status_callback: str | None = None) -> str:
        """Start one voice call that fetches its TwiML from `twiml_url`; return its id."""
        ...

    def find_sent(self, to: str, channel: str, since: datetime, *, body: str | None = None) -> str | None:
        """The id of a page already handed over to `to` since `since`, if any (crash recovery).

        `body` is the SMS text or the call's TwiML URL: a page to the same clinician for another
        case is not this one, and taking it for this one would lose a page.
        """
        ...


class ConsolePager:
    """Embedded default: every page is printed where the operator running the service sees it."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._count = 0
        self._lock = threading.Lock()

    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        return self._print(f"[ALERT SMS to {to}] {body}")

    def place_call(self, to: str, *, twiml_url: str, status_callback: str | None = None) -> str:
        return self._print(f"[ALERT CALL to {to}] (voice alert, TwiML at {twiml_url})")

    def find_sent(self, to: str, channel: str, since: datetime, *, body: str | None = None) -> str | None:
        return None  # nothing to ask: a page interrupted by a crash is printed again

    def _print(self, line: str) -> str:
        with self._lock:
            self._count += 1
            print(line, file=self.stream or sys.stdout, flush=True)
            # Unique across restarts and processes: the id is stored under a unique key.
            return f"console-{self._count}-{uuid.uuid4().hex[:12]}"


@dataclass
class Sent:
    to: str
    channel: str
    body: str
    sid: str
    at: datetime
    status_callback: str | None = None


@dataclass
class FakePager:
    """Test double: keeps every page; `failures` are raised, one per call, before anything is sent."""

    sent: list[Sent] = field(default_factory=list)
    failures: list[PagingFailed] = field(default_factory=list)
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    # Workers racing in one test share this pager: a page's id must stay unique.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        return self._send(to, "sms", body, status_callback)

    def place_call(self, to: str, *, twiml_url: str, status_callback: str | None = None) -> str:
        return self._send(to, "voice", twiml_url, status_callback)

    def find_sent(self, to: str, channel: str, since: datetime, *, body: str | None = None) -> str | None:
        found = [s for s in self.sent if s.to == to and s.channel == channel and s.at >= since
                 and (body is None or s.body == body)]
        return found[-1].sid if found else None

    def to(self, number: str, channel: str | None = None) -> list[Sent]:
        return [s for s in self.sent if s.to == number and (channel is None or s.channel == channel)]

    def _send(self, to: str, channel: str, body: str, callback: str | None) -> str:
        with self._lock:
            if self.failures:
                raise self.failures.pop(0)
            sid = f"{'SM' if channel == 'sms' else 'CA'}{len(self.sent) + 1:032d}"
            self.sent.append(Sent(to, channel, body, sid, self.clock(), callback))
            return sid
