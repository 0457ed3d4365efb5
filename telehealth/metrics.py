"""Prometheus metrics: request and conversation counters kept in-process (multiprocess mode under
gunicorn), and escalation, alert and queue figures read from the database and RQ at scrape time
(they change in worker processes too)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterator

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import func, select

if TYPE_CHECKING:
    from telehealth.services import Services

WEBHOOK_LATENCY = Histogram(
    "telehealth_webhook_latency_seconds", "Time to answer a request, by endpoint", ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
)
CONVERSATIONS_STARTED = Counter("telehealth_conversations_started_total", "Conversations opened", ["channel"])
CONVERSATIONS_ENDED = Counter("telehealth_conversations_ended_total", "Conversations ended",
                              ["channel", "status", "disposition"])
EMERGENCY_INSTRUCTIONS = Counter("telehealth_emergency_instructions_total",
                                 "Emergency instructions sent to patients", ["channel"])
ACK_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200)

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape() -> Response:
    services = current_app.config["SERVICES"]
    live: CollectorRegistry = REGISTRY
    if services.settings.metrics_dir:  # gunicorn: every worker process writes its own files
        live = CollectorRegistry()
        multiprocess.MultiProcessCollector(live, path=services.settings.metrics_dir)
    state = CollectorRegistry()
    state.register(_StateCollector(services))
    return Response(generate_latest(live) + generate_latest(state), mimetype=CONTENT_TYPE_LATEST)


class _StateCollector:
    """Figures that live in the database and the queue, read when Prometheus scrapes."""

    def __init__(self, services: "Services") -> None:
        self.services = services

    def collect(self) -> Iterator[Any]:
        from telehealth.alerts import Alert
        from telehealth.records import Escalation

        with self.services.records.transaction() as session:
            escalations = session.execute(select(Escalation.status, func.count()).group_by(Escalation.status)).all()
            deliveries = session.execute(
                select(Alert.channel, Alert.status, func.count()).group_by(Alert.channel, Alert.status)).all()
            acked = session.execute(select(Escalation.created_at, Escalation.acknowledged_at)
                                    .where(Escalation.acknowledged_at.is_not(None))).all()
        gauge = GaugeMetricFamily("telehealth_escalations", "Escalations by state", labels=["state"])
        for state, count in escalations:
            gauge.add_metric([state], count)
        yield gauge
        gauge = GaugeMetricFamily("telehealth_alert_deliveries", "Alerts by channel and delivery status",
                                  labels=["channel", "status"])
        for channel, status, count in deliveries:
            gauge.add_metric([channel, status], count)
        yield gauge
        yield _ack_histogram([(ack - created).total_seconds() for created, ack in acked])
        depth = GaugeMetricFamily("telehealth_queue_depth", "Jobs waiting in the queue", labels=["queue"])
        failed = GaugeMetricFamily("telehealth_failed_jobs", "Jobs in the failed registry", labels=["queue"])
        queue = getattr(self.services.jobs, "queue", None)
        if queue is not None:
            try:
                depth.add_metric([queue.name], queue.count)
                failed.add_metric([queue.name], queue.failed_job_registry.count)
            except Exception:  # Redis down: the queue figures are simply absent from this scrape
                pass
        yield depth
        yield failed


def _ack_histogram(seconds: list[float]) -> HistogramMetricFamily:
    buckets = [(str(b), sum(1 for s in seconds if s <= b)) for b in ACK_BUCKETS]
    buckets.append(("+Inf", len(seconds)))
    return HistogramMetricFamily("telehealth_flag_to_ack_seconds",
                                 "Time from the flag (escalation start) to a clinician taking the case",
                                 buckets=buckets, sum_value=sum(seconds))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        if request.endpoint and request.endpoint != "metrics.scrape" and "started" in g:
            WEBHOOK_LATENCY.labels(request.endpoint).observe(time.perf_counter() - g.started)
        return response
