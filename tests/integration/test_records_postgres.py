"""telehealth.records on the real PostgreSQL, in a throwaway database per session.

The backend-agnostic tests of tests/unit/test_records.py run here unchanged,
against this module's `records` fixture; below them are PostgreSQL-only checks.
"""
from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError

from telehealth.records import Records, RecordsUnavailable, migrate

pytestmark = pytest.mark.integration


def _shared_module() -> ModuleType:
    # A plain import (not exec from a path) so pytest still rewrites its asserts.
    unit_dir = str(Path(__file__).resolve().parents[1] / "unit")
    if unit_dir not in sys.path:
        sys.path.insert(0, unit_dir)
    return importlib.import_module("test_records")


_shared = _shared_module()
globals().update({
    name: value for name, value in vars(_shared).items()
    if name.startswith("test_") and not name.startswith("test_sqlite_")
})
T0 = _shared.T0

_TABLES = "audit_log, escalation_events, escalations, turns, conversations"


@pytest.fixture(scope="session")
def pg_database_url(postgres_url: str) -> Iterator[str]:
    """A fresh, migrated database, dropped at the end of the session."""
    name = f"telehealth_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        migrate(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def records(pg_database_url: str) -> Iterator[Records]:
    recs = Records.from_url(pg_database_url)
    with recs.engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE")
    yield recs
    recs.dispose()


def test_postgres_connections_have_timeouts(records: Records) -> None:
    with records.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "5s"


def test_postgres_refuses_nul_in_text(records: Records) -> None:
    # Why record_turn replaces NUL with U+FFFD: PostgreSQL text cannot store it at all.
    with pytest.raises(DataError), records.engine.begin() as conn:
        conn.execute(text("SELECT CAST(:value AS text)"), {"value": "a\x00b"})


def test_postgres_timestamps_are_utc_whatever_the_session_zone(pg_database_url: str) -> None:
    engine = create_engine(
        pg_database_url, connect_args={"options": "-c timezone=Asia/Kolkata"}
    )
    recs = Records(engine)
    try:
        conv_id = recs.start_conversation(
            channel="sms", phone="+15555550100", protocol_version="lbp-1", at=T0
        )
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW timezone").scalar() == "Asia/Kolkata"
        conv = recs.get_conversation(conv_id)
        assert conv is not None and conv["started_at"] == "2026-11-26T21:50:05.123456+00:00"
    finally:
        recs.dispose()


def test_postgres_unreachable_raises_records_unavailable() -> None:
    recs = Records.from_url("postgresql+psycopg://postgres@127.0.0.1:1/test")
    try:
        with pytest.raises(RecordsUnavailable):
            recs.list_conversations()
    finally:
        recs.dispose()
