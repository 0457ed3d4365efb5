"""The conversation lifecycle around the pure engine: sessions, durable turns, escalation.

Webhooks call `TriageLine`; it decides which conversation a message belongs to, runs the engine,
records every turn in and out, keeps the live state in Redis and escalates urgent outcomes.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from telehealth import logs, metrics
from telehealth.outbox import Durable
from telehealth.services import Services
from telehealth.sessions import Arrival, Session
from telehealth.triage import engine
from telehealth.triage.engine import Input, Reply, State
from telehealth.triage.protocol import Level

log = logging.getLogger(__name__)

# Twilio's reserved keywords (Advanced Opt-Out), matched on the whole message.
OPT_OUT_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
OPT_IN_WORDS = {"start", "unstop"}
HELP_WORDS = {"help", "info"}
RESTART_WORDS = {"restart"}
# Sent once a minute to a number texting faster than the flood limit (one GSM-7 segment). The
# texts over the limit are not read: a loop with another auto-responder must not cost a reply each.
FLOOD_TEXT = ("You are sending texts faster than we can read them. If this is an emergency, call "
              "911 now. Otherwise wait a minute, then text again.")


@dataclass(frozen=True)
class Outgoing:
    """What the patient hears or reads next; the channel renders it as TwiML."""

    said: tuple[str, ...]
    prompt: str | None = None
    expects: str | None = None  # "yes_no" | "number" while a question is open
    step: int = 0
    ended: bool = False
    emergency: bool = False

    @property
    def messages(self) -> list[str]:
        return [*self.said, *([self.prompt] if self.prompt else [])]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Outgoing":
        return cls(**{**data, "said": tuple(data["said"])})


def keyword(body: str) -> str | None:
    word = body.strip().strip(".!").lower()
    if word in OPT_OUT_WORDS | OPT_IN_WORDS | HELP_WORDS | RESTART_WORDS:
        return word
    return None


class TriageLine:
    def __init__(self, services: Services, *, live: bool = True) -> None:
        """`live=False`: Redis is what failed; only the durable record is used (the fail-safe)."""
        self.s = services
        self.protocol = services.protocol
        # The database, or the outbox while the database is down (telehealth/outbox.py).
        self.durable = Durable(services, live=live)
        self._caller = ""  # the patient's number, for a page about a case waiting for the database
        self._arrival: Arrival | None = None
        # This request's turns, written together with the conversation's new state (one commit).
        self._pending: list[tuple[int | str, dict[str, Any]]] = []
        self._inbound_sids: set[str] = set()

    # --- SMS -----------------------------------------------------------------------------

    def arrive(self, phone: str, message_sid: str) -> list[str] | None:
        """A text's first look at Redis (one round trip): the reply already sent to a retried
        MessageSid, if any. Also counts the text for the flood limit, and the outbox's state."""
        self._arrival = self.s.sessions.arrival(phone, message_sid, self.s.clock().timestamp())
        self.durable.seed(self._arrival.database_down, self._arrival.outbox_backlog)
        return self._arrival.cached_reply

    def text_in(self, phone: str, body: str, message_sid: str) -> list[str]:
        """Handle one inbound text; a retried MessageSid gets the same reply and changes nothing."""
        self._caller = phone
        arrival = self._arrival
        if arrival is None:
            self.arrive(phone, message_sid)
            arrival = self._arrival
        assert arrival is not None
        if arrival.cached_reply is not None:
            return arrival.cached_reply
        limit = self.s.settings.sms_flood_limit_per_minute
        if 0 < limit < arrival.texts_this_minute:
            return self._flooded(arrival.texts_this_minute - limit)
        with self.s.sessions.lock(phone):
            replayed = self.durable.read(self.s.records.replies_to, message_sid) if message_sid else None
            if replayed:
                return replayed
            out = self._text(phone, body, message_sid)
            self._flush()
            if message_sid:
                self.s.sessions.remember_reply(message_sid, out)
            return out

    def _flooded(self, over: int) -> list[str]:
        """Over the per-number limit: the 911 advice once a minute, nothing read, nothing stored."""
        if over > 1:
            return []
        log.warning("texts over the flood limit: not read for the rest of the minute")
        try:
            self.s.records.audit("sms_flood", detail={"limit": self.s.settings.sms_flood_limit_per_minute})
        except Exception as exc:  # the audit is best effort; the advice goes out regardless
            log.error("could not audit a flood", extra={"error": type(exc).__name__})
        return [FLOOD_TEXT]

    def _text(self, phone: str, body: str, sid: str) -> list[str]:
        now = self.s.clock()
        word = keyword(body)
        session = self.s.sessions.load_sms(phone)
        # An opted-out conversation is already closed: time passing must not reopen it.
        if session and not session.state.get("opted_out") and self._is_stale(session, now):
            self._close(session, "abandoned", "no reply for the session timeout")
            self.s.sessions.drop_sms(phone)
            session = None
        if word in OPT_OUT_WORDS:
            return self._opt_out(phone, body, sid, session, now)
        if session is None:
            latest = self.durable.read(self.s.records.latest_conversation, phone, channel="sms")
            if latest and latest["status"] == "opted_out":
                session = Session(latest["id"], {"opted_out": True}, now.isoformat())
            elif latest and latest["status"] == "active" and word is None and self._is_recent(latest, now):
                return self._pick_up(phone, latest, body, sid, now)
        if session is not None and session.state.get("opted_out"):
            if word not in OPT_IN_WORDS:
                self._record_in(session, body, sid, now)
                return []  # opted out: Twilio would block any reply
            return self._opt_in(phone, body, sid, session, now)
        if word in RESTART_WORDS and session is not None:
            self._record_in(session, body, sid, now)
            self._close(session, "abandoned", "patient restarted")
            session = None
        if word in HELP_WORDS:
            return self._help(phone, body, sid, session, now)
        if session is not None and self._state(session).is_done and not self._volunteers_emergency(body):
            return self._after_end(body, sid, session, now)
        if session is None or self._state(session).is_done:
            return self._start_sms(phone, body, sid, now)
        state = self._state(session)
        self._record_in(session, body, sid, now, question_id=state.current)
        reply = engine.resume(self.protocol, state, Input(text=body))
        return self._advance_sms(phone, session, reply, sid, now)

    def _pick_up(self, phone: str, record: dict[str, Any], body: str, sid: str, now: datetime) -> list[str]:
        """The live session is gone (Redis lost it) but the durable record is fresh: go on from it.

        The question the patient last saw is the next unanswered one, so this text answers it.
        A conversation the fail-safe opened (Redis was down at the first text) has asked nothing
        yet: the check starts in it, the way a first text starts one.
        """
        session = Session(record["id"], {}, now.isoformat())
        if not any(turn["direction"] == "out" and turn["question_id"] for turn in record.get("turns") or []):
            return self._start_sms(phone, body, sid, now, session=session)
        reply = engine.restore(self.protocol, "sms", record.get("facts") or {})
        self._record_in(session, body, sid, now, question_id=reply.state.current)
        if not reply.state.is_done:
            reply = engine.resume(self.protocol, reply.state, Input(text=body))
        if reply.state.disposition != Level.EMERGENCY.value:  # nothing goes before the instruction
            reply = replace(reply, said=(self.protocol.text("picked_up", "sms"), *reply.said))
        log.info("conversation picked up from the durable record", extra={"conversation_id": record["id"]})
        return self._advance_sms(phone, session, reply, sid, now)

    def _is_recent(self, record: dict[str, Any], now: datetime) -> bool:
        idle = now - datetime.fromisoformat(record["last_activity_at"])
        return idle <= timedelta(minutes=self.s.settings.sms_session_timeout_minutes)

    def _start_sms(self, phone: str, body: str, sid: str, now: datetime,
                   lead: tuple[str, ...] = (), session: Session | None = None) -> list[str]:
        session = session or self._open("sms", phone, now)
        self._record_in(session, body, sid, now)
        reply = engine.start(self.protocol, "sms", "" if keyword(body) else body)
        if lead and not reply.state.is_done:
            reply = Reply(reply.state, (*lead, *reply.said), reply.prompt, reply.question)
        return self._advance_sms(phone, session, reply, sid, now)

    def _advance_sms(self, phone: str, session: Session, reply: Reply, sid: str, now: datetime) -> list[str]:
        session.state, session.last_at = reply.state.to_dict(), now.isoformat()
        self._after_engine(session, reply, sid, now)
        self._save_sms(phone, session)
        return reply.messages

    def _help(self, phone: str, body: str, sid: str, session: Session | None, now: datetime) -> list[str]:
        help_text = self.protocol.text("help", "sms")
        if session is None or self._state(session).is_done:
            return self._start_sms(phone, body, sid, now, lead=(help_text,))
        state = self._state(session)
        messages = [help_text, self.protocol.question(state.current or "").sms]
        self._record_in(session, body, sid, now)
        self._record_out(session, messages, sid, now, question=state.current)
        session.last_at = now.isoformat()
        self._save_sms(phone, session)
        return messages

    def _after_end(self, body: str, sid: str, session: Session, now: datetime) -> list[str]:
        messages = [self.protocol.text("after_end", "sms")]
        self._record_in(session, body, sid, now)
        self._record_out(session, messages, sid, now)
        return messages

    def _opt_out(self, phone: str, body: str, sid: str, session: Session | None, now: datetime) -> list[str]:
        if session is None:
            session = self._open("sms", phone, now)
        self._record_in(session, body, sid, now)
        if session.state and not self._state(session).is_done:
            self._close(session, "opted_out", "patient texted an opt-out word")
        else:
            self.durable.update_conversation(session.conversation_id, status="opted_out",
                                             ended_at=now, end_reason="patient texted an opt-out word")
        session.state = {**session.state, "opted_out": True}
        self._save_sms(phone, session)
        return []  # Twilio sends its own opt-out confirmation

    def _opt_in(self, phone: str, body: str, sid: str, session: Session, now: datetime) -> list[str]:
        """START: carry on with an interrupted check, or begin a new one."""
        session.state = {k: v for k, v in session.state.items() if k != "opted_out"}
        if not session.state or self._state(session).is_done:
            self.s.sessions.drop_sms(phone)
            return self._start_sms(phone, body, sid, now)
        state = self._state(session)
        self._record_in(session, body, sid, now)
        self.durable.update_conversation(session.conversation_id, status="active", ended_at=None,
                                         end_reason=None, disposition=None)
        question = self.protocol.question(state.current or "")
        reply = Reply(state, (self.protocol.text("resumed", "sms"),), question.sms, question)
        return self._advance_sms(phone, session, reply, sid, now)

    def _volunteers_emergency(self, body: str) -> bool:
        probe = engine.start(self.protocol, "sms", body)
        return probe.state.disposition == Level.EMERGENCY.value

    def _is_stale(self, session: Session, now: datetime) -> bool:
        idle = now - datetime.fromisoformat(session.last_at)
        return idle > timedelta(minutes=self.s.settings.sms_session_timeout_minutes)

    # --- voice ---------------------------------------------------------------------------

    def call_started(self, call_sid: str, phone: str) -> Outgoing:
        self._caller = phone
        with self.s.sessions.lock(call_sid):
            session = self.s.sessions.load_call(call_sid)
            if session is not None and session.last_reply is not None:
                return Outgoing.from_dict(session.last_reply)  # a retried first request
            now = self.s.clock()
            session = self._open("voice", phone, now, call_sid)
            return self._advance_call(call_sid, session, engine.start(self.protocol, "voice"),
                                      f"{call_sid}:0", now)

    def call_answer(self, call_sid: str, phone: str, step: int, given: Input) -> Outgoing:
        self._caller = phone
        with self.s.sessions.lock(call_sid):
            session = self.s.sessions.load_call(call_sid)
            if session is None:
                return self._voice_without_session(call_sid, phone)
            if step <= session.step and session.last_reply is not None:
                return Outgoing.from_dict(session.last_reply)  # Twilio retried this step
            state = self._state(session)
            if state.is_done:
                return Outgoing((self.protocol.text("after_end", "voice"),), ended=True, step=session.step)
            now = self.s.clock()
            heard = given.digits or given.text or ("(silence)" if given.silent else "")
            self._record_in(session, heard, f"{call_sid}:{step}", now, question_id=state.current,
                            digits=given.digits or None, speech=given.text or None,
                            confidence=given.confidence)
            reply = engine.resume(self.protocol, state, given)
            return self._advance_call(call_sid, session, reply, f"{call_sid}:{step}", now)

    def call_ended(self, call_sid: str, phone: str = "") -> None:
        """Call status callback: a call that ends mid-triage is closed, and escalated if needed."""
        self._caller = phone
        with self.s.sessions.lock(call_sid):
            session = self.s.sessions.load_call(call_sid)
            if session is not None:
                self._close(session, "abandoned", "call ended mid-triage")
                self.s.sessions.drop_call(call_sid)
                return
            self.call_ended_durably(call_sid)

    def call_ended_durably(self, call_sid: str) -> None:
        """Close the call's conversation from the durable record alone (also when Redis is down)."""
        record = self.durable.read(self.s.records.conversation_by_call_sid, call_sid)
        if record is not None and record["status"] == "active":
            self._caller = self._caller or record["phone"]
            self._close_record(record, "abandoned", "call ended mid-triage")

    def _voice_without_session(self, call_sid: str, phone: str) -> Outgoing:
        record = self.durable.read(self.s.records.conversation_by_call_sid, call_sid)
        if record is not None and record["status"] != "active":
            return Outgoing((self.protocol.text("after_end", "voice"),), ended=True)
        # The live state is gone (expired or lost): start over rather than guess, and say so.
        now = self.s.clock()
        session = Session(record["id"], {}, now.isoformat()) if record else self._open("voice", phone, now, call_sid)
        return self._advance_call(call_sid, session, engine.start(self.protocol, "voice"),
                                  f"{call_sid}:restart", now)

    def _advance_call(self, call_sid: str, session: Session, reply: Reply, sid: str, now: datetime) -> Outgoing:
        session.state, session.last_at = reply.state.to_dict(), now.isoformat()
        session.step += 1
        out = Outgoing(
            reply.said, reply.prompt, reply.question.kind if reply.question else None,
            step=session.step, ended=reply.state.is_done,
            emergency=reply.state.disposition == Level.EMERGENCY.value,
        )
        session.last_reply = out.to_dict()
        self._after_engine(session, reply, sid, now)
        session.conversation_id = self.durable.real_id(session.conversation_id)
        self.s.sessions.save_call(call_sid, session)
        return out

    # --- shared --------------------------------------------------------------------------

    def _save_sms(self, phone: str, session: Session) -> None:
        # A conversation opened while the database was down moves to its database id once it has one.
        session.conversation_id = self.durable.real_id(session.conversation_id)
        self.s.sessions.save_sms(phone, session)

    def _open(self, channel: str, phone: str, now: datetime, call_sid: str | None = None) -> Session:
        conversation_id = self.durable.start_conversation(
            channel=channel, phone=phone, protocol_version=self.protocol.version, call_sid=call_sid, at=now)
        metrics.CONVERSATIONS_STARTED.labels(channel).inc()
        return Session(conversation_id, {}, now.isoformat())

    def _state(self, session: Session) -> State:
        data = {k: v for k, v in session.state.items() if k != "opted_out"}
        return State.from_dict(data)

    def _after_engine(self, session: Session, reply: Reply, sid: str, now: datetime) -> None:
        """Write the outbound turns and the conversation's new state; escalate a finished case."""
        self._record_out(session, reply.messages, sid, now, question=reply.state.current)
        state = reply.state
        fields: dict[str, Any] = {"facts": state.facts, "red_flags": engine.red_flags(state)}
        if state.is_done:
            fields.update(status="completed", disposition=state.disposition, rule=state.rule,
                          ended_at=now, end_reason="disposition")
        self._flush(session.conversation_id, fields)
        if state.is_done:
            metrics.CONVERSATIONS_ENDED.labels(state.channel, "completed", state.disposition).inc()
        if state.disposition == Level.EMERGENCY.value:
            metrics.EMERGENCY_INSTRUCTIONS.labels(state.channel).inc()
        if state.disposition in (Level.EMERGENCY.value, Level.URGENT.value):
            self.durable.open_escalation(session.conversation_id, level=state.disposition,
                                         reason="disposition", summary=engine.summary(self.protocol, state),
                                         at=now, caller=self._caller)
            log.info("triage finished", extra={"conversation_id": session.conversation_id,
                                               "disposition": state.disposition, "rule": state.rule})

    def _close(self, session: Session, status: str, why: str) -> None:
        if not session.state:
            return
        state = self._state(session)
        if state.is_done:
            return
        record = self.durable.conversation(session.conversation_id)
        if record is not None and record["status"] != "active":
            return  # closed already (by the sweep, or a retried webhook): keep when and why it ended
        self._close_state(session.conversation_id, state, status, why)

    def _close_record(self, record: dict[str, Any], status: str, why: str) -> None:
        state = State("sms", record["protocol_version"], facts=record.get("facts") or {})
        self._close_state(record["id"], state, status, why)

    def _close_state(self, conversation_id: int | str, state: State, status: str, why: str) -> None:
        """An unfinished conversation: never dropped if an urgent-level answer was given."""
        level = engine.provisional_level(self.protocol, state)
        escalate = level is not None and level.rank >= Level.URGENT.rank
        self._flush()
        now = self.s.clock()
        self.durable.update_conversation(
            conversation_id, status=status, ended_at=now, end_reason=why,
            disposition=level.value if escalate and level else None,
        )
        metrics.CONVERSATIONS_ENDED.labels(state.channel, status, level.value if escalate and level else "none").inc()
        if escalate and level is not None:
            self.durable.open_escalation(conversation_id, level=level.value, reason="abandoned",
                                         summary=engine.summary(self.protocol, state), at=now,
                                         caller=self._caller)

    def sweep_abandoned(self) -> int:
        """Close conversations nobody has answered for the session timeout; return how many."""
        idle_since = self.s.clock() - timedelta(minutes=self.s.settings.sms_session_timeout_minutes)
        stale = self.s.records.stale_active_conversations(idle_since=idle_since)
        for record in stale:
            self._close_record(record, "abandoned", "no reply for the session timeout")
        return len(stale)

    def _record_in(self, session: Session, text: str, sid: str, now: datetime, **extra: Any) -> None:
        logs.conversation_id.set(session.conversation_id)
        if sid and sid in self._inbound_sids:
            return  # one inbound turn per webhook, even when it closes one conversation and opens another
        if sid:
            self._inbound_sids.add(sid)
        self._pending.append((session.conversation_id, {"direction": "in", "text": text,
                                                        "twilio_sid": sid or None, "at": now, **extra}))

    def _record_out(self, session: Session, messages: list[str], sid: str, now: datetime,
                    question: str | None = None) -> None:
        for i, text in enumerate(messages):
            self._pending.append((session.conversation_id, {
                "direction": "out", "text": text, "in_reply_to": sid or None, "at": now,
                "question_id": question if i == len(messages) - 1 else None}))

    def _flush(self, conversation_id: int | str | None = None, changes: dict[str, Any] | None = None) -> None:
        """Write pending turns, one transaction per conversation; `changes` go with their conversation.

        A retried webhook whose inbound turn is already recorded writes nothing (the unique key).
        """
        grouped: dict[int | str, list[dict[str, Any]]] = {}
        for owner, turn in self._pending:
            grouped.setdefault(owner, []).append(turn)
        if conversation_id is not None:
            grouped.setdefault(conversation_id, [])
        self._pending.clear()
        for owner, turns in grouped.items():
            self.durable.record_exchange(owner, turns, changes if owner == conversation_id else None)
