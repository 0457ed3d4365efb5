"""Structured JSON log lines carrying ids only: never phone numbers, names or message text.

Every line carries the request id and, once known, the conversation id of the request or job
it was written in.
"""
from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar

# Only these `extra` fields are written; anything else passed to a logger is dropped.
SAFE_FIELDS = ("endpoint", "error", "where", "conversation_id", "escalation_id", "disposition", "rule", "job")
# Query strings can hold a phone number (/api/conversations?phone=...): access lines drop them.
_QUERY = re.compile(r"\?[^\s\"]*")

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
conversation_id: ContextVar[int | None] = ContextVar("conversation_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = record.getMessage()
        if record.name in ("werkzeug", "gunicorn.access"):
            event = _QUERY.sub("?...", event)
        line = {"at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
                "logger": record.name, "event": event,
                "request_id": request_id.get(), "conversation_id": conversation_id.get()}
        line.update({k: getattr(record, k) for k in SAFE_FIELDS if hasattr(record, k)})
        return json.dumps(line)


def configure_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
