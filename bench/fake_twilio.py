"""A tiny local stand-in for Twilio's REST API that timestamps every page it is handed.

The worker's TwilioPager reaches it through TWILIO_API_BASE_URL. A POST to Messages.json or
Calls.json is stamped with time.perf_counter() the moment it arrives (the alert has been handed to
the carrier from then on) and answered 201 with a fresh sid; list GETs answer an empty page.
"""
from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC\w+)/(?P<kind>Messages|Calls)\.json$")


@dataclass
class Page:
    at: float  # time.perf_counter() when the request arrived
    channel: str  # sms | voice
    sid: str
    to: str
    body: str  # SMS text, or the call's TwiML URL


class FakeTwilio:
    def __init__(self) -> None:
        self.pages: list[Page] = []
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-twilio")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeTwilio":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self) -> int:
        with self.lock:
            return len(self.pages)

    def by_sid(self) -> dict[str, Page]:
        with self.lock:
            return {p.sid: p for p in self.pages}


def _handler(fake: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            arrived = time.perf_counter()
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            match = PATH.match(urlsplit(self.path).path)
            if match is None:
                return self._json(404, {"code": 20404, "message": "not found", "status": 404})
            channel = "sms" if match["kind"] == "Messages" else "voice"
            sid = f"{'SM' if channel == 'sms' else 'CA'}{next(fake._ids):032x}"
            page = Page(arrived, channel, sid, form.get("To", ""), form.get("Body") or form.get("Url", ""))
            with fake.lock:
                fake.pages.append(page)
            resource = {"sid": sid, "account_sid": match["account"], "to": page.to, "from": form.get("From"),
                        "status": "queued", "api_version": "2010-04-01", "direction": "outbound-api",
                        "uri": f"{urlsplit(self.path).path[:-5]}/{sid}.json"}
            if channel == "sms":
                resource.update(body=page.body, num_segments="1")
            self._json(201, resource)

        def do_GET(self) -> None:  # noqa: N802
            match = PATH.match(urlsplit(self.path).path)
            if match is None:
                return self._json(404, {"code": 20404, "message": "not found", "status": 404})
            key = match["kind"].lower()
            self._json(200, {key: [], "end": -1, "first_page_uri": self.path, "next_page_uri": None,
                             "page": 0, "page_size": 20, "previous_page_uri": None, "start": 0,
                             "uri": self.path})

        def _json(self, status: int, payload: dict[str, object]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler
