"""Alerts to clinicians. Issue 2 needs only the console pager; Twilio paging sits beside it later."""
from __future__ import annotations

import sys
from typing import Protocol, TextIO


class Pager(Protocol):
    def send_alert(self, text: str, *, escalation_id: int) -> str:
        """Deliver one alert; return the delivery's id."""
        ...


class ConsolePager:
    """Embedded default: the alert is printed where the operator running the service can see it."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def send_alert(self, text: str, *, escalation_id: int) -> str:
        stream = self.stream or sys.stdout
        print(f"[ALERT to on-call clinician] {text}", file=stream, flush=True)
        return f"console-{escalation_id}"


class RecordingPager:
    """Test double: keeps every alert it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    def send_alert(self, text: str, *, escalation_id: int) -> str:
        self.sent.append((escalation_id, text))
        return f"fake-{len(self.sent)}"
