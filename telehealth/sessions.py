"""Live conversation state in Redis: one session per SMS number and per voice call, with a TTL.

Every key the app writes is named here and nowhere else.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import redis
from redis.exceptions import LockError, RedisError

KEY_PREFIX = "th"


class Keys:
    """The Redis key names, built in one place."""

    sms = f"{KEY_PREFIX}:sms:{{phone}}"
    call = f"{KEY_PREFIX}:call:{{call_sid}}"
    lock = f"{KEY_PREFIX}:lock:{{who}}"
    reply = f"{KEY_PREFIX}:reply:{{sid}}"
    # Texts from one number in the current minute (the flood limit).
    rate = f"{KEY_PREFIX}:rate:{{phone}}:{{minute}}"
    # The outbox (telehealth/outbox.py): durable writes waiting for the database, in order.
    outbox = f"{KEY_PREFIX}:outbox"
    outbox_failed = f"{KEY_PREFIX}:outbox:failed"
    outbox_lock = f"{KEY_PREFIX}:outbox:lock"
    outbox_ids = f"{KEY_PREFIX}:outbox:ids"  # provisional conversation id -> the database's id
    database_down = f"{KEY_PREFIX}:database-down"


REPLY_TTL_SECONDS = 600


class SessionUnavailable(Exception):
    """Redis could not be reached or answered in time."""


@dataclass(frozen=True)
class Arrival:
    cached_reply: list[str] | None
    texts_this_minute: int
    database_down: bool
    outbox_backlog: int


@dataclass
class Session:
    # The database's id; a provisional "p..." id while the database is down (telehealth/outbox.py).
    conversation_id: int | str
    state: dict[str, Any]
    last_at: str  # ISO-8601 UTC of the last inbound turn
    step: int = 0  # voice: the last call step processed
    last_reply: dict[str, Any] | None = None  # voice: that step's reply, replayed on a retry

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> "Session":
        return cls(**json.loads(raw))


# How long a webhook waits for another turn of the same number or call to finish. A turn takes
# milliseconds; a holder that died leaves the lock to expire (lock_seconds), and the webhook
# answers with the fail-safe meanwhile instead of keeping the caller in dead air.
LOCK_WAIT_SECONDS = 2.0
FLOOD_WINDOW_SECONDS = 60


class Sessions:
    def __init__(self, client: redis.Redis, ttl_seconds: int, lock_seconds: float = 10.0,
                 lock_wait_seconds: float = LOCK_WAIT_SECONDS) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.client, self.ttl, self.lock_seconds = client, ttl_seconds, lock_seconds
        self.lock_wait_seconds = min(lock_seconds, lock_wait_seconds)

    def load_sms(self, phone: str) -> Session | None:
        return self._load(Keys.sms.format(phone=phone))

    def save_sms(self, phone: str, session: Session) -> None:
        self._save(Keys.sms.format(phone=phone), session)

    def drop_sms(self, phone: str) -> None:
        self._run(self.client.delete, Keys.sms.format(phone=phone))

    def load_call(self, call_sid: str) -> Session | None:
        return self._load(Keys.call.format(call_sid=call_sid))

    def save_call(self, call_sid: str, session: Session) -> None:
        self._save(Keys.call.format(call_sid=call_sid), session)

    def drop_call(self, call_sid: str) -> None:
        self._run(self.client.delete, Keys.call.format(call_sid=call_sid))

    def remember_reply(self, sid: str, messages: list[str]) -> None:
        """Keep the reply to an inbound message so a retried webhook gets the same answer."""
        # Twilio retries within minutes; an older retry is answered from SQL. A short TTL keeps
        # Redis near one session's size per active conversation.
        self._run(self.client.set, Keys.reply.format(sid=sid), json.dumps(messages), ex=REPLY_TTL_SECONDS)

    def reply_for(self, sid: str) -> list[str] | None:
        raw = self._run(self.client.get, Keys.reply.format(sid=sid))
        return None if raw is None else json.loads(raw)

    def arrival(self, phone: str, sid: str, now: float) -> Arrival:
        """What an inbound text needs from Redis first, in one round trip: the reply already sent
        to this MessageSid, the count of texts from `phone` this minute (this one included), and
        the outbox's state (telehealth/outbox.py)."""
        rate = Keys.rate.format(phone=phone, minute=int(now // FLOOD_WINDOW_SECONDS))

        def read() -> Arrival:
            pipe = self.client.pipeline(transaction=False)
            if sid:
                pipe.get(Keys.reply.format(sid=sid))
            else:
                pipe.echo("")  # keeps the answers' positions
            pipe.incr(rate)
            pipe.expire(rate, FLOOD_WINDOW_SECONDS * 2)
            pipe.exists(Keys.database_down)
            pipe.llen(Keys.outbox)
            reply, texts, _, down, backlog = pipe.execute()
            return Arrival(json.loads(reply) if sid and reply is not None else None, int(texts),
                           bool(down), int(backlog))

        return self._run(read)  # type: ignore[no-any-return]

    @contextmanager
    def lock(self, who: str) -> Iterator[None]:
        """Serialise turns from one number or call, so two texts at once are never interleaved."""
        lock = self.client.lock(
            Keys.lock.format(who=who), timeout=self.lock_seconds, blocking_timeout=self.lock_wait_seconds
        )
        try:
            acquired = lock.acquire()
        except RedisError as exc:
            raise SessionUnavailable(type(exc).__name__) from exc
        if not acquired:
            raise SessionUnavailable("timed out waiting for the conversation lock")
        try:
            yield
        finally:
            try:
                lock.release()
            except (LockError, RedisError):
                pass  # expired or Redis gone: the TTL frees it

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except RedisError:
            return False

    def _load(self, key: str) -> Session | None:
        raw = self._run(self.client.get, key)
        return None if raw is None else Session.from_json(raw)

    def _save(self, key: str, session: Session) -> None:
        self._run(self.client.set, key, session.to_json(), ex=self.ttl)

    @staticmethod
    def _run(call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except RedisError as exc:
            raise SessionUnavailable(type(exc).__name__) from exc
