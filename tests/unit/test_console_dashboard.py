"""The dashboard's numbers and its charts, drawn as inline SVG on the server."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any
from xml.etree import ElementTree

import pytest

from telehealth import escalation
from telehealth.console import charts, metrics
from telehealth.console.charts import Series
from telehealth.conversations import TriageLine
from tests.unit.console_support import (
    ABANDONED_URGENT,
    EMERGENCY,
    ROUTINE,
    URGENT_FEVER,
    Staff,
    add_staff,
    play,
    use_cheap_hashing,
)

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def history(services: Any, twilio: Any, clock: Any) -> None:
    """24 Nov: a routine and an emergency taken after 2 min. 26 Nov: an urgent taken after 10 min,
    an emergency taken after 30 min, and an abandoned urgent nobody took."""

    def case(messages: list[str], phone: str, taken_after: float | None) -> None:
        play(twilio, messages, phone)
        found = services.records.latest_conversation(phone)["escalation"]
        if taken_after is not None:
            clock.advance(minutes=taken_after)
            escalation.acknowledge(services, found["id"], "+16175550111", "Dana Prime")

    clock.now = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
    play(twilio, ROUTINE, "+16175550001")
    case(EMERGENCY, "+16175550002", 2)
    clock.now = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)
    case(URGENT_FEVER, "+16175550003", 10)
    case(EMERGENCY, "+16175550004", 30)
    play(twilio, ABANDONED_URGENT, "+16175550005")
    clock.advance(minutes=40)
    TriageLine(services).sweep_abandoned()
    clock.now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def test_conversations_per_day_by_disposition(services: Any, history: None) -> None:
    days = metrics.days_ending(date(2026, 11, 26), 3)
    numbers = metrics.build(services.records, services.protocol, days, "UTC")
    assert numbers.by_disposition == {
        "emergency": [1, 0, 1],
        "urgent": [0, 0, 2],
        "routine": [1, 0, 0],
        "none": [0, 0, 0],
    }
    assert numbers.conversations == 5 and numbers.escalations == 4


def test_flag_to_acknowledgement_median_and_90th_percentile(services: Any, history: None) -> None:
    numbers = metrics.build(
        services.records, services.protocol, metrics.days_ending(date(2026, 11, 26), 3), "UTC"
    )
    assert numbers.ack_median_minutes == [2, None, 20]
    assert numbers.ack_p90_minutes == [2, None, 30]
    assert numbers.overall_median_minutes == 10 and numbers.overall_p90_minutes == 30
    assert numbers.unacknowledged == 0  # the abandoned case is still paging


def test_red_flags_by_frequency_and_abandoned_conversations(services: Any, history: None) -> None:
    numbers = metrics.build(
        services.records, services.protocol, metrics.days_ending(date(2026, 11, 26), 3), "UTC"
    )
    assert numbers.red_flags == [("chest pain or short of breath", 2), ("fever", 2)]
    assert numbers.abandoned == {"sms": [0, 0, 1], "voice": [0, 0, 0]}


def test_days_follow_the_console_time_zone(services: Any, history: None) -> None:
    # 09:00 UTC on 24 Nov is still 23 Nov in Honolulu (UTC-10).
    numbers = metrics.build(
        services.records,
        services.protocol,
        metrics.days_ending(date(2026, 11, 26), 4),
        "Pacific/Honolulu",
    )
    assert numbers.by_disposition["routine"] == [1, 0, 0, 0]


def test_percentile_is_nearest_rank() -> None:
    assert metrics.percentile([], 0.9) is None
    assert metrics.percentile([5], 0.9) == 5
    assert metrics.percentile(list(range(1, 11)), 0.9) == 9
    assert metrics.percentile(list(range(1, 11)), 0.5) == 5


def test_the_dashboard_page_draws_four_charts_with_their_numbers(
    client: Any, services: Any, history: None, monkeypatch: Any
) -> None:
    use_cheap_hashing(monkeypatch)
    add_staff(services, "clinician")
    staff = Staff(client)
    staff.sign_in(email="cy.clinician@clinic.example")
    html = staff.get("/console/dashboard?days=7").get_data(as_text=True)
    svgs = re.findall(r"<svg .*?</svg>", html, re.S)
    assert len(svgs) == 4
    for svg in svgs:
        root = ElementTree.fromstring(svg)  # well-formed XML
        assert root.get("role") == "img" and root.find(f"{SVG}title") is not None
        assert (
            "href" not in svg and "http://www.w3.org/2000/svg" in svg
        )  # nothing loaded from anywhere
    assert "Conversations per day, by disposition" in html and "Red flags by frequency" in html
    assert "<td>26 Nov</td><td>1</td><td>2</td><td>0</td><td>0</td>" in html
    assert '<span class="tile-number">5</span> conversations' in html


def test_an_unknown_period_falls_back_to_two_weeks(
    client: Any, services: Any, monkeypatch: Any
) -> None:
    use_cheap_hashing(monkeypatch)
    add_staff(services, "admin")
    staff = Staff(client)
    staff.sign_in()
    html = staff.get("/console/dashboard?days=1000").get_data(as_text=True)
    assert '<option value="14" selected>' in html
    assert "Nothing in this period." in html


def test_charts_escape_their_labels() -> None:
    svg = charts.horizontal_bars("<t>", [("<script>x</script>", 3)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    ElementTree.fromstring(str(svg))


def test_bars_stack_and_scale_to_a_round_top() -> None:
    svg = str(
        charts.stacked_bars(
            "t",
            [date(2026, 11, 1), date(2026, 11, 2)],
            [Series("A", "s-a", [3, 0]), Series("B", "s-b", [4, 1])],
        )
    )
    root = ElementTree.fromstring(svg)
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert [r.get("class") for r in bars] == ["s-a", "s-b", "s-b"]
    assert ">10</text>" in svg  # 7 rounds up to 10


def test_a_line_breaks_where_a_day_has_no_value() -> None:
    svg = str(
        charts.lines(
            "t",
            [date(2026, 11, d) for d in range(1, 6)],
            [Series("m", "s-median", [1, 2, None, 4, 5])],
        )
    )
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 4


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1), (1, 1), (3, 5), (7, 10), (10, 10), (11, 20), (260, 500)]
)
def test_nice_ceiling(value: float, top: float) -> None:
    assert charts.nice_ceiling(value) == top
