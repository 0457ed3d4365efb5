"""The outbox: durable writes that could not reach the database, kept in Redis, in order, until they can.

While the records database is unreachable, a conversation goes on from its live state in Redis.
What it would have written (its turns and new state, a new conversation, an escalation, an
alert's delivery status) is appended to one Redis list instead, and written in the same order
when the database answers again: by the next webhook that needs the database (a few operations,
so it still answers quickly) and by every worker's sweep (all of them). While the outbox holds
anything, nothing is written around it, so no write can overtake an older one.

A conversation opened while the database is down has no database id yet. It gets a provisional
id ("p" and random hex) that its live session and its queued writes carry. When its opening is
written, the database's id is kept in Redis under the provisional one, and the conversation's
next turn moves its session over to the real id. A counter in a high id range would need no
mapping, but a Redis restarted without persistence would start the counter again and hand out
ids the database already holds, and a later turn would be written into another patient's
conversation; provisional ids cannot collide, and the mapping is only needed while a session or
a queued write still holds one (it expires with the sessions).

Writing an operation twice is harmless (a worker can die between writing one and removing it):
an inbound turn's sid is unique, a conversation has one escalation, statuses only move forward,
and an opening is looked up by its provisional id first. (One narrow window remains: a process
that dies between committing an opening and keeping its id in Redis makes the next drain open
the conversation a second time; its turns then all go to the second one.) An operation the
database refuses for another reason than being unreachable goes to a dead-letter list for an
operator; it is never dropped. The outbox lives in Redis: it survives a Redis restart only if
Redis persists (AOF).
"""
from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import redis
from redis.exceptions import LockError, RedisError

from telehealth.records import RecordsUnavailable
from telehealth.sessions import Keys, SessionUnavailable

if TYPE_CHECKING:
    from telehealth.services import Services

log = logging.getLogger(__name__)

# After a database failure, every process sends its writes straight to the outbox for this long
# instead of each webhook waiting for the database's timeouts again.
DOWN_SECONDS = 5
DRAIN_IN_REQUEST = 20  # a webhook writes at most this many queued operations before its own
DRAIN_LOCK_SECONDS = 60
WAITING_ALERT_JOB = "telehealth.escalation.waiting_alert"

EMPTY, BUSY, DOWN = "empty", "busy", "down"

