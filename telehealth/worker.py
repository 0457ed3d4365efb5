"""The RQ worker class for `rq worker -w telehealth.worker.SweepingWorker`.

Each worker also runs the sweep on a thread, so due escalation steps fire from the database's
timetable even when the worker holding RQ's scheduler lock has been killed. Jobs run in the
worker process itself (RQ's SimpleWorker): forking a work horse while the sweeper thread holds a
lock (a connection pool's, say) can leave the horse waiting on it forever, and a page stalled.
The claims in the database, not process isolation, keep a job that dies half-way from paging twice.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from rq import SimpleWorker

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


class SweepingWorker(SimpleWorker):
    def work(self, *args: Any, **kwargs: Any) -> bool:
        from telehealth import services

        stop = threading.Event()
        every = services.for_worker().settings.sweep_seconds
        threading.Thread(target=run_sweeps, args=(every, stop), name="sweeper", daemon=True).start()
        try:
            return super().work(*args, **kwargs)
        finally:
            stop.set()
