"""Property-based fuzzing (hypothesis) of what Twilio can deliver: SMS bodies and voice parameters.

The Flask app with fakeredis and SQLite (unit level, for speed), and once more with a fresh
PostgreSQL database behind it (marked integration: PostgreSQL refuses what SQLite stores, NUL
characters or NaN in JSON). Every request is signed. Each example is a fresh patient at a
random point of the check, then one odd request: empty or 1,600+ character bodies, emoji and
other non-GSM text, control characters, SQL and HTML fragments, numbers far outside any range,
missing fields, unknown extra fields.

The examples are fixed (derandomized, 75 per test) so CI is repeatable and fast. To search
further, FUZZ_EXAMPLES=2000 runs that many random examples instead.

Properties: never a 5xx, and never the fail-safe either (odd input is the engine's job, not the
catch-all's); always valid TwiML with only the verbs the channel allows; the live state still
loads as a valid engine state; the stored text is exactly what arrived (NUL becomes U+FFFD, by
design: PostgreSQL text cannot hold it).
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from telehealth import services as services_module
from telehealth.app import create_app
from telehealth.jobs import InlineJobs
from telehealth.paging import FakePager
from telehealth.records import clean_text
from telehealth.sessions import Session
from telehealth.settings import Settings
from telehealth.triage.engine import State

TOKEN = "fuzz-auth-token"
_EXPLORE = os.environ.get("FUZZ_EXAMPLES", "")  # the test reads its own knob, not the app
FUZZ = settings(max_examples=int(_EXPLORE or 75), deadline=None, derandomize=not _EXPLORE,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

GSM_UNFRIENDLY = "😀🙂👍🏽🇺🇸€£¥©®™—–…“”‘’«»¿¡ßøæœ中文日本語한국어العربيةहिन्दी\u200b\u200d\ufeff"
FRAGMENTS = [
    "'; DROP TABLE turns; --", "\" OR 1=1 --", "1; DELETE FROM conversations", "%' OR '%'='",
    "<script>alert(1)</script>", "<Say>hi</Say>", "]]><Hangup/>", "&amp; &lt; &#x0;", "${jndi:ldap://x}",
    "{{7*7}}", "\\x00\\n", "NaN", "Infinity", "-0", "1e309", "99999999999999999999", "-45", "45.5", "0x2d",
    "٤٥", "４５", "forty five", "STOP", "help", "RESTART", "yes no", "YES!!!", "y", "n", "",
]


def _numbers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(min_value=-10**30, max_value=10**30).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["-1", "0", "17", "18", "130", "131", "200", "1000", "1e3", "45#", "4 5", "45 years"]),
    )


def _bodies() -> st.SearchStrategy[str]:
    text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
    control = st.text(alphabet=st.sampled_from([chr(c) for c in range(0, 32)] + ["\x7f", "\u2028", "\u2029"]),
                      max_size=20)
    long = st.integers(min_value=1600, max_value=2400).flatmap(
        lambda n: st.sampled_from(["a", "é", "😀", "no ", "1"]).map(lambda unit: (unit * n)[:n]))
    return st.one_of(text, control, long, st.sampled_from(FRAGMENTS), _numbers(),
                     st.text(alphabet=GSM_UNFRIENDLY, min_size=1, max_size=50),
                     st.lists(st.sampled_from(FRAGMENTS + ["yes", "no", "45"]), max_size=6).map(" ".join))


_extra_fields = st.dictionaries(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij_", min_size=1, max_size=12).filter(
        lambda k: k not in {"From", "To", "Body", "MessageSid", "CallSid", "Digits", "SpeechResult",
                            "Confidence", "CallStatus", "AccountSid"}),
    st.text(max_size=30, alphabet=st.characters(blacklist_categories=("Cs",))), max_size=3)


class Line:
    """One app for the whole module: each example is a new patient, so examples do not interact."""

    def __init__(self, database_url: str | None = None) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="fuzz-")
        url = database_url or f"sqlite:///{Path(self.tmp.name) / 'f.sqlite3'}"
        settings_ = Settings(twilio_auth_token=TOKEN, database_url=url,
                             run_jobs_inline=True, api_token="fuzz-api", secret_key="fuzz")
        self.services = services_module.build(settings_, pager=FakePager(), client=fakeredis.FakeRedis(),
                                              jobs=InlineJobs(synchronous=True), create_schema=True)
        self.services.jobs.services = self.services  # type: ignore[attr-defined]
        self.client = create_app(services=self.services).test_client()
        self.validator = RequestValidator(TOKEN)
        self.numbers = itertools.count(1)

    def post(self, path: str, params: dict[str, str]) -> Any:
        signature = self.validator.compute_signature(f"http://localhost{path}", params)
        return self.client.post(path, data=params, headers={"X-Twilio-Signature": signature})

    def new_phone(self) -> str:
        return f"+1617555{next(self.numbers) % 10000:04d}"[:12]

    def close(self) -> None:
        self.services.records.dispose()
        self.tmp.cleanup()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def line(request: pytest.FixtureRequest) -> Any:
    if request.param == "sqlite":
        made = Line()
        yield made
        made.close()
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from telehealth.records import migrate

    admin_url = request.getfixturevalue("postgres_url")
    name = f"telehealth_fuzz_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        migrate(url)
        made = Line(url)
        yield made
        made.close()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def failures(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.ERROR)
    return lambda: [r for r in caplog.records if r.getMessage() == "webhook failed"]


def twiml(response: Any, allowed: set[str]) -> ElementTree.Element:
    assert response.status_code == 200, (response.status_code, response.data[:300])
    assert response.mimetype == "text/xml"
    root = ElementTree.fromstring(response.data)
    assert root.tag == "Response"
    assert {child.tag for child in root} <= allowed, [child.tag for child in root]
    return root


def assert_valid_state(raw: dict[str, Any], protocol: Any) -> None:
    state = State.from_dict({k: v for k, v in raw.items() if k != "opted_out"}) if raw else None
    if state is None:
        return
    assert state.current is None or state.current in {q.id for q in protocol.questions}
    if state.is_done:
        assert state.disposition in ("emergency", "urgent", "routine") and state.current is None
    else:
        assert state.current is not None


def last_inbound(line: Any, phone: str, sid: str | None) -> str:
    from sqlalchemy import select

    from telehealth.records import Conversation, Turn

    query = select(Turn.text).join(Conversation, Turn.conversation_id == Conversation.id).where(
        Conversation.phone == phone, Turn.direction == "in")
    if sid:
        query = query.where(Turn.twilio_sid == sid)
    with line.services.records.transaction() as session:
        found = session.scalars(query.order_by(Turn.id.desc()).limit(1)).first()
    assert found is not None, "the text was not stored"
    return found


SMS_PREFIXES = [[], ["back pain"], ["back pain", "45"], ["back pain", "45", "no", "no"]]


@FUZZ
@given(prefix=st.sampled_from(SMS_PREFIXES), body=_bodies(), extra=_extra_fields,
       missing=st.sampled_from([None, None, None, "Body", "MessageSid", "To", "AccountSid"]))
def test_any_text_gets_valid_twiml_and_is_stored_exactly(
        line: Any, failures: Any, prefix: list[str], body: str, extra: dict[str, str], missing: str | None) -> None:
    phone = line.new_phone()
    for index, earlier in enumerate(prefix):
        twiml(line.post("/twilio/sms", {"From": phone, "To": "+12025550100", "Body": earlier,
                                        "MessageSid": f"SMP{phone}{index}"}), {"Message"})
    sid = f"SMF{phone}"
    params = {"From": phone, "To": "+12025550100", "Body": body, "MessageSid": sid,
              "AccountSid": "AC" + "0" * 32, **extra}
    if missing:
        params.pop(missing)
    root = twiml(line.post("/twilio/sms", params), {"Message"})
    for message in root:
        assert message.text and len(message.text) <= 160  # one segment each, nothing empty
    assert failures() == [], "odd input reached the fail-safe"

    conversation = line.services.records.latest_conversation(phone, channel="sms")
    assert conversation is not None and conversation["status"] in ("active", "completed", "abandoned", "opted_out")
    # (RESTART stores the text in the conversation it ends, so the turn is found by number and sid.)
    assert last_inbound(line, phone, params.get("MessageSid")) == clean_text(params.get("Body", ""))
    session = line.services.sessions.load_sms(phone)
    if session is not None:
        assert_valid_state(session.state, line.services.protocol)


def _voice_inputs() -> st.SearchStrategy[dict[str, str]]:
    digits = st.one_of(st.text(alphabet="0123456789*#", max_size=12), st.sampled_from(["", "#", "*", "45#", "0" * 40]),
                       st.text(max_size=10, alphabet=st.characters(blacklist_categories=("Cs",))))
    speech = st.one_of(st.just(""), _bodies())
    confidence = st.one_of(st.just(None), st.sampled_from(["nan", "inf", "-inf", "-1", "2", "1e309", "abc", "", "0.0"]),
                           st.floats(allow_nan=False, allow_infinity=False).map(repr))
    return st.fixed_dictionaries({"Digits": digits, "SpeechResult": speech, "Confidence": confidence})


@FUZZ
@given(answers=st.integers(min_value=0, max_value=3), given_=_voice_inputs(), extra=_extra_fields,
       step=st.one_of(st.integers(min_value=-10**12, max_value=10**12).map(str), st.sampled_from(["", "x", "2.5"])),
       missing=st.sampled_from([None, None, None, "From", "To", "Digits", "SpeechResult"]))
def test_any_voice_input_gets_valid_twiml_and_is_stored_exactly(
        line: Any, failures: Any, answers: int, given_: dict[str, str | None], extra: dict[str, str],
        step: str, missing: str | None) -> None:
    phone = line.new_phone()
    call_sid = f"CAF{phone}"
    base = {"CallSid": call_sid, "From": phone, "To": "+12025550100", "AccountSid": "AC" + "0" * 32}
    verbs = {"Say", "Gather", "Redirect", "Hangup", "Pause"}
    twiml(line.post("/twilio/voice", {**base, "CallStatus": "ringing"}), verbs)
    for n in range(answers):  # a few ordinary answers first: age, then no, no
        twiml(line.post(f"/twilio/voice/answer?step={n + 2}", {**base, "Digits": "45" if n == 0 else "2"}), verbs)
    before = line.services.sessions.load_call(call_sid)
    assert before is not None

    params = {**base, **extra, **{k: v for k, v in given_.items() if v is not None}}
    if missing:
        params.pop(missing, None)
    root = twiml(line.post(f"/twilio/voice/answer?step={step}", params), verbs)
    assert failures() == [], "odd input reached the fail-safe"
    assert all((say.text or "").strip() for say in root.iter("Say"))

    after = line.services.sessions.load_call(call_sid)
    assert isinstance(after, Session)
    assert_valid_state(after.state, line.services.protocol)
    conversation = line.services.records.conversation_by_call_sid(call_sid)
    heard = [t for t in conversation["turns"] if t["direction"] == "in"]
    try:
        new_step = int(step)
    except ValueError:
        new_step = 0
    if new_step > before.step and not (before.state and State.from_dict(before.state).is_done):
        digits, speech = params.get("Digits", ""), params.get("SpeechResult", "")
        latest = heard[-1]
        assert latest["digits"] == (clean_text(digits) if digits else None)
        assert latest["speech"] == (clean_text(speech) if speech else None)
        silent = not speech.strip() and not digits
        assert latest["text"] == ("(silence)" if silent else clean_text(digits or speech))
        confidence = latest["confidence"]
        sent = params.get("Confidence")
        if confidence is not None and math.isnan(confidence):
            assert sent is not None and float(sent) != float(sent)
    else:  # a stale or repeated step: Twilio retried it; nothing new is stored
        assert len(heard) == answers
