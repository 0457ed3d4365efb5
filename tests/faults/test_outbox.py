"""The outbox (telehealth/outbox.py) at unit level: fakeredis and SQLite, the database "down" by
swapping in one that cannot be opened. The end-to-end case is test_database_outage.py; these pin
down the rules it relies on: order, provisional ids, replays, dead letters, the fast path.
"""
from __future__ import annotations

from typing import Any

import pytest

from telehealth import outbox as outbox_module
from telehealth.alerts import Alerts
from telehealth.outbox import Durable, Outbox
from telehealth.records import Records
from telehealth.sessions import Keys
from tests.conftest import PATIENT, SUPERVISOR, Call, Twilio, conversation

ROUTINE = ["my back hurts", "45", *["no"] * 13]


@pytest.fixture
def outage(services: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`outage.start()` makes the database unreachable, `outage.end()` brings it back."""
    working = services.records
    broken = Records.from_url("sqlite:////nonexistent/dir/records.sqlite3")

    class Outage:
        def start(self) -> None:
            monkeypatch.setattr(services, "records", broken)

        def end(self) -> None:
            monkeypatch.setattr(services, "records", working)
            services.sessions.client.delete(Keys.database_down)  # as after DOWN_SECONDS

    yield Outage()
    broken.dispose()


def box(services: Any) -> Outbox:
    return Outbox(services.sessions.client, mapping_ttl_seconds=services.settings.session_ttl_seconds)


def transcript(found: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["direction"], t["text"]) for t in found["turns"]]


def test_a_conversation_goes_on_through_an_outage_and_its_record_is_the_same_as_without_one(
        twilio: Twilio, client: Any, services: Any, outage: Any) -> None:
    for body in ROUTINE[:2]:
        twilio.sms(body, phone="+16175550301")  # the reference: no outage
        twilio.sms(body)
    outage.start()
    replies = [twilio.sms(body) for body in ROUTINE[2:8]]
    assert all(r[-1].endswith("Reply YES or NO.") for r in replies)
    assert box(services).backlog() == 6
    assert client.get("/readyz").get_json()["outbox"] == {"pending": 6, "dead_letters": 0}
    outage.end()
    for body in ROUTINE[2:]:
        twilio.sms(body, phone="+16175550301")
    for body in ROUTINE[8:]:  # the first of these writes the outbox, then its own turn
        twilio.sms(body)
    assert box(services).backlog() == 0
    ours, reference = conversation(client), conversation(client, phone="+16175550301")
    assert transcript(ours) == transcript(reference)
    assert (ours["status"], ours["disposition"]) == ("completed", "routine") == (reference["status"],
                                                                                    reference["disposition"])


def test_a_conversation_opened_in_an_outage_gets_its_database_id_afterwards(
        twilio: Twilio, client: Any, services: Any, outage: Any) -> None:
    outage.start()
    twilio.sms("my back hurts")
    session = services.sessions.load_sms(PATIENT)
    assert isinstance(session.conversation_id, str) and session.conversation_id.startswith("p")
    twilio.sms("45")
    outage.end()
    assert outbox_module.drain_quietly(services) == outbox_module.EMPTY  # a worker's sweep
    real = conversation(client)["id"]
    assert box(services).resolve(session.conversation_id) == real
    twilio.sms("no")
    assert services.sessions.load_sms(PATIENT).conversation_id == real  # the session moved over
    assert [t["text"] for t in conversation(client)["turns"] if t["direction"] == "in"] == ["my back hurts", "45", "no"]


def test_writing_an_operation_twice_changes_nothing(twilio: Twilio, client: Any, services: Any, outage: Any) -> None:
    outage.start()
    for body in ("my back hurts", "45", "no"):
        twilio.sms(body)
    outage.end()
    pending = [outbox_module.loads(raw) for raw in services.sessions.client.lrange(Keys.outbox, 0, -1)]
    outbox = box(services)
    for op in pending[:3]:  # a worker wrote these, then died before taking them off the list
        outbox_module.apply(services, outbox, op)
    assert outbox.drain(services) == outbox_module.EMPTY
    found = conversation(client)
    assert [t["text"] for t in found["turns"] if t["direction"] == "in"] == ["my back hurts", "45", "no"]
    assert len(services.records.list_conversations(phone=PATIENT)) == 1


def test_an_operation_the_database_refuses_is_kept_aside_and_the_rest_written(
        twilio: Twilio, client: Any, services: Any, outage: Any) -> None:
    twilio.sms("my back hurts")
    outage.start()
    twilio.sms("45")
    box(services).append({"op": "update_conversation", "conversation_id": 999_999, "fields": {"status": "abandoned"}})
    twilio.sms("no")
    outage.end()
    assert outbox_module.drain_quietly(services) == outbox_module.EMPTY
    assert [t["text"] for t in conversation(client)["turns"] if t["direction"] == "in"] == ["my back hurts", "45", "no"]
    [dead] = box(services).dead_letters()
    assert dead["conversation_id"] == 999_999
    assert client.get("/readyz").get_json()["outbox"] == {"pending": 0, "dead_letters": 1}


def test_while_older_writes_wait_nothing_is_written_around_them(
        twilio: Twilio, client: Any, services: Any, outage: Any) -> None:
    twilio.sms("my back hurts")
    outage.start()
    twilio.sms("45")
    outage.end()
    lock = services.sessions.client.lock(Keys.outbox_lock, timeout=30)
    assert lock.acquire(blocking=False)  # another process is writing the outbox right now
    twilio.sms("no")
    assert box(services).backlog() == 2, "the new turn went around the waiting one"
    lock.release()
    twilio.sms("no")
    assert box(services).backlog() == 0
    assert [t["text"] for t in conversation(client)["turns"] if t["direction"] == "in"] == [
        "my back hurts", "45", "no", "no"]


def test_an_emergency_in_an_outage_is_told_at_once_and_escalated_from_its_own_time_afterwards(
        twilio: Twilio, client: Any, services: Any, outage: Any, on_call: Any, clock: Any, jobs: Any) -> None:
    outage.start()
    twilio.sms("my back hurts")
    twilio.sms("58")
    flagged_at = clock.now
    assert twilio.sms("yes")[0].startswith("Call 911 now")
    assert jobs.names() == ["waiting_alert"]
    jobs.drain()  # the worker tells the supervisor (the roster is unreadable)
    [page] = services.pager.sent
    assert page.to == SUPERVISOR and "EMERGENCY" in page.body and "617-555-0123" in page.body
    clock.advance(minutes=10)
    outage.end()
    assert outbox_module.drain_quietly(services) == outbox_module.EMPTY
    found = conversation(client)
    escalation = services.records.get_escalation(found["escalation"]["id"])
    assert escalation["created_at"] == flagged_at.isoformat()
    assert escalation["events"][0]["detail"] == {"level": "emergency", "reason": "disposition", "written_late": True}
    assert jobs.names() == ["run_due"]


def test_a_call_in_an_outage_is_recorded_and_closed_afterwards(
        twilio: Twilio, client: Any, services: Any, outage: Any) -> None:
    outage.start()
    call = Call(twilio)
    call.start()
    call.press("15")  # under 18: urgent if the call ends here
    assert call.status("completed").status_code == 204
    outage.end()
    assert outbox_module.drain_quietly(services) == outbox_module.EMPTY
    found = conversation(client)
    assert (found["channel"], found["status"], found["disposition"]) == ("voice", "abandoned", "urgent")
    assert found["escalation"] is not None
    assert services.records.conversation_by_call_sid(call.sid)["id"] == found["id"]


def test_a_delivery_status_in_an_outage_is_applied_afterwards(
        twilio: Twilio, client: Any, services: Any, outage: Any, on_call: Any, jobs: Any) -> None:
    for body in ("my back hurts", "58", "yes"):
        twilio.sms(body)
    jobs.drain()
    escalation_id = conversation(client)["escalation"]["id"]
    alert = [a for a in Alerts(services.records).for_escalation(escalation_id) if a["channel"] == "sms"][0]
    outage.start()
    response = twilio.post(f"/twilio/alerts/status?alert={alert['id']}", {"MessageStatus": "delivered"})
    assert response.status_code == 204
    outage.end()
    assert outbox_module.drain_quietly(services) == outbox_module.EMPTY
    escalation = services.records.get_escalation(alert["escalation_id"])
    assert [e["detail"]["status"] for e in escalation["events"] if e["kind"] == "delivery"] == ["delivered"]


def test_the_database_being_down_is_shared_so_other_webhooks_do_not_wait_for_it(
        services: Any, outage: Any) -> None:
    outage.start()
    first = Durable(services)
    assert first.read(services.records.latest_conversation, PATIENT, default="down") == "down"
    assert services.sessions.client.ttl(Keys.database_down) > 0
    calls: list[str] = []
    second = Durable(services)
    assert second.read(lambda: calls.append("asked"), default="skipped") == "skipped"
    assert calls == [], "a second webhook asked the database the first saw down"


def test_a_call_that_is_an_emergency_in_an_outage_also_tells_the_supervisor(
        twilio: Twilio, services: Any, outage: Any, on_call: Any, jobs: Any) -> None:
    outage.start()
    call = Call(twilio)
    call.start()
    call.press("58")
    assert call.say("yes").said[0].startswith("Call 911 now")
    assert jobs.names() == ["waiting_alert"]
    jobs.drain()
    [page] = services.pager.sent
    assert page.to == SUPERVISOR and page.body.startswith("LINE FAULT: records database down. An EMERGENCY")


def test_no_case_waits_for_the_database_when_it_is_only_busy_being_written(
        twilio: Twilio, client: Any, services: Any, outage: Any, on_call: Any, jobs: Any) -> None:
    twilio.sms("my back hurts")
    outage.start()
    twilio.sms("58")
    outage.end()
    lock = services.sessions.client.lock(Keys.outbox_lock, timeout=30)
    assert lock.acquire(blocking=False)  # a worker is writing the outbox: the database is up
    assert twilio.sms("yes")[0].startswith("Call 911 now")
    assert "waiting_alert" not in jobs.names(), "the supervisor was told the database is down: it is not"
    lock.release()
    assert outbox_module.drain_quietly(services) == outbox_module.EMPTY
    assert conversation(client)["escalation"] is not None
