"""A local stand-in for Twilio's REST API that records every page the workers send.

A tiny threaded http.server in the test process, reached by `rq worker` processes through
TWILIO_API_BASE_URL. It implements what the Twilio pager uses, in Twilio's shapes:

- POST /2010-04-01/Accounts/<sid>/Messages.json and Calls.json: a page, recorded as soon as it
  arrives (Twilio has it from then on), answered 201 with a Twilio-shaped resource and a fresh sid;
- GET the same paths: the list endpoints, filtered by To, From, DateSent> / StartTime>.

`hold(seconds, to=...)` makes the next matching POST wait that long after it is recorded and
before it is answered: a worker killed meanwhile dies after Twilio took the page but before it
learnt the sid, which is the case `find_sent` exists for.

`fail(status, code=..., times=..., to=..., contains=..., stall=...)` makes matching POSTs fail the
way Twilio does (500, 429 with code 20429, 400 with 21614 for a number that cannot take texts),
or answer only after `stall` seconds (a client timeout); a failed request records no page.
"""
from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC[0-9a-fA-F]{32})/(?P<kind>Messages|Calls)\.json$")
E164 = re.compile(r"^\+[1-9]\d{1,14}$")


@dataclass
class Page:
    """One message or call that reached the fake Twilio."""

    channel: str  # sms | voice
    sid: str
    to: str
    from_: str
    body: str  # the SMS text, or the call's TwiML URL
    status_callback: str | None
    form: dict[str, list[str]]
    at: datetime


@dataclass
class Failure:
    status: int
    code: int | None
    times: int  # matching requests still to fail; negative: all of them
    to: str | None
    channel: str | None
    contains: str | None  # a text the SMS body (or call URL) must contain
    stall: float
    hits: list[datetime] = field(default_factory=list)

    def matches(self, channel: str, to: str, body: str) -> bool:
        return (self.times != 0 and self.to in (None, to) and self.channel in (None, channel)
                and (self.contains is None or self.contains in body))


@dataclass
class Hold:
    seconds: float
    to: str | None
    channel: str | None
    started: threading.Event = field(default_factory=threading.Event)