T = TypeVar("T")


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$t": value.isoformat()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$t"}:
            return datetime.fromisoformat(value["$t"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def dumps(op: dict[str, Any]) -> str:
    return json.dumps(_encode(op), separators=(",", ":"))


def loads(raw: str | bytes) -> dict[str, Any]:
    return _decode(json.loads(raw))  # type: ignore[no-any-return]


def is_provisional(conversation_id: int | str) -> bool:
    return isinstance(conversation_id, str)


class Outbox:
    """The Redis side: the list of pending operations, the dead letters, the id mapping."""

    def __init__(self, client: redis.Redis, *, mapping_ttl_seconds: int) -> None:
        self.client, self.mapping_ttl = client, mapping_ttl_seconds

    def status(self) -> tuple[bool, int]:
        """(the database was seen down in the last few seconds, operations waiting)."""
        def read() -> tuple[bool, int]:
            pipe = self.client.pipeline(transaction=False)
            pipe.exists(Keys.database_down)
            pipe.llen(Keys.outbox)
            down, backlog = pipe.execute()
            return bool(down), int(backlog)

        return _redis(read)

    def backlog(self) -> int:
        return int(_redis(lambda: self.client.llen(Keys.outbox)))

    def dead_letters(self) -> list[dict[str, Any]]:
        return [loads(raw) for raw in _redis(lambda: self.client.lrange(Keys.outbox_failed, 0, -1))]

    def dead_letter_count(self) -> int:
        return int(_redis(lambda: self.client.llen(Keys.outbox_failed)))

    def mark_down(self) -> None:
        _redis(lambda: self.client.set(Keys.database_down, "1", ex=DOWN_SECONDS))

    def append(self, op: dict[str, Any]) -> None:
        # No TTL: a pending write must outlive any outage. The sweep empties the list.
        _redis(lambda: self.client.rpush(Keys.outbox, dumps(op)))

    @staticmethod
    def provisional_id() -> str:
        return "p" + secrets.token_hex(10)

    def resolve(self, provisional: str) -> int | None:
        found = _redis(lambda: self.client.hget(Keys.outbox_ids, provisional))
        return None if found is None else int(found)

    def remember(self, provisional: str, conversation_id: int) -> None:
        def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(Keys.outbox_ids, provisional, conversation_id)
            pipe.expire(Keys.outbox_ids, self.mapping_ttl)
            pipe.execute()

        _redis(write)

    def drain(self, services: "Services", limit: int | None = None) -> str:
        """Write waiting operations in order: EMPTY when none is left, DOWN if the database
        failed, BUSY when another process is draining (or `limit` operations were written)."""
        lock = self.client.lock(Keys.outbox_lock, timeout=DRAIN_LOCK_SECONDS, blocking=False)
        if not _redis(lambda: lock.acquire(blocking=False)):
            return BUSY
        written = 0
        try:
            while limit is None or written < limit:
                raw = _redis(lambda: self.client.lindex(Keys.outbox, 0))
                if raw is None:
                    if written:  # the database took them all: nobody need wait for it any more
                        _redis(lambda: self.client.delete(Keys.database_down))
                    return EMPTY
                op = loads(raw)
                try:
                    apply(services, self, op)
                except RecordsUnavailable:
                    self.mark_down()
                    return DOWN
                except SessionUnavailable:
                    raise  # Redis failed under us: the operation stays first in the list
                except Exception as exc:  # refused for good: keep it for an operator, go on
                    log.error("outbox operation refused; kept in the dead-letter list",
                              extra={"error": type(exc).__name__, "job": op.get("op")})
                    _redis(lambda: self.client.rpush(Keys.outbox_failed, raw))
                _redis(lambda: self.client.lpop(Keys.outbox))
                written += 1
                if written % 50 == 0:
                    _redis(lambda: lock.extend(DRAIN_LOCK_SECONDS, replace_ttl=True))
            return EMPTY if self.backlog() == 0 else BUSY
        finally:
            if written:
                log.info("outbox: %d queued operations written to the database", written)
            try:
                lock.release()
            except (LockError, RedisError):
                pass  # expired, or Redis went away: the lock's TTL frees it


def apply(services: "Services", outbox: Outbox, op: dict[str, Any]) -> None:
    """Write one queued operation to the database (the same calls a webhook makes)."""
    from telehealth import escalation

    kind, records = op["op"], services.records
    if kind == "start_conversation":
        if outbox.resolve(op["provisional"]) is not None:
            return  # written before, the worker died before removing it
        fields = {k: op[k] for k in ("channel", "phone", "protocol_version", "call_sid", "at")}
        outbox.remember(op["provisional"], records.start_conversation(**fields))
    elif kind == "record_exchange":
        records.record_exchange(_real(outbox, op["conversation_id"]), op["turns"], op["changes"])
    elif kind == "update_conversation":
        records.update_conversation(_real(outbox, op["conversation_id"]), **op["fields"])
    elif kind == "open_escalation":
        escalation.open_escalation(services, _real(outbox, op["conversation_id"]), level=op["level"],
                                   reason=op["reason"], summary=op["summary"], at=op["at"], late=True)
    elif kind == "delivery_status":
        escalation.delivery_status(services, op["alert_id"], op["status"], op["error_code"])
    else:
        raise ValueError(f"unknown outbox operation {kind!r}")


def _real(outbox: Outbox, conversation_id: int | str) -> int:
    if not is_provisional(conversation_id):
        return int(conversation_id)
    found = outbox.resolve(str(conversation_id))
    if found is None:
        raise LookupError("the conversation's opening was never written")
    return found


def _redis(call: Callable[[], T]) -> T:
    try:
        return call()
    except RedisError as exc:
        raise SessionUnavailable(type(exc).__name__) from exc


class Durable:
    """One webhook's way to the durable record: straight to SQL while the database answers, into
    the outbox while it does not (or while the outbox still holds older writes).

    Reads that fail while the database is down return their default, so the conversation goes on
    from Redis. `live=False` is the fail-safe's way, when Redis is what broke: straight to SQL,
    errors raised.
    """

    def __init__(self, services: "Services", *, live: bool = True) -> None:
        self.s, self.live = services, live
        self.outbox = Outbox(services.sessions.client, mapping_ttl_seconds=services.settings.session_ttl_seconds)
        self._checked = not live
        self._down = False  # no reads: the database is down
        self._queue = False  # writes go to the outbox (down, or older writes still waiting)
        self._resolved: dict[str, int] = {}
        self._seeded: tuple[bool, int] | None = None

    @property
    def degraded(self) -> bool:
        return self._queue

    def seed(self, down: bool, backlog: int) -> None:
        """The outbox's state, already read with the webhook's first Redis round trip."""
        if self.live and not self._checked:
            self._seeded = (down, backlog)

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        down, backlog = self._seeded or self.outbox.status()
        if down:
            self._down = self._queue = True
        elif backlog:
            result = self.outbox.drain(self.s, limit=DRAIN_IN_REQUEST)
            self._queue = result != EMPTY
            self._down = result == DOWN

    def _went_down(self) -> None:
        self._down = self._queue = True
        self.outbox.mark_down()
        log.warning("records database unavailable: writes go to the outbox")

    # --- reads ----------------------------------------------------------------------------

    def read(self, fn: Callable[..., T], *args: Any, default: T | None = None, **kwargs: Any) -> T | None:
        if not self.live:
            return fn(*args, **kwargs)
        self._check()
        if self._down:
            return default
        try:
            return fn(*args, **kwargs)
        except RecordsUnavailable:
            self._went_down()
            return default

    def conversation(self, conversation_id: int | str) -> dict[str, Any] | None:
        real = self.real_id(conversation_id)
        return None if is_provisional(real) else self.read(self.s.records.get_conversation, real)

    def real_id(self, conversation_id: int | str) -> int | str:
        """The database's id for a conversation, or its provisional id while it has none yet."""
        if not is_provisional(conversation_id):
            return conversation_id
        key = str(conversation_id)
        if key not in self._resolved:
            found = self.outbox.resolve(key)
            if found is None:
                return conversation_id
            self._resolved[key] = found
        return self._resolved[key]

    # --- writes ---------------------------------------------------------------------------

    def _direct(self) -> bool:
        if not self.live:
            return True
        self._check()
        return not self._queue

    def start_conversation(self, *, channel: str, phone: str, protocol_version: str,
                           call_sid: str | None, at: datetime) -> int | str:
        fields = {"channel": channel, "phone": phone, "protocol_version": protocol_version,
                  "call_sid": call_sid, "at": at}
        if self._direct():
            try:
                return self.s.records.start_conversation(**fields)
            except RecordsUnavailable:
                if not self.live:
                    raise
                self._went_down()
        provisional = self.outbox.provisional_id()
        self.outbox.append({"op": "start_conversation", "provisional": provisional, **fields})
        return provisional

    def record_exchange(self, conversation_id: int | str, turns: list[dict[str, Any]],
                        changes: dict[str, Any] | None) -> None:
        real = self.real_id(conversation_id)
        self._write(real, lambda: self.s.records.record_exchange(int(real), turns, changes),
                    {"op": "record_exchange", "conversation_id": real, "turns": turns, "changes": changes})

    def update_conversation(self, conversation_id: int | str, **fields: Any) -> None:
        real = self.real_id(conversation_id)
        self._write(real, lambda: self.s.records.update_conversation(int(real), **fields),
                    {"op": "update_conversation", "conversation_id": real, "fields": fields})

    def open_escalation(self, conversation_id: int | str, *, level: str, reason: str, summary: str,
                        at: datetime, caller: str) -> None:
        from telehealth import escalation

        real = self.real_id(conversation_id)
        queued = self._write(real, lambda: escalation.open_escalation(
            self.s, int(real), level=level, reason=reason, summary=summary, at=at),
            {"op": "open_escalation", "conversation_id": real, "level": level, "reason": reason,
             "summary": summary, "at": at})
        if queued and self._down:
            # The chain needs the roster, which is in the database: it starts when the database
            # is back. Meanwhile the supervisor hears that a case is waiting, with its number.
            try:
                self.s.jobs.enqueue(WAITING_ALERT_JOB, level, caller)
            except Exception as exc:
                log.error("could not queue the waiting-case alert", extra={"error": type(exc).__name__})

    def _write(self, real: int | str, direct: Callable[[], Any], op: dict[str, Any]) -> bool:
        """Write now, or queue `op`; True when it was queued."""
        direct_ok = self._direct()  # (also learns whether the database is down)
        if not is_provisional(real) and direct_ok:
            try:
                direct()
                return False
            except RecordsUnavailable:
                if not self.live:
                    raise
                self._went_down()
        if not self.live:
            raise LookupError("a provisional conversation needs the outbox")
        self.outbox.append(op)
        return True


def drain_quietly(services: "Services") -> str:
    """The sweep's part: write everything waiting. Never raises."""
    try:
        outbox = Outbox(services.sessions.client, mapping_ttl_seconds=services.settings.session_ttl_seconds)
        return outbox.drain(services)
    except Exception as exc:
        log.warning("outbox drain failed", extra={"error": type(exc).__name__})
        return DOWN
