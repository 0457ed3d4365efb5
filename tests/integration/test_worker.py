"""Escalations through a real `rq worker` process, real Redis and a fresh PostgreSQL database.

The web side runs in this process (the Flask test client, signed webhooks, real RQ queue); the
job runs in the Procfile's `worker:` process, which builds its own services from the environment.
"""
from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from sqlalchemy import text

from telehealth import services as services_module
from telehealth.app import create_app
from telehealth.jobs import QUEUE_NAME, RQJobs
from telehealth.records import migrate
from telehealth.sessions import Keys
from telehealth.settings import Settings
from tests.conftest import API_TOKEN, AUTH_TOKEN, PATIENT, Twilio
from tests.integration.conftest import (
    process_env, procfile, start_process, stop_process_group, wait_for,
)

pytestmark = pytest.mark.integration

ALERT_LINE = "[ALERT"  # what the console pager prints


@dataclass
class RunningWorker:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alerts(self) -> list[str]:
        return [line for line in self.output().splitlines() if line.startswith(ALERT_LINE)]


@pytest.fixture
def database_url(empty_postgres_database: str) -> str:
    migrate(empty_postgres_database)
    return empty_postgres_database


@pytest.fixture
def worker(clean_redis: str, database_url: str, tmp_path: Path) -> Iterator[RunningWorker]:
    command = procfile()["worker"]
    assert "rq worker" in command and "escalations" in command
    env = process_env(REDIS_URL=clean_redis, DATABASE_URL=database_url)
    running = RunningWorker(start_process(command, env, tmp_path / "worker.log"), tmp_path / "worker.log")
    try:
        yield running
    finally:
        stop_process_group(running.process)
        print(running.output())  # shown by pytest when the test fails


@pytest.fixture
def services(clean_redis: str, database_url: str) -> Iterator[Any]:
    settings = Settings(
        twilio_auth_token=AUTH_TOKEN, redis_url=clean_redis, database_url=database_url,
        api_token=API_TOKEN, secret_key="test-secret", run_jobs_inline=False,
    )
    built = services_module.build(settings)
    assert isinstance(built.jobs, RQJobs)
    yield built
    built.sessions.client.close()
    built.records.dispose()


def escalation_events(services: Any, escalation_id: int, kind: str | None = None) -> list[dict[str, Any]]:
    events = services.records.get_escalation(escalation_id)["events"]
    return [e for e in events if kind is None or e["kind"] == kind]


def is_idle(queue: Queue) -> bool:
    """Nothing waiting and nothing running (jobs scheduled for later do not count)."""
    return queue.count == 0 and StartedJobRegistry(queue=queue).count == 0


def test_emergency_sms_is_alerted_by_the_worker_and_retries_change_nothing(
        worker: RunningWorker, services: Any, capfd: pytest.CaptureFixture[str]) -> None:
    twilio = Twilio(create_app(services=services).test_client())
    twilio.sms("my back hurts")
    twilio.sms("45")
    emergency = twilio.sms("yes", sid="SM" + "e" * 32)  # chest pain: an emergency rule completes

    assert "Call 911 now" in emergency[0]
    conversation = services.records.latest_conversation(PATIENT, channel="sms")
    assert (conversation["status"], conversation["disposition"]) == ("completed", "emergency")
    escalation_id = conversation["escalation"]["id"]

    wait_for(lambda: escalation_events(services, escalation_id, "alert_sent"), timeout=30,
             what="the worker to send the alert")
    queue = Queue(QUEUE_NAME, connection=services.sessions.client)
    wait_for(lambda: is_idle(queue), timeout=30, what="the worker to finish its jobs")
    alerts = wait_for(worker.alerts, timeout=5, what="the alert on the worker's output")
    assert "EMERGENCY" in alerts[0]
    assert PATIENT.lstrip("+") in re.sub(r"\D", "", alerts[0])  # the number to call back
    assert ALERT_LINE not in capfd.readouterr().out  # the web side only queued it
    events = escalation_events(services, escalation_id)

    # Twilio retries the webhook, first with the reply cache in Redis, then without it.
    assert twilio.sms("yes", sid="SM" + "e" * 32) == emergency
    services.sessions.client.delete(Keys.reply.format(sid="SM" + "e" * 32))
    assert twilio.sms("yes", sid="SM" + "e" * 32) == emergency

    # Every job the worker ran runs again, as RQ does after a worker crash.
    connection = services.sessions.client
    done = [Job.fetch(job_id, connection=connection)
            for job_id in FinishedJobRegistry(queue=queue).get_job_ids()]
    assert done, "the worker finished no job"
    again = [queue.enqueue_call(job.func_name, args=job.args, kwargs=job.kwargs) for job in done]
    wait_for(lambda: all(job.get_status(refresh=True) == JobStatus.FINISHED for job in again),
             timeout=30, what="the repeated jobs to finish")
    wait_for(lambda: is_idle(queue), timeout=30, what="the worker to finish its jobs")

    with services.records.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM escalations")).scalar() == 1
    assert escalation_events(services, escalation_id) == events  # no second alert, nothing new
    assert worker.alerts() == alerts
    assert worker.process.poll() is None, "the worker died"


def test_worker_listens_on_the_queue_the_app_enqueues_to(worker: RunningWorker, clean_redis: str) -> None:
    client = redis.Redis.from_url(clean_redis)
    try:
        workers = wait_for(lambda: Worker.all(connection=client), timeout=30, what="the worker to register")
        assert [q.name for q in workers[0].queues] == [QUEUE_NAME]
    finally:
        client.close()
