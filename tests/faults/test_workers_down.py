"""Every worker is killed (SIGKILL, the machine gone) for a while, then workers come back.

(A worker killed in the middle of a page, and the worker holding RQ's scheduler lock being
killed, are tests/integration/test_escalation_chain.py; this is the whole worker tier down.)

The chain is shortened to steps 8 s apart and the outage to about 20 s instead of the issue's
minute: what matters is that two later steps of one case, and every step of a case flagged
during the outage, fall due while no worker runs. What a clinician notices: nothing is paged
while no worker runs; when two workers start, every step that fell due is paged at once (within
seconds, not at its next scheduled time), and each page exactly once although both workers race
for them and RQ's scheduler lock still belongs to a dead worker.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.faults.conftest import BACKUP, PRIMARY, SUPERVISOR, chain, flows_with, wait_for
from tests.integration.test_escalation_chain import assert_exactly_once

pytestmark = pytest.mark.integration

STEP_SECONDS = 8
FIRST, SECOND = "+16175550241", "+16175550242"


def emergency(web: Any, line: Any, phone: str) -> int:
    web.hooks.sms(phone, "my back hurts")
    web.hooks.sms(phone, "58")
    assert web.hooks.sms(phone, "yes")[0].startswith("Call 911 now")
    return int(line.latest(phone, "sms")["escalation"]["id"])


def test_with_every_worker_down_due_steps_wait_and_run_at_once_exactly_once_when_workers_return(
        shared_redis: str, database_url: str, fake: Any, make_line: Any, tmp_path: Any) -> None:
    flows = flows_with(tmp_path, chain((0, "primary", ["sms"]), (STEP_SECONDS, "backup", ["sms"]),
                                       (2 * STEP_SECONDS, "supervisor", ["sms"]), round_seconds=300))
    line = make_line(shared_redis, database_url, fake, flows=flows)
    line.put_on_call()
    web = line.start_web()
    line.start_worker()
    line.start_worker()

    first = emergency(web, line, FIRST)
    wait_for(lambda: fake.to(PRIMARY, "sms"), timeout=15, what="the first case's primary page")
    # The whole tier goes down between pages (a worker killed mid-page is test_escalation_chain's).
    wait_for(lambda: all(a["twilio_sid"] for a in line.alerts(first)), timeout=15,
             what="the first page recorded as sent")
    line.kill_workers()
    down_at = datetime.now(timezone.utc)

    second = emergency(web, line, SECOND)  # flagged with no worker running
    last_due = datetime.fromisoformat(line.escalation(second)["created_at"]) + timedelta(seconds=2 * STEP_SECONDS)
    time.sleep(max(0.0, (last_due - datetime.now(timezone.utc)).total_seconds()) + 2)
    assert len(fake.all()) == 1, "something was paged while no worker ran"
    assert line.escalation(first)["next_step"] == 1 and line.escalation(second)["next_step"] == 0

    back_at = datetime.now(timezone.utc)
    line.start_worker()
    line.start_worker()
    wait_for(lambda: len(fake.all()) == 6, timeout=20, what="every step that fell due to be paged")
    outage = (back_at - down_at).total_seconds()
    assert outage >= 2 * STEP_SECONDS

    for case in (first, second):
        assert [e["detail"]["to"] for e in line.events(case, "step")] == ["primary", "backup", "supervisor"]
    late = [p for p in fake.all()[1:]]
    assert all(p.at >= back_at for p in late)
    assert max(p.at for p in late) - back_at < timedelta(seconds=10), "the due steps did not run at once"
    assert sorted(p.to for p in late) == sorted([BACKUP, SUPERVISOR, PRIMARY, BACKUP, SUPERVISOR])
    time.sleep(3)  # both workers' sweeps and any retried jobs had their chance to page twice
    assert len(fake.all()) == 6
    assert_exactly_once(line, [first, second])
