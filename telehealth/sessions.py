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


class SessionUnavailable(Exception):
    """Redis could not be reached or answered in time."""


@dataclass
class Session:
    conversation_id: int
    state: dict[str, Any]
    last_at: str  # ISO-8601 UTC of the last inbound turn
    step: int = 0  # voice: the last call step processed
    last_reply: dict[str, Any] | None = None  # voice: that step's reply, replayed on a retry

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> "Session":
        return cls(**json.loads(raw))


class Sessions:
    def __init__(self, client: redis.Redis, ttl_seconds: int, lock_seconds: float = 10.0) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.client, self.ttl, self.lock_seconds = client, ttl_seconds, lock_seconds

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
        self._run(self.client.set, Keys.reply.format(sid=sid), json.dumps(messages), ex=self.ttl)

    def reply_for(self, sid: str) -> list[str] | None:
        raw = self._run(self.client.get, Keys.reply.format(sid=sid))
        return None if raw is None else json.loads(raw)

    @contextmanager
    def lock(self, who: str) -> Iterator[None]:
        """Serialise turns from one number or call, so two texts at once are never interleaved."""
        lock = self.client.lock(
            Keys.lock.format(who=who), timeout=self.lock_seconds, blocking_timeout=self.lock_seconds
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
