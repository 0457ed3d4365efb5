"""/metrics and the JSON logs: what an operator sees, and that no patient data is in it."""
from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from telehealth.logs import JsonFormatter
from tests.conftest import PATIENT, Twilio


def _metric(client: Any, name: str, **labels: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
            series, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in series for k, v in labels.items()) or not wanted:
                return float(value)
    return 0.0


def test_metrics_count_conversations_emergencies_and_webhook_latency(twilio: Twilio, client: Any) -> None:
    started = _metric(client, "telehealth_conversations_started_total", channel="sms")
    emergencies = _metric(client, "telehealth_emergency_instructions_total", channel="sms")
    twilio.sms("I can't pee and my back hurts", phone="+16175550991")

    assert _metric(client, "telehealth_conversations_started_total", channel="sms") == started + 1
    assert _metric(client, "telehealth_emergency_instructions_total", channel="sms") == emergencies + 1
    assert _metric(client, "telehealth_webhook_latency_seconds_count", endpoint="sms.inbound_sms") >= 1
    assert _metric(client, "telehealth_escalations", state="pending") == 1
    body = client.get("/metrics").get_data(as_text=True)
    for family in ("telehealth_alert_deliveries", "telehealth_flag_to_ack_seconds", "telehealth_queue_depth",
                   "telehealth_failed_jobs", "telehealth_conversations_ended_total"):
        assert f"# TYPE {family}" in body


def test_every_log_line_has_the_request_id_and_conversation_id_and_no_patient_data(
        twilio: Twilio, client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    formatter = JsonFormatter()
    twilio.sms("I can't pee and my back hurts", phone=PATIENT)

    lines = [json.loads(formatter.format(r)) for r in caplog.records]
    assert lines, "the emergency should have logged something"
    for line in lines:
        assert line["request_id"]
        text = json.dumps(line)
        assert PATIENT not in text and PATIENT[2:] not in text and "pee" not in text
    assert any(line["conversation_id"] for line in lines)


def test_a_request_id_is_echoed_and_reused(client: Any) -> None:
    response = client.get("/healthz", headers={"X-Request-Id": "abc123"})
    assert response.headers["X-Request-Id"] == "abc123"
    assert len(client.get("/healthz").headers["X-Request-Id"]) == 16


def test_access_lines_drop_query_strings() -> None:
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1,
                               '"GET /api/conversations?phone=%2B16175550123 HTTP/1.1" 200 -', None, None)
    assert "16175550123" not in JsonFormatter().format(record)
