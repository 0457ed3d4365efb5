"""Structured JSON log lines carrying ids only: never phone numbers, names or message text."""
from __future__ import annotations

import json
import logging
import sys

# Only these `extra` fields are written; anything else passed to a logger is dropped.
SAFE_FIELDS = ("endpoint", "error", "where", "conversation_id", "escalation_id", "disposition", "rule", "job")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
                "logger": record.name, "event": record.getMessage()}
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
