"""The RQ worker class for `rq worker -w telehealth.worker.SweepingWorker`.

Each worker also runs the sweep on a thread, so due escalation steps fire from the database's
timetable even when the worker holding RQ's scheduler lock has been killed.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any

from rq import Worker

log = logging.getLogger(__name__)


def sweep_once(built: Any) -> None:
    from telehealth import escalation, outbox
    from telehealth.conversations import TriageLine

    # First the writes kept while the database was down: escalations flagged meanwhile are then
    # run below, and no conversation whose newer turns are still waiting is closed as abandoned.
    drained = outbox.drain_quietly(built)
    escalation.sweep(built)
    if drained == outbox.EMPTY:
        TriageLine(built).sweep_abandoned()


def run_sweeps(every_seconds: float, stop: threading.Event, built: Any = None) -> None:
    from telehealth import services

    while not stop.wait(every_seconds):
        try:
            sweep_once(built or services.for_worker())
        except Exception as exc:  # a failed round is retried on the next tick
            log.warning("sweep failed", extra={"error": type(exc).__name__})


def forget_inherited_connections() -> None:
    """In a freshly forked work horse: build services of its own instead of the parent's.

    The worker builds its services before it forks a horse per job, and its sweeper thread keeps
    using them. A horse that reused the inherited database pool or Twilio HTTP session would talk
    over the parent's sockets at the same time as the parent (SQLAlchemy: "using connection pools
    with multiprocessing"), and could inherit a pool lock the sweeper held at the fork. Building
    afresh costs a few tens of milliseconds per job; psycopg never closes a connection it did not
    open in this process, so dropping the inherited ones is safe.
    """
    from telehealth import services

    services.for_worker.cache_clear()


_fork_hook_registered = False


class SweepingWorker(Worker):
    def work(self, *args: Any, **kwargs: Any) -> bool:
        from telehealth import services

        global _fork_hook_registered
        if not _fork_hook_registered:
            os.register_at_fork(after_in_child=forget_inherited_connections)
            _fork_hook_registered = True
        stop = threading.Event()
        every = services.for_worker().settings.sweep_seconds
        threading.Thread(target=run_sweeps, args=(every, stop), name="sweeper", daemon=True).start()
        try:
            return super().work(*args, **kwargs)
        finally:
            stop.set()
