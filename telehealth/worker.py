"""The RQ worker class for `rq worker -w telehealth.worker.SweepingWorker`.

Each worker also runs the sweep on a thread, so due escalation steps fire from the database's
timetable even when the worker holding RQ's scheduler lock has been killed.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from rq import Worker

log = logging.getLogger(__name__)


def sweep_once(built: Any) -> None:
    from telehealth import escalation
    from telehealth.conversations import TriageLine

    escalation.sweep(built)
    TriageLine(built).sweep_abandoned()


def run_sweeps(every_seconds: float, stop: threading.Event, built: Any = None) -> None:
    from telehealth import services

    while not stop.wait(every_seconds):
        try:
            sweep_once(built or services.for_worker())
        except Exception as exc:  # a failed round is retried on the next tick
            log.warning("sweep failed", extra={"error": type(exc).__name__})


class SweepingWorker(Worker):
    def work(self, *args: Any, **kwargs: Any) -> bool:
        from telehealth import services

        stop = threading.Event()
        every = services.for_worker().settings.sweep_seconds
        threading.Thread(target=run_sweeps, args=(every, stop), name="sweeper", daemon=True).start()
        try:
            return super().work(*args, **kwargs)
        finally:
            stop.set()
