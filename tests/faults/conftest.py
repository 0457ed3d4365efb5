"""The fault suite's harness: the line as it runs in production, and ways to break its parts.

Web processes are the Procfile's `web:` command (gunicorn) and workers its `worker:` command
(`rq worker` with the sweeping worker class), against real Redis and a fresh PostgreSQL database
per test. Twilio's REST API is the recording fake in tests/integration/fake_twilio.py.

The parts that break are the test's own: a private `redis-server` on a spare port (stopped,
restarted, SIGSTOPped), and a TCP proxy in this process between the line and PostgreSQL (cut and
restored). The shared Redis is only used in database 12, never 14 (the integration tests') or 15
(the patient player's). As in tests/integration, a missing service skips these tests, and fails
them under CI=true.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.etree import ElementTree

import pytest
import requests
from twilio.request_validator import RequestValidator

from tests.integration.conftest import (  # noqa: F401  (fixtures, registered by importing them)
    ACCOUNT_SID, LINE_NUMBER, _unavailable, chain_flows, descendants, empty_postgres_database, free_port,
    kill_tree, postgres_url, process_env, procfile, start_process, stop_tree, wait_for,
)
from tests.integration.fake_twilio import FakeTwilio

FAULT_REDIS_DB = 12
SHARED_REDIS = f"redis://127.0.0.1:6379/{FAULT_REDIS_DB}"
# The account's auth token: Twilio signs webhooks with it and the pager authenticates with it.
AUTH_TOKEN = "fault-auth-token"
API_TOKEN = "fault-api-token"
PUBLIC_BASE_URL = "http://localhost"  # what Twilio signs: every web process sits behind this URL
PRIMARY, PRIMARY_NAME = "+16175550111", "Dana Prime"
BACKUP, BACKUP_NAME = "+16175550122", "Bo Backup"
SUPERVISOR = "+16175550199"
CALL_ENDED = ("completed", "busy", "failed", "no-answer", "canceled")


# --- Redis: the shared one (db 12), or a private server the test may break ---------------------

@pytest.fixture
def shared_redis() -> Iterator[str]:
    """Database 12 of the machine's Redis, flushed before and after."""
    import redis

    client = redis.Redis.from_url(SHARED_REDIS, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        _unavailable("Redis", error)
    client.flushdb()
    try:
        yield SHARED_REDIS
    finally:
        client.flushdb()
        client.close()


class PrivateRedis:
    """A redis-server of the test's own on a spare port, without persistence: stop, start, pause."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _unavailable("Redis", FileNotFoundError("redis-server is not installed"))
        self.binary, self.directory = str(binary), directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._answers, timeout=10, what="the private redis-server to start")

    def stop(self) -> None:
        """Gone: connections refused, everything it held lost (no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)

    def _answers(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            try:
                server.resume()  # a stopped process cannot die of SIGKILL until it runs again
            except ProcessLookupError:
                pass
        server.stop()


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    """The recording fake of Twilio's REST API (tests/integration/fake_twilio.py), for this account."""
    twilio = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN).start()
    try:
        yield twilio
    finally:
        twilio.stop()


# --- PostgreSQL behind a proxy the test can cut ---------------------------------------------------

class TcpProxy:
    """Forwards a local port to PostgreSQL. `cut()` drops every connection and refuses new ones
    (as a crashed or restarting server does); `restore()` listens again on the same port."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target, self.port = target, free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> "TcpProxy":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="pg-proxy").start()
        return self

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            open_sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in open_sockets:
            _close(sock)

    def restore(self) -> None:
        self.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:
                    _close(client)
                    _close(upstream)
                    return
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
            with self._lock:
                self._sockets -= {source, sink}


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture
def database_url(empty_postgres_database: str) -> str:
    """A fresh PostgreSQL database with the schema (the Procfile's `release:` step, in process)."""
    from telehealth.records import migrate

    migrate(empty_postgres_database)
    return empty_postgres_database


# --- talking to the line like Twilio -----------------------------------------------------------

class Hooks:
    """Posts Twilio-signed webhooks to one web process; the signature covers PUBLIC_BASE_URL."""

    def __init__(self, base_url: str, token: str = AUTH_TOKEN) -> None:
        self.base_url, self.validator = base_url, RequestValidator(token)
        self.http = requests.Session()

    def post(self, path: str, params: dict[str, str], *, signature: str | None = None,
             sign: bool = True, timeout: float = 15.0) -> requests.Response:
        headers = {}
        if sign:
            headers["X-Twilio-Signature"] = signature or self.validator.compute_signature(
                PUBLIC_BASE_URL + path, params)
        return self.http.post(self.base_url + path, data=params, headers=headers, timeout=timeout)

    def sms(self, phone: str, body: str, sid: str | None = None) -> list[str]:
        return messages_of(self.post("/twilio/sms", sms_params(phone, body, sid)))


def sms_params(phone: str, body: str, sid: str | None = None) -> dict[str, str]:
    return {"From": phone, "To": LINE_NUMBER, "Body": body, "MessageSid": sid or new_sid("SM"),
            "AccountSid": ACCOUNT_SID, "NumMedia": "0"}


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def twiml(response: requests.Response) -> ElementTree.Element:
    assert response.status_code == 200, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("text/xml"), response.headers["Content-Type"]
    root = ElementTree.fromstring(response.content)
    assert root.tag == "Response"
    return root


def messages_of(response: requests.Response) -> list[str]:
    root = twiml(response)
    assert all(child.tag == "Message" for child in root), [child.tag for child in root]
    return [m.text or "" for m in root]


def said(root: ElementTree.Element) -> list[str]:
    return [s.text or "" for s in root.iter("Say")]


class HttpCall:
    """A caller driven the way Twilio drives a call; each request goes to `pick()`'s process."""

    def __init__(self, pick: Callable[[], Hooks], phone: str, sid: str | None = None) -> None:
        self.pick, self.phone, self.sid = pick, phone, sid or new_sid("CA")
        self.last: ElementTree.Element | None = None
        self.last_request: tuple[str, dict[str, str]] | None = None

    def params(self, **extra: str) -> dict[str, str]:
        return {"CallSid": self.sid, "From": self.phone, "To": LINE_NUMBER, "AccountSid": ACCOUNT_SID,
                "Direction": "inbound", "CallStatus": "in-progress", **extra}

    def start(self) -> ElementTree.Element:
        return self._post("/twilio/voice", self.params(CallStatus="ringing"))

    def press(self, digits: str) -> ElementTree.Element:
        return self._post(self.action(), self.params(Digits=digits))

    def say(self, speech: str) -> ElementTree.Element:
        return self._post(self.action(), self.params(SpeechResult=speech, Confidence="0.93"))

    def silence(self) -> ElementTree.Element:
        assert self.last is not None and self.last.find("Redirect") is not None
        return self._post(_path(self.last.find("Redirect").text or ""), self.params())  # type: ignore[union-attr]

    def retry(self) -> ElementTree.Element:
        assert self.last_request is not None
        return self._post(*self.last_request)

    def status(self, status: str = "completed") -> requests.Response:
        return self.pick().post("/twilio/voice/status", self.params(CallStatus=status, CallDuration="42"))

    def action(self) -> str:
        assert self.last is not None and self.last.find("Gather") is not None, "the call is not waiting for input"
        return _path(self.last.find("Gather").get("action") or "")  # type: ignore[union-attr]

    @property
    def hung_up(self) -> bool:
        return self.last is not None and len(self.last) > 0 and self.last[-1].tag == "Hangup"

    def _post(self, path: str, params: dict[str, str]) -> ElementTree.Element:
        self.last_request = (path, params)
        self.last = twiml(self.pick().post(path, params))
        return self.last


def _path(url: str) -> str:
    parts = urlsplit(urljoin(PUBLIC_BASE_URL + "/twilio/voice", url))
    return parts.path + (f"?{parts.query}" if parts.query else "")


# --- the line's processes ---------------------------------------------------------------------

@dataclass
class Process:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> set[int]:
        return {self.process.pid, *descendants(self.process.pid)}

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Web(Process):
    base_url: str = ""
    hooks: Hooks = field(init=False)

    def __post_init__(self) -> None:
        self.hooks = Hooks(self.base_url)

    def api(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.base_url}{path}", params=params, timeout=10,
                                headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert response.status_code == 200, response.text
        return response.json()

    def conversation(self, phone: str, index: int = 0) -> dict[str, Any]:
        found = self.api("/api/conversations", phone=phone)["conversations"]
        assert len(found) > index, f"no conversation {index} for the number"
        return self.api(f"/api/conversations/{found[index]['id']}")

    def ready(self) -> requests.Response:
        return requests.get(f"{self.base_url}/readyz", timeout=10)

    def gunicorn_workers(self) -> set[int]:
        """The gunicorn worker processes: the children of the gunicorn master."""
        below = [self.process.pid, *descendants(self.process.pid)]
        masters = [p for p in below if "bin/gunicorn" in _cmdline(p) and "bin/gunicorn" not in _cmdline(_parent(p))]
        return {p for p in below if masters and _parent(p) == masters[0]}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


class Line:
    """The line under test: its environment, its web and worker processes, its durable record."""

    def __init__(self, tmp: Path, redis_url: str, database_url: str, fake: FakeTwilio | None,
                 flows: Path | None = None, read_url: str | None = None, **env: str) -> None:
        """`read_url`: where the test reads the record, when the line reaches it another way."""
        self.tmp, self.redis_url, self.database_url, self.fake = tmp, redis_url, database_url, fake
        self.read_url = read_url or database_url
        values = {
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "API_TOKEN": API_TOKEN, "SECRET_KEY": "fault-secret",
            "REDIS_URL": redis_url, "DATABASE_URL": database_url, "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "SUPERVISOR_PHONE": SUPERVISOR, "SWEEP_SECONDS": "1", "TWILIO_PHONE_NUMBER": LINE_NUMBER,
            "CONSOLE_SECURE_COOKIES": "false",
        }
        if fake is not None:
            values.update(PAGER="twilio", TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_API_BASE_URL=fake.base_url)
        else:
            values.update(PAGER="console")
        if flows is not None:
            values["FLOWS_DIR"] = str(flows)
        values.update(env)
        self.env = process_env(**values)
        self.webs: list[Web] = []
        self.workers: list[Process] = []
        self._records: Any = None

    def _env_for(self, kind: str, extra: dict[str, str]) -> dict[str, str]:
        return {**self.env, **extra}

    def start_web(self, **extra: str) -> Web:
        port = free_port()
        command = procfile()["web"]
        assert command.startswith("gunicorn") and "$PORT" in command
        log = self.tmp / f"web-{len(self.webs) + 1}.log"
        env = self._env_for("web", {"PORT": str(port), **extra})
        web = Web(f"web-{len(self.webs) + 1}", start_process(command.replace("$PORT", str(port)), env, log),
                  log, base_url=f"http://127.0.0.1:{port}")
        self.webs.append(web)
        wait_for(lambda: _healthy(web), timeout=60, what=f"{web.name} to answer /healthz")
        return web

    def start_worker(self, **extra: str) -> Process:
        command = procfile()["worker"]
        assert "rq worker" in command and "SweepingWorker" in command
        log = self.tmp / f"worker-{len(self.workers) + 1}.log"
        worker = Process(f"worker-{len(self.workers) + 1}",
                         start_process(command, self._env_for("worker", extra), log), log)
        self.workers.append(worker)
        wait_for(lambda: _registered(self.redis_url, worker), timeout=30, what=f"{worker.name} to register")
        return worker

    def kill_workers(self) -> None:
        for worker in self.workers:
            if worker.alive:
                kill_tree(worker.process)

    @property
    def records(self) -> Any:
        """The durable record, read directly (not through the line)."""
        if self._records is None:
            from telehealth.records import Records

            self._records = Records.from_url(self.read_url)
        return self._records

    def latest(self, phone: str, channel: str | None = None) -> dict[str, Any] | None:
        return self.records.latest_conversation(phone, channel=channel)

    def escalation(self, escalation_id: int) -> dict[str, Any]:
        return self.records.get_escalation(escalation_id)

    def events(self, escalation_id: int, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.escalation(escalation_id)["events"] if kind is None or e["kind"] == kind]

    def alerts(self, escalation_id: int) -> list[dict[str, Any]]:
        from telehealth.alerts import Alerts

        return Alerts(self.records).for_escalation(escalation_id)

    def put_on_call(self) -> None:
        from telehealth.roster import Roster

        roster = Roster(self.records)
        now = datetime.now(timezone.utc)
        for name, phone, tier in ((PRIMARY_NAME, PRIMARY, "primary"), (BACKUP_NAME, BACKUP, "backup")):
            clinician = roster.add_clinician(name=name, role="physician", phone=phone)
            roster.add_shift(clinician, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=12),
                             tier=tier)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (exit {p.process.poll()})\n{p.output()}" for p in [*self.webs, *self.workers])

    def close(self) -> None:
        for process in [*self.webs, *self.workers]:
            if process.alive:
                stop_tree(process.process, grace=5)
        if self._records is not None:
            self._records.dispose()


def _healthy(web: Web) -> bool:
    if not web.alive:
        pytest.fail(f"{web.name} exited with {web.process.returncode}:\n{web.output()[-3000:]}", pytrace=False)
    try:
        return requests.get(f"{web.base_url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _registered(redis_url: str, worker: Process) -> bool:
    import redis

    if not worker.alive:
        pytest.fail(f"{worker.name} exited:\n{worker.output()[-3000:]}", pytrace=False)
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        pids = worker.pids()
        return any(int(client.hget(key, "pid") or 0) in pids for key in client.smembers("rq:workers"))
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.fixture
def make_line(tmp_path: Path) -> Iterator[Callable[..., Line]]:
    """Build a Line (its processes are started by the test); everything is stopped afterwards."""
    made: list[Line] = []

    def make(redis_url: str, database_url: str, fake: FakeTwilio | None = None, **kwargs: Any) -> Line:
        line = Line(tmp_path, redis_url, database_url, fake, **kwargs)
        made.append(line)
        return line

    try:
        yield make
    finally:
        for line in made:
            line.close()
            print(line.logs()[-20000:])  # shown by pytest when the test fails


def chain(*steps: tuple[float, str, list[str]], round_seconds: float, rounds: int = 1) -> dict[str, Any]:
    return {"callback_window": "a few minutes", "round_seconds": round_seconds, "rounds": rounds,
            "steps": [{"after_seconds": s, "to": to, "via": via} for s, to, via in steps]}


def flows_with(tmp: Path, emergency: dict[str, Any], urgent: dict[str, Any] | None = None) -> Path:
    """flows/ with the given chains (delays of seconds)."""
    return chain_flows(tmp, {"emergency": emergency, "urgent": urgent or chain(
        (0, "primary", ["sms"]), (600, "backup", ["sms"]), round_seconds=1200)})


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started
