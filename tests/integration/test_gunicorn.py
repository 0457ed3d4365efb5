"""The Procfile as a platform runs it: `release:`, then `web:` under gunicorn on $PORT.

A whole SMS conversation and a whole voice call go over real HTTP with Twilio-signed requests,
against real Redis and a fresh PostgreSQL database; the outcome is read from the JSON API.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin
from xml.etree import ElementTree

import pytest
import requests

from telehealth.simulate import Webhooks, message_texts
from tests.integration.conftest import (
    PROJECT_ROOT, free_port, process_env, procfile, start_process, stop_process_group, wait_for,
)

pytestmark = pytest.mark.integration

AUTH_TOKEN = "gunicorn-auth-token"
API_TOKEN = "gunicorn-api-token"
LINE = "+12025550100"
SMS_PATIENT = "+16175550161"
VOICE_PATIENT = "+16175550162"


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path
    hooks: Webhooks

    def api(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.base_url}{path}", params=params, timeout=10,
                                headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert response.status_code == 200, response.text
        return response.json()

    def latest(self, phone: str) -> dict[str, Any]:
        found = self.api("/api/conversations", phone=phone)["conversations"]
        assert found, f"no conversation for {phone}"
        return self.api(f"/api/conversations/{found[0]['id']}")


def _up(base_url: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        pytest.fail(f"the web process exited with {process.returncode}", pytrace=False)
    try:
        return requests.get(f"{base_url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:  # not listening yet, or still booting
        return False


@pytest.fixture
def server(clean_redis: str, empty_postgres_database: str, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    env = process_env(
        TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID="AC" + "0" * 32, TWILIO_PHONE_NUMBER=LINE,
        API_TOKEN=API_TOKEN, SECRET_KEY="gunicorn-secret", REDIS_URL=clean_redis,
        DATABASE_URL=empty_postgres_database, PORT=str(port),
    )
    processes = procfile()
    release = subprocess.run(["/bin/sh", "-c", processes["release"]], cwd=PROJECT_ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert release.returncode == 0, release.stdout + release.stderr

    log = tmp_path / "web.log"
    process = start_process(processes["web"].replace("$PORT", str(port)), env, log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(base_url, process), timeout=60, what="gunicorn to answer /healthz")
        yield Server(base_url, process, log, Webhooks(base_url, AUTH_TOKEN))
    finally:
        stop_process_group(process)
        print(log.read_text(errors="replace"))  # shown by pytest when the test fails


def test_release_then_web_serve_a_whole_sms_conversation_and_voice_call(server: Server) -> None:
    ready = requests.get(f"{server.base_url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"

    # Unsigned webhooks are refused.
    unsigned = requests.post(f"{server.base_url}/twilio/sms", timeout=10,
                             data={"From": SMS_PATIENT, "To": LINE, "Body": "hi", "MessageSid": "SM0"})
    assert unsigned.status_code == 403

    _routine_sms(server)
    _emergency_call(server)

    sms = server.latest(SMS_PATIENT)
    assert (sms["channel"], sms["status"], sms["disposition"]) == ("sms", "completed", "routine")
    assert sms["escalation"] is None and sms["red_flags"] == []
    assert sms["protocol_version"] and sms["rule"]
    assert [t["direction"] for t in sms["turns"][:2]] == ["in", "out"]

    call = server.latest(VOICE_PATIENT)
    assert (call["channel"], call["status"], call["disposition"]) == ("voice", "completed", "emergency")
    assert "chest_pain" in call["red_flags"]
    assert call["escalation"]["id"] and call["escalation"]["status"]

    emergencies = server.api("/api/conversations", disposition="emergency")["conversations"]
    assert [c["phone"] for c in emergencies] == [VOICE_PATIENT]
    assert server.process.poll() is None


def _routine_sms(server: Server) -> None:
    url = f"{server.base_url}/twilio/sms"
    body = "My lower back hurts since I moved house"
    for turn in range(30):
        params = {"From": SMS_PATIENT, "To": LINE, "Body": body, "MessageSid": f"SM{turn:032d}",
                  "AccountSid": "AC" + "0" * 32, "NumMedia": "0"}
        messages = message_texts(server.hooks.twiml(url, params))
        assert messages and all(messages)
        if server.latest(SMS_PATIENT)["status"] != "active":
            assert "X-ray" in " ".join(messages)  # the routine advice
            return
        body = "45" if "number" in messages[-1] else "no"
    pytest.fail("the SMS conversation did not end within 30 texts")


def _emergency_call(server: Server) -> None:
    call = {"CallSid": "CA" + "7" * 32, "From": VOICE_PATIENT, "To": LINE,
            "AccountSid": "AC" + "0" * 32, "Direction": "inbound"}
    url = f"{server.base_url}/twilio/voice"
    root = server.hooks.twiml(url, {**call, "CallStatus": "ringing"})
    heard: list[str] = []
    answers = iter([{"Digits": "45"}, {"SpeechResult": "Yes.", "Confidence": "0.92"}])
    for _ in range(10):
        heard += [(say.text or "") for say in root.iter("Say")]
        if root.find("Hangup") is not None:
            break
        gather = root.find("Gather")
        assert gather is not None, ElementTree.tostring(root)
        assert gather.get("method", "POST") == "POST"
        url = urljoin(url, gather.get("action") or url)
        root = server.hooks.twiml(url, {**call, "CallStatus": "in-progress", **next(answers)})
    else:
        pytest.fail("the call did not hang up")

    instruction = [text for text in heard if "Call 911 now" in text]
    assert len(instruction) == 2  # spoken twice, then the call ends
    status = server.hooks.post(f"{server.base_url}/twilio/voice/status",
                               {**call, "CallStatus": "completed", "CallDuration": "42"})
    assert status.status_code in (200, 204)
