"""How the console shows times, durations, numbers and labels (Jinja filters and globals)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask

from telehealth.phones import masked

STATUS_WORDS = {
    "active": "in progress",
    "completed": "completed",
    "abandoned": "abandoned",
    "opted_out": "opted out",
}
ESCALATION_WORDS = {
    "pending": "paging",
    "acknowledged": "taken",
    "unacknowledged": "nobody took it",
    "cancelled": "cancelled",
}


@lru_cache(maxsize=8)
def zone(name: str) -> timezone | ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def parse_time(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def local(value: str | datetime | None, tz_name: str, fmt: str = "%d %b %Y %H:%M") -> str:
    moment = parse_time(value)
    if moment is None:
        return ""
    return moment.astimezone(zone(tz_name)).strftime(fmt)


def day_bounds(day: date, tz_name: str) -> tuple[datetime, datetime]:
    """The UTC instants a local calendar day starts and ends at."""
    start = datetime.combine(day, time.min, tzinfo=zone(tz_name))
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone(tz_name))
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def local_day(value: datetime, tz_name: str) -> date:
    return value.astimezone(zone(tz_name)).date()


def duration(seconds: float | None) -> str:
    """'45 s', '12 min', '3 h 05 min', '2 d 4 h'."""
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def since(value: str | datetime | None, now: datetime) -> str:
    moment = parse_time(value)
    return "" if moment is None else duration((now - moment).total_seconds())


def phone_masked(phone: str | None) -> str:
    return masked(phone or "")


def words(value: Any, table: dict[str, str]) -> str:
    return table.get(str(value), str(value).replace("_", " ")) if value is not None else ""


def install(app: Flask) -> None:
    app.jinja_env.filters.update(
        masked=phone_masked,
        duration=duration,
        parse_time=parse_time,
        status_words=lambda v: words(v, STATUS_WORDS),
        escalation_words=lambda v: words(v, ESCALATION_WORDS),
    )
