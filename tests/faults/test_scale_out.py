"""Scale-out (issue 6): two web processes (two gunicorns from the Procfile, on two ports) and two
workers, on one Redis and one PostgreSQL, with consecutive turns of each conversation sent to
alternate processes, as a load balancer without sticky sessions would.

What a patient notices: exactly what they would with one process. The same conversations are
played through a single in-process line (embedded Redis, SQLite) and every reply, every turn in
the record and every outcome must be identical; an emergency is paged once although two workers
race for it. This holds because nothing is kept in a process's memory between requests.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable
from xml.etree import ElementTree

import pytest
from twilio.request_validator import RequestValidator

from tests.faults.conftest import AUTH_TOKEN, PRIMARY, HttpCall, Hooks, chain, flows_with, wait_for

pytestmark = pytest.mark.integration

ROUTINE_SMS = ["My lower back hurts since I moved house", "40", *["no"] * 13]
EMERGENCY_SMS = ["back pain", "58", "yes"]
URGENT_SMS = ["back pain", "33", *["no"] * 9, "yes", "no", "no", "no"]  # fever alone
URGENT_CALL = ["15", *["2"] * 14]  # under 18: a clinician calls back
SCRIPTS = {"+16175550261": ("sms", ROUTINE_SMS), "+16175550262": ("sms", EMERGENCY_SMS),
           "+16175550263": ("sms", URGENT_SMS), "+16175550264": ("voice", URGENT_CALL)}


class InProcessHooks(Hooks):
    """The same signed webhooks, to a Flask test client (the single-process reference)."""

    def __init__(self, client: Any) -> None:
        self.client, self.validator = client, RequestValidator(AUTH_TOKEN)

    def post(self, path: str, params: dict[str, str], **_: Any) -> Any:
        signature = self.validator.compute_signature(f"http://localhost{path}", params)
        response = self.client.post(path, data=params, headers={"X-Twilio-Signature": signature})
        response.headers = {"Content-Type": response.headers["Content-Type"]}
        response.content = response.data
        response.text = response.get_data(as_text=True)
        return response


def play(pick: Callable[[], Hooks], phone: str, channel: str, inputs: list[str]) -> list[str]:
    """Every reply the patient got, in order."""
    heard: list[str] = []
    if channel == "sms":
        for index, body in enumerate(inputs):
            heard += pick().sms(phone, body, sid=f"SM{phone[-4:]}{index:028d}")
        return heard
    call = HttpCall(pick, phone, sid=f"CA{phone[-4:]}{0:028d}")
    root = call.start()
    for digits in inputs:
        heard.append(ElementTree.tostring(root).decode())
        if call.hung_up:
            break
        root = call.press(digits)
    heard.append(ElementTree.tostring(root).decode())
    call.status("completed")
    return heard


def reference(tmp_path: Path) -> tuple[dict[str, list[str]], Any]:
    from telehealth import services as services_module
    from telehealth.app import create_app
    from telehealth.jobs import InlineJobs
    from telehealth.paging import FakePager
    from telehealth.settings import Settings

    settings = Settings(twilio_auth_token=AUTH_TOKEN, database_url=f"sqlite:///{tmp_path / 'one.sqlite3'}",
                        run_jobs_inline=True, flows_dir=flows_with(tmp_path / "reference", _chain()))
    services = services_module.build(settings, pager=FakePager(), jobs=InlineJobs(synchronous=True),
                                     client=__import__("fakeredis").FakeRedis(), create_schema=True)
    services.jobs.services = services  # type: ignore[attr-defined]
    hooks = InProcessHooks(create_app(services=services).test_client())
    return {phone: play(lambda: hooks, phone, *script) for phone, script in SCRIPTS.items()}, services.records


def _chain() -> dict[str, Any]:
    return chain((0, "primary", ["sms"]), (300, "backup", ["sms"]), round_seconds=600)


def shape(conversation: dict[str, Any]) -> tuple[Any, ...]:
    return (conversation["channel"], conversation["status"], conversation["disposition"], conversation["rule"],
            conversation["facts"], conversation["red_flags"],
            [(t["direction"], t["text"], t["digits"]) for t in conversation["turns"]],
            None if conversation["escalation"] is None else conversation["escalation"]["level"])


def test_two_web_processes_and_two_workers_serve_one_conversation_as_one_process_would(
        shared_redis: str, database_url: str, fake: Any, make_line: Any, tmp_path: Path) -> None:
    expected, single = reference(tmp_path)

    line = make_line(shared_redis, database_url, fake, flows=flows_with(tmp_path, _chain()))
    line.put_on_call()
    webs = [line.start_web(), line.start_web()]
    line.start_worker()
    line.start_worker()
    turns = itertools.cycle(webs)
    served: list[str] = []

    def alternate() -> Hooks:
        web = next(turns)
        served.append(web.name)
        return web.hooks

    for phone, (channel, inputs) in SCRIPTS.items():
        assert play(alternate, phone, channel, inputs) == expected[phone], f"{channel} {phone} differs"
        assert shape(line.latest(phone)) == shape(single.latest_conversation(phone)), f"record of {phone} differs"
    assert [line.latest(phone)["disposition"] for phone in SCRIPTS] == ["routine", "emergency", "urgent", "urgent"]
    assert abs(served.count("web-1") - served.count("web-2")) <= 1 and len(served) > 40
    assert all(b != a for a, b in zip(served, served[1:])), "consecutive turns went to the same process"

    emergency = line.latest("+16175550262")["escalation"]["id"]
    wait_for(lambda: line.events(emergency, "alert_sent"), timeout=15, what="the emergency's page")
    urgent = [line.latest(p)["escalation"]["id"] for p in ("+16175550263", "+16175550264")]
    wait_for(lambda: all(line.events(e, "alert_sent") for e in urgent), timeout=15, what="the urgent pages")
    assert len(fake.to(PRIMARY, "sms")) == 3  # one page per case, from two racing workers
    assert all(p.alive for p in [*webs, *line.workers])
    single.dispose()
