"""Background jobs behind one small interface: RQ in production, in-process in embedded mode.

Jobs are named by dotted path, so the web process never imports worker code to enqueue them.
"""
from __future__ import annotations

import importlib
import logging
import threading
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol

import redis
from redis.exceptions import RedisError
from rq import Queue, Retry

log = logging.getLogger(__name__)

QUEUE_NAME = "escalations"


class JobsUnavailable(Exception):
    """The queue could not take the job."""


class Jobs(Protocol):
    def enqueue(self, func_path: str, *args: Any, job_id: str | None = None) -> None: ...

    def enqueue_at(self, when: datetime, func_path: str, *args: Any) -> None:
        """Run later. Only a fast path: the sweep runs anything due even if this is lost."""
        ...

    def ping(self) -> bool: ...


def resolve(func_path: str) -> Callable[..., Any]:
    module, _, name = func_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class RQJobs:
    """Jobs for `rq worker` processes sharing the app's Redis."""

    def __init__(self, client: redis.Redis, retry: Retry | None = None) -> None:
        self.queue = Queue(QUEUE_NAME, connection=client)
        self.retry = retry or Retry(max=3, interval=[2, 10, 30])

    def enqueue(self, func_path: str, *args: Any, job_id: str | None = None) -> None:
        try:
            self.queue.enqueue_call(func_path, args=args, job_id=job_id, retry=self.retry)
        except RedisError as exc:
            raise JobsUnavailable(type(exc).__name__) from exc

    def enqueue_at(self, when: datetime, func_path: str, *args: Any) -> None:
        try:
            self.queue.enqueue_at(when, func_path, *args, retry=self.retry)
        except RedisError as exc:
            raise JobsUnavailable(type(exc).__name__) from exc

    def ping(self) -> bool:
        try:
            return bool(self.queue.connection.ping())
        except RedisError:
            return False


class InlineJobs:
    """Embedded mode and unit tests: run the job in this process, with this process's services.

    `synchronous=False` runs it on a background thread so a webhook reply never waits for it.
    """

    def __init__(self, services: Any = None, synchronous: bool = False) -> None:
        self.services = services
        self.synchronous = synchronous
        self._pool = None if synchronous else ThreadPoolExecutor(max_workers=2, thread_name_prefix="job")

    def enqueue(self, func_path: str, *args: Any, job_id: str | None = None) -> None:
        func = resolve(func_path)
        if self._pool is None:
            func(*args, services=self.services)
        else:
            self._pool.submit(self._run, func, func_path, args)

    def enqueue_at(self, when: datetime, func_path: str, *args: Any) -> None:
        if self._pool is None:
            return  # synchronous tests move the clock and call the sweep themselves
        delay = max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
        timer = threading.Timer(delay, self.enqueue, args=(func_path, *args))
        timer.daemon = True
        timer.start()

    def _run(self, func: Callable[..., Any], func_path: str, args: tuple[Any, ...]) -> None:
        try:
            func(*args, services=self.services)
        except Exception:  # a background thread has no caller to raise to
            log.exception("job failed", extra={"job": func_path})

    def ping(self) -> bool:
        return True
