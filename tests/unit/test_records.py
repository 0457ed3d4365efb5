"""Behaviour of telehealth.records, on a migrated SQLite file per test.

Every `test_*` here that is not named `test_sqlite_*` only uses the `records`
fixture (plus pytest built-ins), so tests/integration/test_records_postgres.py
re-runs it unchanged against PostgreSQL.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import CheckConstraint, Engine, create_engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from telehealth.records import (
    MIGRATIONS_DIR, AuditEntry, Base, Conversation, Escalation, Records, RecordsUnavailable, Turn, migrate,
)

T0 = datetime(2026, 11, 26, 21, 50, 5, 123456, tzinfo=timezone.utc)
PHONE = "+15555550100"
OTHER_PHONE = "+15555550199"
CONVERSATION_KEYS = {
    "id", "channel", "phone", "status", "disposition", "red_flags", "rule", "protocol_version",
    "started_at", "ended_at", "last_activity_at", "facts", "turns", "escalation",
}
TURN_KEYS = {"at", "direction", "text", "question_id", "digits", "speech", "confidence"}
ESCALATION_KEYS = {
    "id", "level", "reason", "summary", "status", "created_at", "acknowledged_by",
    "acknowledged_at", "events", "next_step", "next_due_at",
}
R = TypeVar("R")


@pytest.fixture
def records(tmp_path: Path) -> Iterator[Records]:
    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    migrate(url)
    recs = Records.from_url(url)
    yield recs
    recs.dispose()


def _start(records: Records, phone: str = PHONE, **kwargs: Any) -> int:
    kwargs.setdefault("channel", "sms")
    return records.start_conversation(phone=phone, protocol_version="lbp-1", **kwargs)


def _get(records: Records, conversation_id: int) -> dict[str, Any]:
    conv = records.get_conversation(conversation_id)
    assert conv is not None
    return conv


def _at_once(count: int, call: Callable[[], R]) -> list[R]:
    """Run `call` in `count` threads released together, to provoke races."""
    barrier = threading.Barrier(count)

    def run() -> R:
        barrier.wait(timeout=10)
        return call()

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(run) for _ in range(count)]
        return [future.result(timeout=30) for future in futures]


def _assert_schema_matches_models(engine: Engine) -> None:
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        # compare_metadata ignores CHECK constraints, so compare their names here.
        inspector = inspect(conn)
        for table in Base.metadata.sorted_tables:
            expected = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
            found = {c["name"] for c in inspector.get_check_constraints(table.name)}
            assert found == expected, table.name


# --- schema ------------------------------------------------------------------------------


def test_migrated_schema_matches_models(records: Records) -> None:
    _assert_schema_matches_models(records.engine)


def test_database_enforces_allowed_values(records: Records) -> None:
    conv = _start(records)
    with pytest.raises(IntegrityError), records.engine.begin() as conn:
        conn.execute(text("UPDATE conversations SET status = 'lost' WHERE id = :id"), {"id": conv})


# --- conversations -----------------------------------------------------------------------


def test_start_and_get_conversation_has_the_public_shape(records: Records) -> None:
    conv_id = _start(records, channel="voice", call_sid="CA123", at=T0)
    conv = _get(records, conv_id)
    assert set(conv) == CONVERSATION_KEYS
    assert conv == {
        "id": conv_id, "channel": "voice", "phone": PHONE, "status": "active",
        "disposition": None, "red_flags": [], "rule": None, "protocol_version": "lbp-1",
        "started_at": "2026-11-26T21:50:05.123456+00:00", "ended_at": None,
        "last_activity_at": "2026-11-26T21:50:05.123456+00:00", "facts": {}, "turns": [],
        "escalation": None,
    }


def test_unknown_ids_and_values(records: Records) -> None:
    assert records.get_conversation(999) is None
    assert records.latest_conversation(PHONE) is None
    assert records.conversation_by_call_sid("CA-missing") is None
    assert records.get_escalation(999) is None
    with pytest.raises(ValueError):
        _start(records, channel="fax")
    with pytest.raises(ValueError):
        _start(records, at=datetime(2026, 1, 1))  # naive


def test_start_conversation_is_idempotent_per_call_sid(records: Records) -> None:
    first = _start(records, channel="voice", call_sid="CA1")
    assert _start(records, channel="voice", call_sid="CA1") == first
    assert _start(records, channel="voice", call_sid="CA2") != first
    assert _start(records) != _start(records)  # no call sid: always a new conversation
    conv = records.conversation_by_call_sid("CA1")
    assert conv is not None and conv["id"] == first


def test_update_conversation_sets_every_field(records: Records) -> None:
    conv_id = _start(records, at=T0)
    ended = T0 + timedelta(minutes=3)
    records.update_conversation(
        conv_id, status="completed", disposition="urgent", rule="R7",
        red_flags=["saddle_anaesthesia"], facts={"age": 71, "onset": "today"},
        ended_at=ended, end_reason="disposition",
    )
    conv = _get(records, conv_id)
    assert (conv["status"], conv["disposition"], conv["rule"]) == ("completed", "urgent", "R7")
    assert conv["red_flags"] == ["saddle_anaesthesia"]
    assert conv["facts"] == {"age": 71, "onset": "today"}
    assert conv["ended_at"] == ended.isoformat()
    # end_reason is not part of the public shape.
    with records.engine.connect() as conn:
        end_reason = conn.scalar(select(Conversation.end_reason).where(Conversation.id == conv_id))
    assert end_reason == "disposition"
    records.update_conversation(conv_id, disposition=None)
    assert _get(records, conv_id)["disposition"] is None


def test_update_conversation_rejects_bad_input(records: Records) -> None:
    conv_id = _start(records)
    with pytest.raises(TypeError):
        records.update_conversation(conv_id, phone="+1")
    with pytest.raises(ValueError):
        records.update_conversation(conv_id, status="lost")
    with pytest.raises(ValueError):
        records.update_conversation(conv_id, ended_at=datetime(2026, 1, 1))
    with pytest.raises(LookupError):
        records.update_conversation(999, status="completed")


def test_latest_conversation_and_channel_filter(records: Records) -> None:
    sms_old = _start(records, at=T0)
    voice = _start(records, channel="voice", at=T0 + timedelta(minutes=1))
    _start(records, phone=OTHER_PHONE, at=T0 + timedelta(minutes=5))
    records.record_turn(sms_old, direction="in", text="hi", twilio_sid="SM1")
    latest = records.latest_conversation(PHONE)
    assert latest is not None and latest["id"] == voice
    latest_sms = records.latest_conversation(PHONE, channel="sms")
    assert latest_sms is not None and latest_sms["id"] == sms_old
    assert [t["text"] for t in latest_sms["turns"]] == ["hi"]


def test_list_conversations_newest_first_with_filters(records: Records) -> None:
    a = _start(records, at=T0)
    b = _start(records, at=T0 + timedelta(minutes=2))
    c = _start(records, at=T0 + timedelta(minutes=2))  # same start: higher id first
    d = _start(records, phone=OTHER_PHONE, at=T0 + timedelta(minutes=1))
    records.update_conversation(b, status="completed", disposition="emergency")
    records.update_conversation(d, status="completed", disposition="routine")
    records.create_escalation(b, level="emergency", reason="disposition", summary="R1 fired")

    listed = records.list_conversations()
    assert [conv["id"] for conv in listed] == [c, b, d, a]
    assert set(listed[0]) >= CONVERSATION_KEYS - {"turns"}
    escalation = listed[1]["escalation"]
    assert escalation is not None and escalation["level"] == "emergency"
    assert set(escalation) >= ESCALATION_KEYS - {"events"}
    assert [conv["id"] for conv in records.list_conversations(limit=2)] == [c, b]
    assert [conv["id"] for conv in records.list_conversations(phone=PHONE)] == [c, b, a]
    assert [conv["id"] for conv in records.list_conversations(disposition="routine")] == [d]
    assert [conv["id"] for conv in records.list_conversations(status="active")] == [c, a]
    assert records.list_conversations(phone=PHONE, status="completed")[0]["id"] == b
    with pytest.raises(ValueError):
        records.list_conversations(limit=0)


def test_stale_active_conversations(records: Records) -> None:
    idle_since = T0 + timedelta(minutes=30)
    old = _start(records, at=T0)
    older_voice = _start(records, channel="voice", at=T0 - timedelta(minutes=5))
    revived = _start(records, at=T0)
    records.record_turn(revived, direction="in", text="still here", at=idle_since)
    finished = _start(records, at=T0)
    records.update_conversation(finished, status="completed")
    _start(records, at=idle_since + timedelta(minutes=1))

    stale = records.stale_active_conversations(idle_since=idle_since)
    assert [conv["id"] for conv in stale] == [older_voice, old]
    only_sms = records.stale_active_conversations(idle_since=idle_since, channel="sms")
    assert [conv["id"] for conv in only_sms] == [old]


# --- turns -------------------------------------------------------------------------------


def test_record_turn_appends_and_bumps_activity(records: Records) -> None:
    conv_id = _start(records, channel="voice", call_sid="CA9", at=T0)
    later = T0 + timedelta(seconds=40)
    assert records.record_turn(
        conv_id, direction="in", text="1", twilio_sid="CA9:q_age", question_id="q_age",
        digits="1", speech="one", confidence=0.87, at=later,
    )
    assert records.record_turn(conv_id, direction="out", text="Thanks.", in_reply_to="CA9:q_age")
    conv = _get(records, conv_id)
    assert [set(turn) for turn in conv["turns"]] == [TURN_KEYS, TURN_KEYS]
    assert conv["turns"][0] == {
        "at": later.isoformat(), "direction": "in", "text": "1", "question_id": "q_age",
        "digits": "1", "speech": "one", "confidence": 0.87,
    }
    assert conv["turns"][1]["direction"] == "out"
    assert datetime.fromisoformat(conv["last_activity_at"]) > later


def test_backdated_turn_does_not_move_activity_backwards(records: Records) -> None:
    conv_id = _start(records, at=T0)
    records.record_turn(conv_id, direction="in", text="late", at=T0 - timedelta(hours=1))
    assert _get(records, conv_id)["last_activity_at"] == T0.isoformat()


def test_duplicate_turn_is_recorded_once(records: Records) -> None:
    conv_id = _start(records, at=T0)
    assert records.record_turn(conv_id, direction="in", text="yes", twilio_sid="SM1")
    assert not records.record_turn(
        conv_id, direction="in", text="yes", twilio_sid="SM1", at=T0 + timedelta(hours=1)
    )
    # Same sid in the other direction and NULL sids are not duplicates.
    assert records.record_turn(conv_id, direction="out", text="ok", twilio_sid="SM1")
    assert records.record_turn(conv_id, direction="out", text="a")
    assert records.record_turn(conv_id, direction="out", text="a")
    conv = _get(records, conv_id)
    assert [turn["text"] for turn in conv["turns"]] == ["yes", "ok", "a", "a"]
    assert conv["last_activity_at"] != (T0 + timedelta(hours=1)).isoformat()


def test_duplicate_turn_race_is_caught_by_the_unique_constraint(
    records: Records, monkeypatch: pytest.MonkeyPatch,
) -> None:
    conv_id = _start(records)
    assert records.record_turn(conv_id, direction="in", text="yes", twilio_sid="SM1")
    real = records._turn_exists
    missed = [False]  # the pre-check misses the row another worker just wrote
    monkeypatch.setattr(
        records, "_turn_exists", lambda d, s: missed.pop() if missed else real(d, s)
    )
    assert not records.record_turn(conv_id, direction="in", text="yes", twilio_sid="SM1")
    assert len(_get(records, conv_id)["turns"]) == 1


def test_concurrent_retries_record_one_turn(records: Records) -> None:
    conv_id = _start(records)
    results = _at_once(
        4, lambda: records.record_turn(conv_id, direction="in", text="2", twilio_sid="SM7")
    )
    assert sorted(results) == [False, False, False, True]
    assert len(_get(records, conv_id)["turns"]) == 1


def test_concurrent_distinct_turns_are_all_recorded(records: Records) -> None:
    conv_id = _start(records)
    counter = iter(range(1000))

    def write_ten() -> None:
        for _ in range(10):
            n = next(counter)
            assert records.record_turn(conv_id, direction="in", text=str(n), twilio_sid=f"SM{n}")

    _at_once(4, write_ten)
    assert len(_get(records, conv_id)["turns"]) == 40


def test_record_turn_validates(records: Records) -> None:
    with pytest.raises(LookupError):
        records.record_turn(999, direction="in", text="hi", twilio_sid="SM1")
    assert records.replies_to("SM1") is None
    with pytest.raises(ValueError):
        records.record_turn(_start(records), direction="sideways", text="hi")


@pytest.mark.parametrize("sent", [
    "Back pain 😩👨‍👩‍👧 since Tuesday 🇬🇧",
    "é vs e\u0301, עברית, 中文",
    "x" * 1700,
    "  tabs\tand\r\nnewlines\n bell\x07 esc\x1b del\x7f  ",
    "",
], ids=["emoji", "combining-rtl-cjk", "1700-chars", "control-chars", "empty"])
def test_text_is_stored_exactly(records: Records, sent: str) -> None:
    conv_id = _start(records)
    records.record_turn(conv_id, direction="in", text=sent, speech=sent, twilio_sid="SM1")
    turn = _get(records, conv_id)["turns"][0]
    assert turn["text"] == sent and turn["speech"] == sent
    assert records.replies_to("SM1") == []


def test_nul_and_lone_surrogates_become_replacement_characters(records: Records) -> None:
    # PostgreSQL text cannot hold NUL, so every backend stores U+FFFD instead.
    conv_id = _start(records)
    records.record_turn(
        conv_id, direction="in", text="a\x00b\ud800c", speech="\x00", digits="1\x00"
    )
    turn = _get(records, conv_id)["turns"][0]
    assert turn["text"] == "a\ufffdb\ufffdc"
    assert (turn["speech"], turn["digits"]) == ("\ufffd", "1\ufffd")


def test_replies_to(records: Records) -> None:
    conv_id = _start(records)
    assert records.replies_to("SM1") is None
    records.record_turn(conv_id, direction="in", text="hello", twilio_sid="SM1")
    assert records.replies_to("SM1") == []
    records.record_turn(conv_id, direction="out", text="First question?", in_reply_to="SM1")
    records.record_turn(conv_id, direction="in", text="other", twilio_sid="SM2")
    records.record_turn(conv_id, direction="out", text="Second part.", in_reply_to="SM1")
    records.record_turn(conv_id, direction="out", text="For SM2", in_reply_to="SM2")
    assert records.replies_to("SM1") == ["First question?", "Second part."]
    assert records.replies_to("SM2") == ["For SM2"]
    # Only an inbound turn counts as "recorded": an outbound sid is not a reply key.
    records.record_turn(conv_id, direction="out", text="x", twilio_sid="SM3")
    assert records.replies_to("SM3") is None


# --- escalations and audit ---------------------------------------------------------------


def test_create_escalation_is_idempotent(records: Records) -> None:
    conv_id = _start(records)
    esc_id, created = records.create_escalation(
        conv_id, level="emergency", reason="disposition", summary="Saddle anaesthesia, 71y"
    )
    assert created
    assert records.create_escalation(
        conv_id, level="urgent", reason="abandoned", summary="other"
    ) == (esc_id, False)
    escalation = records.get_escalation(esc_id)
    assert escalation is not None
    assert set(escalation) == ESCALATION_KEYS | {"conversation_id", "chain"}
    assert escalation["conversation_id"] == conv_id
    assert (escalation["level"], escalation["reason"], escalation["summary"]) == (
        "emergency", "disposition", "Saddle anaesthesia, 71y"
    )
    assert (escalation["status"], escalation["acknowledged_by"]) == ("pending", None)
    assert escalation["events"] == []
    assert datetime.fromisoformat(escalation["created_at"]).tzinfo == timezone.utc


def test_create_escalation_validates(records: Records) -> None:
    with pytest.raises(LookupError):
        records.create_escalation(999, level="urgent", reason="disposition", summary="s")
    with pytest.raises(ValueError):
        records.create_escalation(_start(records), level="routine", reason="r", summary="s")


def test_escalation_race_is_caught_by_the_unique_constraint(
    records: Records, monkeypatch: pytest.MonkeyPatch,
) -> None:
    conv_id = _start(records)
    esc_id, _ = records.create_escalation(conv_id, level="urgent", reason="r", summary="s")
    real = records._escalation_id_for
    missed: list[int | None] = [None]  # the pre-check misses the row another worker wrote
    monkeypatch.setattr(
        records, "_escalation_id_for", lambda c: missed.pop() if missed else real(c)
    )
    assert records.create_escalation(conv_id, level="urgent", reason="r", summary="s") == (
        esc_id, False
    )


def test_concurrent_create_escalation_makes_one_row(records: Records) -> None:
    conv_id = _start(records)
    results = _at_once(2, lambda: records.create_escalation(
        conv_id, level="emergency", reason="disposition", summary="s"
    ))
    assert sorted(created for _, created in results) == [False, True]
    assert results[0][0] == results[1][0]
    with records.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Escalation)) == 1


def test_escalation_events_appear_in_order(records: Records) -> None:
    conv_id = _start(records)
    esc_id, _ = records.create_escalation(conv_id, level="urgent", reason="abandoned", summary="s")
    records.add_escalation_event(esc_id, "queued")
    records.add_escalation_event(esc_id, "alert_printed", {"channel": "console"}, at=T0)
    with pytest.raises(LookupError):
        records.add_escalation_event(999, "queued")
    expected = [
        {"kind": "queued", "detail": {}},
        {"kind": "alert_printed", "detail": {"channel": "console"}},
    ]
    escalation = records.get_escalation(esc_id)
    assert escalation is not None
    assert [{"kind": e["kind"], "detail": e["detail"]} for e in escalation["events"]] == expected
    assert escalation["events"][1]["at"] == T0.isoformat()
    in_conversation = _get(records, conv_id)["escalation"]
    assert in_conversation is not None and set(in_conversation) == ESCALATION_KEYS
    assert in_conversation["events"] == escalation["events"]


def test_audit_appends_rows(records: Records) -> None:
    records.audit("webhook_failed", target="/sms", detail={"error": "KeyError"})
    records.audit("export", actor="dr.lee")
    with records.engine.connect() as conn:
        rows = conn.execute(
            select(AuditEntry.actor, AuditEntry.action, AuditEntry.target, AuditEntry.detail)
            .order_by(AuditEntry.id)
        ).all()
        at = conn.scalar(select(AuditEntry.at).limit(1))
    assert [tuple(row) for row in rows] == [
        ("system", "webhook_failed", "/sms", {"error": "KeyError"}),
        ("dr.lee", "export", None, {}),
    ]
    assert at is not None and at.tzinfo == timezone.utc


# --- timestamps --------------------------------------------------------------------------


def test_timestamps_read_back_as_aware_utc(records: Records) -> None:
    local = datetime(2026, 11, 27, 8, 50, 5, 123456, tzinfo=timezone(timedelta(hours=11)))
    conv_id = _start(records, at=local)
    records.record_turn(conv_id, direction="in", text="hi", at=local)
    conv = _get(records, conv_id)
    assert conv["started_at"] == "2026-11-26T21:50:05.123456+00:00"
    assert conv["turns"][0]["at"] == conv["started_at"]
    with records.engine.connect() as conn:
        stored = conn.scalar(select(Turn.at))
    assert stored == local and stored is not None and stored.tzinfo == timezone.utc
    assert records.stale_active_conversations(idle_since=local + timedelta(microseconds=1))
    assert not records.stale_active_conversations(idle_since=local)
    with pytest.raises(ValueError):
        records.stale_active_conversations(idle_since=datetime(2026, 1, 1))


# --- SQLite only -------------------------------------------------------------------------


def test_sqlite_create_schema_matches_migrations(tmp_path: Path) -> None:
    recs = Records.from_url(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    try:
        recs.create_schema()
        _assert_schema_matches_models(recs.engine)
    finally:
        recs.dispose()


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return str(ScriptDirectory.from_config(config).get_current_head())


def test_sqlite_migrate_twice_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.sqlite3'}"
    migrate(url)
    migrate(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == _head_revision()
    finally:
        engine.dispose()


def test_sqlite_connections_are_tuned(records: Records) -> None:
    with records.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_sqlite_in_memory_database_is_shared_across_calls() -> None:
    recs = Records.from_url("sqlite://")
    try:
        recs.create_schema()
        conv_id = _start(recs)
        assert _get(recs, conv_id)["phone"] == PHONE
    finally:
        recs.dispose()


def test_sqlite_unreachable_database_raises_records_unavailable(tmp_path: Path) -> None:
    recs = Records.from_url(f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite3'}")
    try:
        with pytest.raises(RecordsUnavailable) as caught:
            recs.get_conversation(1)
        assert PHONE not in str(caught.value)
    finally:
        recs.dispose()


def test_record_exchange_writes_turns_and_state_once(records: Records) -> None:
    conv = records.start_conversation(channel="sms", phone="+16175550123", protocol_version="v", at=T0)
    turns = [{"direction": "in", "text": "no", "twilio_sid": "SMx1", "at": T0 + timedelta(seconds=5)},
             {"direction": "out", "text": "Next question?", "in_reply_to": "SMx1", "at": T0 + timedelta(seconds=5)}]

    assert records.record_exchange(conv, turns, {"facts": {"fever": False}, "red_flags": []})
    assert not records.record_exchange(conv, turns, {"facts": {"fever": True}})  # a retried webhook

    found = records.get_conversation(conv)
    assert found is not None
    assert [(t["direction"], t["text"]) for t in found["turns"]] == [("in", "no"), ("out", "Next question?")]
    assert found["facts"] == {"fever": False}
    assert found["last_activity_at"] == (T0 + timedelta(seconds=5)).isoformat()


def test_record_exchange_never_moves_last_activity_back(records: Records) -> None:
    conv = records.start_conversation(channel="sms", phone="+16175550123", protocol_version="v", at=T0)
    records.record_exchange(conv, [{"direction": "out", "text": "a", "at": T0 + timedelta(minutes=2)}])
    records.record_exchange(conv, [{"direction": "out", "text": "b", "at": T0 + timedelta(minutes=1)}])
    found = records.get_conversation(conv)
    assert found is not None and found["last_activity_at"] == (T0 + timedelta(minutes=2)).isoformat()


def test_record_exchange_for_an_unknown_conversation_is_refused(records: Records) -> None:
    for turns, changes in (([], {"status": "completed"}), ([{"direction": "out", "text": "x"}], None)):
        with pytest.raises(LookupError):
            records.record_exchange(999, turns, changes)
