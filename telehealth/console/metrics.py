"""The numbers behind the dashboard, by local calendar day over a range of days."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Sequence

from sqlalchemy import select

from telehealth.console.display import day_bounds, local_day
from telehealth.records import Conversation, Escalation, Records
from telehealth.triage.protocol import Protocol

DISPOSITIONS = ("emergency", "urgent", "routine", "none")


@dataclass(frozen=True)
class Dashboard:
    days: list[date]
    by_disposition: dict[str, list[int]]  # disposition -> count per day
    ack_median_minutes: list[float | None]
    ack_p90_minutes: list[float | None]
    red_flags: list[tuple[str, int]]
    abandoned: dict[str, list[int]]  # channel -> abandoned count per day
    conversations: int
    escalations: int
    unacknowledged: int
    overall_median_minutes: float | None
    overall_p90_minutes: float | None


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile: the value at or below which `share` of the values fall."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def days_ending(last: date, count: int) -> list[date]:
    return [last - timedelta(days=count - 1 - i) for i in range(count)]


def build(records: Records, protocol: Protocol, days: list[date], tz_name: str) -> Dashboard:
    start, end = day_bounds(days[0], tz_name)[0], day_bounds(days[-1], tz_name)[1]
    index = {day: i for i, day in enumerate(days)}
    with records.transaction() as session:
        convs = session.execute(
            select(
                Conversation.started_at,
                Conversation.disposition,
                Conversation.status,
                Conversation.channel,
                Conversation.red_flags,
            ).where(Conversation.started_at >= start, Conversation.started_at < end)
        ).all()
        escalations = session.execute(
            select(Escalation.created_at, Escalation.acknowledged_at, Escalation.status).where(
                Escalation.created_at >= start, Escalation.created_at < end
            )
        ).all()

    by_disposition = {d: [0] * len(days) for d in DISPOSITIONS}
    abandoned = {"sms": [0] * len(days), "voice": [0] * len(days)}
    flags: Counter[str] = Counter()
    for started_at, disposition, status, channel, red_flags in convs:
        i = index[local_day(started_at, tz_name)]
        by_disposition[disposition or "none"][i] += 1
        if status == "abandoned":
            abandoned.setdefault(channel, [0] * len(days))[i] += 1
        flags.update(set(red_flags or []))

    waits: list[list[float]] = [[] for _ in days]
    for created_at, acknowledged_at, _status in escalations:
        if acknowledged_at is not None:
            waits[index[local_day(created_at, tz_name)]].append(
                (acknowledged_at - created_at).total_seconds() / 60
            )
    every_wait = [w for day in waits for w in day]
    return Dashboard(
        days=days,
        by_disposition=by_disposition,
        ack_median_minutes=[statistics.median(w) if w else None for w in waits],
        ack_p90_minutes=[percentile(w, 0.9) for w in waits],
        red_flags=_by_frequency(flags, protocol),
        abandoned=abandoned,
        conversations=len(convs),
        escalations=len(escalations),
        unacknowledged=sum(1 for *_, status in escalations if status == "unacknowledged"),
        overall_median_minutes=statistics.median(every_wait) if every_wait else None,
        overall_p90_minutes=percentile(every_wait, 0.9),
    )


def _by_frequency(flags: Counter[str], protocol: Protocol) -> list[tuple[str, int]]:
    """Most frequent first; ties in alphabetical order, so every database draws the same chart."""
    labelled = [(protocol.fact_labels.get(f, f.replace("_", " ")), n) for f, n in flags.items()]
    return sorted(labelled, key=lambda item: (-item[1], item[0]))
