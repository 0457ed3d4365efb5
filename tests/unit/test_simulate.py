"""`telehealth simulate` against a live server: the app on a real port, scripted typing."""
from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

import pytest
from werkzeug.serving import make_server

from telehealth import cli
from telehealth.simulate import gather_params, message_texts, run
from tests.conftest import AUTH_TOKEN

PHONE = "+16175550142"


@pytest.fixture
def base_url(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


def play(base_url: str, channel: str, typed: str, token: str = AUTH_TOKEN) -> tuple[int, str]:
    output = io.StringIO()
    status = run(base_url, token, channel, PHONE, input=io.StringIO(typed), output=output)
    return status, output.getvalue()


def test_sms_routine_conversation(base_url: str, services: Any) -> None:
    status, shown = play(base_url, "sms", "my back hurts after gardening\n45\n" + "no\n" * 20 + "/quit\n")

    assert status == 0
    assert "line> Back pain line. If this is a life-threatening emergency" in shown
    assert "you> 45" in shown  # piped input is echoed
    assert "You do not need an X-ray or MRI now." in shown
    conversation = services.records.latest_conversation(PHONE, channel="sms")
    assert conversation["status"] == "completed"
    assert conversation["disposition"] == "routine"
    assert conversation["facts"]["age"] == 45


def test_sms_end_of_input_ends_the_chat(base_url: str, services: Any) -> None:
    status, shown = play(base_url, "sms", "my back hurts\n")

    assert status == 0
    assert "How old are you?" in shown
    assert services.records.latest_conversation(PHONE, channel="sms")["status"] == "active"


def test_voice_emergency_call_keys_digits_and_speaks_words(base_url: str, services: Any) -> None:
    status, shown = play(base_url, "voice", "45#\nyes\n")

    assert status == 0
    assert shown.count("Call 911 now.") == 2  # the instruction is spoken twice
    assert shown.rstrip().endswith("(call ended)")
    conversation = services.records.latest_conversation(PHONE, channel="voice")
    assert (conversation["status"], conversation["disposition"]) == ("completed", "emergency")
    answers = [t for t in conversation["turns"] if t["direction"] == "in"]
    assert [(t["digits"], t["speech"]) for t in answers] == [("45", None), (None, "yes")]
    assert answers[1]["confidence"] == pytest.approx(0.9)
    assert conversation["escalation"] is not None
    assert services.pager.sent  # the (in-process) escalation job paged someone


def test_voice_silence_follows_the_redirect(base_url: str, services: Any) -> None:
    status, shown = play(base_url, "voice", "45#\n\n2\n")

    assert status == 0
    assert "(silence)" in shown
    assert "I did not hear an answer." in shown
    answers = [t for t in services.records.latest_conversation(PHONE, channel="voice")["turns"]
               if t["direction"] == "in"]
    assert [t["text"] for t in answers] == ["45", "(silence)", "2"]


def test_hanging_up_mid_call_posts_the_status_callback(base_url: str, services: Any) -> None:
    status, shown = play(base_url, "voice", "45#\nquit\n")

    assert status == 0
    conversation = services.records.latest_conversation(PHONE, channel="voice")
    assert conversation["status"] == "abandoned"
    assert conversation["disposition"] is None or conversation["disposition"] in {"urgent", "emergency"}


def test_wrong_token_is_reported_and_changes_nothing(base_url: str, services: Any) -> None:
    status, shown = play(base_url, "sms", "my back hurts\n", token="not-the-token")

    assert status == 1
    assert "403" in shown
    assert services.records.latest_conversation(PHONE) is None


def test_missing_token_and_unreachable_server() -> None:
    assert play("http://127.0.0.1:9", "sms", "", token="")[0] == 2
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    status, shown = play(f"http://127.0.0.1:{free}", "sms", "hello\n")
    assert status == 1
    assert "cannot reach" in shown


def test_cli_passes_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("telehealth.simulate.run", lambda **kwargs: seen.update(kwargs) or 0)

    assert cli.main(["simulate", "--base-url", "http://x", "--auth-token", "t", "--channel", "voice",
                     "--phone", "+16175550199"]) == 0
    assert seen == {"base_url": "http://x", "auth_token": "t", "channel": "voice", "phone": "+16175550199"}


@pytest.mark.parametrize(("typed", "attributes", "expected"), [
    ("45#", {"finishOnKey": "#"}, {"Digits": "45"}),
    ("1", {"numDigits": "1"}, {"Digits": "1"}),
    ("12", {"numDigits": "1"}, {"Digits": "1"}),
    ("9", {}, {"Digits": "9"}),
    ("yes", {"numDigits": "1"}, {"SpeechResult": "yes", "Confidence": "0.9"}),
    ("I'm 62", {"finishOnKey": "#"}, {"SpeechResult": "I'm 62", "Confidence": "0.9"}),
])
def test_gather_answers_are_keyed_or_spoken(typed: str, attributes: dict[str, str],
                                            expected: dict[str, str]) -> None:
    assert gather_params(ElementTree.Element("Gather", attributes), typed) == expected


def test_message_texts_read_plain_and_body_children() -> None:
    root = ElementTree.fromstring(
        "<Response><Message>one</Message><Message><Body>two</Body></Message></Response>")
    assert message_texts(root) == ["one", "two"]
