"""The staff console in real headless Chromium, on real data played through the Twilio webhooks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture then skips, or fails under CI=true
    expect = None

from tests.browser.conftest import ARTIFACTS
from tests.unit.console_support import (
    ADMIN_EMAIL,
    CLINICIAN_EMAIL,
    EMERGENCY,
    PASSWORD,
    ROUTINE,
    URGENT_FEVER,
)

pytestmark = pytest.mark.browser

PHONE_EMERGENCY, PHONE_ROUTINE, PHONE_URGENT, PHONE_CALLER = (
    "+16175551001",
    "+16175552002",
    "+16175553003",
    "+16175554004",
)


@pytest.fixture
def line(live: dict[str, Any]) -> dict[str, Any]:
    """Four patients: an emergency, an urgent and a routine text, and an emergency by voice."""
    patients = live["patients"]
    patients.texts(PHONE_EMERGENCY, *EMERGENCY)
    patients.texts(PHONE_ROUTINE, *ROUTINE)
    patients.texts(PHONE_URGENT, *URGENT_FEVER)
    patients.calls(
        "CA" + "7" * 32,
        PHONE_CALLER,
        {"Digits": "71"},
        {"Digits": "2"},
        {"SpeechResult": "Yes, it tears.", "Confidence": "0.58"},
    )
    return live


@pytest.fixture
def page(browser: Any, live: dict[str, Any], request: Any) -> Iterator[Any]:
    """A fresh browser context: refuses anything not from the live server, records errors."""
    context = browser.new_context(
        base_url=live["base_url"], viewport={"width": 1280, "height": 900}
    )
    tab = context.new_page()
    # Console errors (CSP violations are logged there), page errors, requests to elsewhere.
    tab.problems = []
    tab.on(
        "console",
        lambda m: tab.problems.append(f"console: {m.text}") if m.type == "error" else None,
    )
    tab.on("pageerror", lambda e: tab.problems.append(f"pageerror: {e}"))

    def only_local(route: Any) -> None:
        if route.request.url.startswith(live["base_url"]):
            route.continue_()
        else:
            tab.problems.append(f"outside request: {route.request.url}")
            route.abort()

    tab.route("**/*", only_local)
    yield tab
    context.close()
    assert tab.problems == []


def sign_in(page: Any, email: str = ADMIN_EMAIL, path: str = "/console/") -> None:
    page.goto(path)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def shot(page: Any, name: str, full_page: bool = True) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def rows(page: Any) -> int:
    return page.locator("table.list tbody tr").count()


def test_sign_in_and_filter_the_conversation_list(page: Any, line: dict[str, Any]) -> None:
    page.goto("/console/")
    assert "/console/sign-in" in page.url
    shot(page, "sign-in", full_page=False)
    sign_in(page, CLINICIAN_EMAIL, path=page.url)
    assert page.get_by_role("heading", name="Conversations").is_visible()
    assert rows(page) == 4
    assert page.get_by_text("+1 *** *** 1001").is_visible()
    assert PHONE_EMERGENCY not in page.content()
    shot(page, "conversations")

    page.get_by_label("Disposition").select_option("emergency")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    assert "disposition=emergency" in page.url and rows(page) == 2
    page.get_by_label("Phone, last 4 digits").fill("4004")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    assert rows(page) == 1 and page.get_by_text("+1 *** *** 4004").is_visible()
    shot(page, "conversations-filtered")


def test_open_a_conversation(page: Any, line: dict[str, Any]) -> None:
    sign_in(page, CLINICIAN_EMAIL)
    page.get_by_label("Channel").select_option("voice")
    page.get_by_role("button", name="Filter").click()
    page.locator("table.list tbody tr a").first.click()
    page.wait_for_load_state()
    assert re.search(r"/console/\d+$", page.url)
    assert page.get_by_role("heading", name="Transcript").is_visible()
    assert page.locator("ul.flags li").first.inner_text() == "tearing pain or pain into belly"
    assert page.get_by_text("aortic_pain").is_visible()
    assert page.get_by_text("said “Yes, it tears.” (confidence 58%)").is_visible()
    assert page.get_by_text("Taken").first.is_visible()
    shot(page, "conversation")

    page.get_by_label("Outcome", exact=True).select_option("sent_to_er")
    page.get_by_label("Note", exact=True).fill("Called back; ambulance on its way.")
    page.get_by_role("button", name="Save note").click()
    page.wait_for_load_state()
    assert page.locator(".note .meta strong").inner_text() == "Called back, sent to ER"


def test_acknowledge_an_escalation_from_the_live_board(page: Any, line: dict[str, Any]) -> None:
    services = line["services"]
    services.settings = services.settings.with_overrides(console_board_refresh_seconds=2)
    sign_in(page, CLINICIAN_EMAIL)
    page.get_by_role("link", name="Board", exact=True).click()
    page.wait_for_load_state()
    cases = page.locator("li.case")
    assert cases.count() == 3
    assert page.locator("li.case-emergency").count() == 2
    assert page.get_by_text("Dana Prime by text").first.is_visible()
    shot(page, "board")

    # A new patient is escalated while the board is open: it appears without a page load.
    page.evaluate("window.stillTheSamePage = true")
    line["patients"].texts("+16175555005", *EMERGENCY)
    expect(page.locator("li.case")).to_have_count(
        4, timeout=10_000
    )  # no wait_for_function: CSP forbids eval
    assert page.evaluate("window.stillTheSamePage") is True
    assert page.title().startswith("(4) ")

    newest = services.records.latest_conversation("+16175555005")["escalation"]["id"]
    page.get_by_role("button", name=f"Take case {newest}").click()
    page.wait_for_load_state()
    assert page.get_by_text(f"Case {newest} is yours. Call the patient now.").is_visible()
    assert page.locator("li.case").count() == 3
    taken = services.records.get_escalation(newest)
    assert taken["status"] == "acknowledged" and taken["acknowledged_by"] == "Cy Clinician"
    shot(page, "board-after-acknowledging")


def test_the_dashboard_charts_render(page: Any, line: dict[str, Any]) -> None:
    from telehealth import escalation

    services = line["services"]
    case = services.records.latest_conversation(PHONE_URGENT)["escalation"]["id"]
    escalation.acknowledge(services, case, "+16175550111", "Dana Prime")
    sign_in(page, CLINICIAN_EMAIL, path="/console/dashboard")
    charts = page.locator("svg.chart")
    assert charts.count() == 4
    for i in range(4):
        box = charts.nth(i).bounding_box()
        assert box and box["width"] > 300 and box["height"] > 60
    bars = page.locator("#chart-per-day svg rect.s-emergency")
    assert bars.count() >= 2  # the legend swatch and at least one bar
    assert page.locator("#chart-flags svg rect.s-flag").count() >= 2
    assert page.locator("#chart-ack svg circle").count() == 2  # today's median and 90th percentile
    shot(page, "dashboard")


def test_admin_pages_roster_and_audit(page: Any, line: dict[str, Any]) -> None:
    sign_in(page, ADMIN_EMAIL, path="/console/roster")
    assert page.get_by_text("Dana Prime").first.is_visible()
    assert page.locator("li.gap-item").count() >= 1
    assert page.locator("svg.chart rect.gap").count() >= 1
    shot(page, "roster")
    page.get_by_role("link", name="Audit log").click()
    page.wait_for_load_state()
    page.get_by_label("What").select_option("console_sign_in")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    assert rows(page) == 1
    shot(page, "audit")


def test_a_clinician_is_refused_admin_pages(page: Any, line: dict[str, Any]) -> None:
    sign_in(page, CLINICIAN_EMAIL)
    response = page.goto("/console/audit")
    assert response.status == 403
    assert page.get_by_text("This page is for admins").is_visible()
    page.problems.remove(
        "console: Failed to load resource: the server responded with a status of 403 (FORBIDDEN)"
    )


def test_on_a_phone_with_the_keyboard(browser: Any, line: dict[str, Any]) -> None:
    context = browser.new_context(
        base_url=line["base_url"],
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
    )
    page = context.new_page()
    page.goto("/console/board")
    assert page.evaluate("document.activeElement.id") == "email"  # the sign-in form has the focus
    page.keyboard.type(CLINICIAN_EMAIL)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: urlsplit(url).path == "/console/board")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # past the board's first link to its first button, by keyboard alone
    assert page.evaluate("document.activeElement.textContent").startswith("Take case")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing wider than the phone's screen
    shot(page, "phone-board")
    page.goto("/console/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "phone-conversations")
    context.close()
