"""The read-only JSON API other tools rely on: Bearer auth, filters, order, shapes."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import API_TOKEN, PATIENT, Call, Twilio, api_get

OTHER = "+16175550199"
ENDPOINTS = [f"/api/conversations?phone={quote(PATIENT)}", "/api/conversations/1"]


@pytest.fixture
def three_conversations(twilio: Twilio, services: Any, clock: Any, protocol: Any) -> dict[str, int]:
    """PATIENT: a routine check, then an emergency a day later; OTHER: one still in progress."""
    routine = services.records.start_conversation(  # as if texted: the webhooks are tested elsewhere
        channel="sms", phone=PATIENT, protocol_version=protocol.version, at=clock())
    services.records.update_conversation(routine, status="completed", disposition="routine",
                                         rule="no_red_flags", ended_at=clock())
    clock.advance(days=1)
    twilio.sms("I can't pee and my back hurts")
    clock.advance(minutes=5)
    twilio.sms("hello", phone=OTHER)
    return {"routine": 1, "emergency": 2, "active": 3}


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.data
    return [c["id"] for c in response.get_json()["conversations"]]


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer wrong-token", f"Basic {API_TOKEN}"])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_without_the_bearer_token_the_api_says_401(
        path: str, authorization: str | None, client: Any, twilio: Twilio) -> None:
    twilio.sms("my back hurts")
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "conversations" not in (response.get_json() or {})
    assert PATIENT not in response.get_data(as_text=True)


def test_the_list_is_newest_first(client: Any, three_conversations: dict[str, int]) -> None:
    assert ids(api_get(client, "/api/conversations")) == [3, 2, 1]


@pytest.mark.parametrize("query, expected", [
    (f"phone={quote(PATIENT)}", [2, 1]),
    (f"phone={PATIENT}", [2, 1]),                     # an unencoded "+" arrives as a space
    ("phone=(617) 555-0123", [2, 1]),                 # any way of writing the number
    (f"phone={quote(OTHER)}", [3]),
    ("disposition=emergency", [2]),
    ("disposition=routine", [1]),
    ("disposition=urgent", []),
    ("status=active", [3]),
    ("status=completed", [2, 1]),
    (f"phone={quote(PATIENT)}&status=completed&disposition=routine", [1]),
    ("limit=1", [3]),
    ("limit=2", [3, 2]),
    (f"phone={quote(PATIENT)}&limit=1", [2]),
    ("phone=%2B14155550000", []),
])
def test_filters(query: str, expected: list[int], client: Any, three_conversations: Any) -> None:
    assert ids(api_get(client, f"/api/conversations?{query}")) == expected


def test_an_unknown_number_has_no_conversations(client: Any, three_conversations: Any) -> None:
    response = api_get(client, "/api/conversations?phone=%2B14155550000")
    assert response.status_code == 200
    assert response.get_json() == {"conversations": []}


@pytest.mark.parametrize("query", ["disposition=severe", "status=finished"])
def test_an_unknown_filter_value_is_a_bad_request(
        query: str, client: Any, three_conversations: Any) -> None:
    response = api_get(client, f"/api/conversations?{query}")
    assert response.status_code == 400
    assert "error" in response.get_json()


def test_an_unknown_conversation_is_404(client: Any, three_conversations: Any) -> None:
    response = api_get(client, "/api/conversations/999")
    assert response.status_code == 404
    assert response.is_json and "error" in response.get_json()


def test_one_conversation_has_the_contract_shape(
        client: Any, three_conversations: Any, protocol: Any) -> None:
    body = api_get(client, "/api/conversations/2").get_json()
    assert {"id", "channel", "phone", "status", "disposition", "red_flags", "rule", "protocol_version",
            "started_at", "ended_at", "turns", "escalation"} <= set(body)
    assert (body["id"], body["channel"], body["phone"], body["status"], body["disposition"]) == (
        2, "sms", PATIENT, "completed", "emergency")
    assert body["red_flags"] == ["bladder_problem"] and body["rule"] == "cauda_equina_bladder"
    assert body["protocol_version"] == protocol.version
    assert [(t["direction"], t["text"]) for t in body["turns"]] == [
        ("in", "I can't pee and my back hurts"),
        ("out", protocol.outcome_messages("emergency_er", "sms")[0])]
    assert all(t["at"] for t in body["turns"])
    assert body["escalation"]["status"] == "pending" and isinstance(body["escalation"]["id"], int)


def test_an_active_conversation_has_no_disposition_yet(client: Any, three_conversations: Any) -> None:
    body = api_get(client, "/api/conversations/3").get_json()
    assert (body["status"], body["disposition"], body["ended_at"], body["escalation"]) == (
        "active", None, None, None)


def test_a_voice_conversation_lists_as_voice(twilio: Twilio, client: Any) -> None:
    Call(twilio).start()
    [listed] = api_get(client, f"/api/conversations?phone={quote(PATIENT)}").get_json()["conversations"]
    assert listed["channel"] == "voice" and listed["status"] == "active"