class FakeTwilio:
    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.pages: list[Page] = []
        self.requests: list[tuple[str, str, int]] = []  # method, path with query, status answered
        self.problems: list[str] = []  # requests Twilio would have refused
        self._holds: list[Hold] = []
        self._failures: list[Failure] = []
        self._lock = threading.Lock()
        self._count = 0
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-twilio", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeTwilio":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # release held requests
        self._server.shutdown()
        self._server.server_close()

    # --- what the tests ask ----------------------------------------------------------------

    def hold(self, seconds: float, *, to: str | None = None, channel: str | None = None) -> Hold:
        """Hold the next matching page `seconds` after recording it; `.started` is set when it arrives."""
        hold = Hold(seconds, to, channel)
        with self._lock:
            self._holds.append(hold)
        return hold

    def fail(self, status: int, *, code: int | None = None, times: int = 1, to: str | None = None,
             channel: str | None = None, contains: str | None = None, stall: float = 0.0) -> Failure:
        """Refuse the next `times` matching pages (all of them if negative) with this error."""
        failure = Failure(status, code, times, to, channel, contains, stall)
        with self._lock:
            self._failures.append(failure)
        return failure

    def to(self, number: str, channel: str | None = None) -> list[Page]:
        with self._lock:
            return [p for p in self.pages if p.to == number and (channel is None or p.channel == channel)]

    def all(self) -> list[Page]:
        with self._lock:
            return list(self.pages)

    # --- the API -----------------------------------------------------------------------------

    def _create(self, kind: str, form: dict[str, list[str]]) -> tuple[int, dict[str, Any], Hold | None]:
        one = {k: v[-1] for k, v in form.items()}
        to, from_ = one.get("To", ""), one.get("From", "")
        channel = "sms" if kind == "Messages" else "voice"
        body = one.get("Body", "") if channel == "sms" else one.get("Url", "")
        with self._lock:
            failure = next((f for f in self._failures if f.matches(channel, to, body)), None)
            if failure is not None:
                failure.times -= 1
                failure.hits.append(_now())
        if failure is not None:
            if failure.stall:
                self._closing.wait(failure.stall)
            code = failure.code or failure.status
            return failure.status, {"code": code, "status": failure.status, "more_info": "",
                                    "message": f"fake Twilio: injected failure {code}"}, None
        if not E164.match(to) or not E164.match(from_) or not body:
            self.problems.append(f"{kind}: To={to!r} From={from_!r} body/url={body!r}")
            return 400, {"code": 21211 if not E164.match(to) else 21604, "status": 400,
                         "message": "fake Twilio: To/From must be E.164 and Body or Url given"}, None
        with self._lock:
            self._count += 1
            sid = f"{'SM' if channel == 'sms' else 'CA'}{self._count:032x}"
            page = Page(channel, sid, to, from_, body, one.get("StatusCallback"), form, _now())
            self.pages.append(page)
            hold = next((h for h in self._holds if h.to in (None, to) and h.channel in (None, channel)), None)
            if hold is not None:
                self._holds.remove(hold)
        return 201, self._resource(page), hold

    def _list(self, kind: str, query: dict[str, list[str]]) -> dict[str, Any]:
        one = {k: v[-1] for k, v in query.items()}
        channel = "sms" if kind == "Messages" else "voice"
        after = one.get("DateSent>") or one.get("StartTime>")
        since = datetime.fromisoformat(after.replace("Z", "+00:00")) if after else None
        with self._lock:
            found = [p for p in reversed(self.pages) if p.channel == channel
                     and p.to == one.get("To", p.to) and p.from_ == one.get("From", p.from_)
                     and (since is None or p.at.replace(microsecond=0) >= since)]
        size = int(one.get("PageSize", "50"))
        uri = f"/2010-04-01/Accounts/{self.account_sid}/{kind}.json"
        return {kind.lower(): [self._resource(p) for p in found[:size]], "end": min(size, len(found)) - 1,
                "first_page_uri": uri, "next_page_uri": None, "page": 0, "page_size": size,
                "previous_page_uri": None, "start": 0, "uri": uri}

    def _resource(self, page: Page) -> dict[str, Any]:
        stamp = format_datetime(page.at.replace(microsecond=0), usegmt=True)
        kind = "Messages" if page.channel == "sms" else "Calls"
        common = {"sid": page.sid, "account_sid": self.account_sid, "to": page.to, "from": page.from_,
                  "status": "queued", "date_created": stamp, "date_updated": stamp, "api_version": "2010-04-01",
                  "direction": "outbound-api", "uri": f"/2010-04-01/Accounts/{self.account_sid}/{kind}/{page.sid}.json"}
        if page.channel == "sms":
            return {**common, "body": page.body, "date_sent": stamp, "num_segments": "1", "price": None}
        return {**common, "start_time": stamp, "end_time": None, "duration": None, "price": None}

    def _authorized(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _handler(fake: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            match = PATH.match(url.path)
            hold = None
            if not fake._authorized(self.headers.get("Authorization")):
                status, payload = 401, {"code": 20003, "status": 401, "message": "Authenticate"}
            elif match is None or match["account"] != fake.account_sid:
                status, payload = 404, {"code": 20404, "status": 404, "message": "not found"}
            elif method == "POST":
                status, payload, hold = fake._create(match["kind"], parse_qs(raw, keep_blank_values=True))
            else:
                status, payload = 200, fake._list(match["kind"], parse_qs(url.query, keep_blank_values=True))
            with fake._lock:
                fake.requests.append((method, self.path, status))
            if hold is not None:
                hold.started.set()
                fake._closing.wait(hold.seconds)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the caller died while we held its request: that is what the test wanted

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
