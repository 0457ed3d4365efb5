"""The dashboard: how the line is doing, as charts a manager looks at rather than reads."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue

from telehealth.console import charts, guard, metrics
from telehealth.console.charts import Series
from telehealth.console.display import local_day

bp = Blueprint("dashboard", __name__)

RANGES = (7, 14, 30, 90)
DISPOSITION_SERIES = (
    ("emergency", "Emergency", "s-emergency"),
    ("urgent", "Urgent", "s-urgent"),
    ("routine", "Routine", "s-routine"),
    ("none", "Unfinished", "s-none"),
)


@bp.get("/dashboard")
def index() -> ResponseReturnValue:
    services = guard.services()
    tz_name = services.settings.console_timezone
    span = request.args.get("days", default=14, type=int)
    span = span if span in RANGES else 14
    days = metrics.days_ending(local_day(guard.now(), tz_name), span)
    numbers = metrics.build(services.records, services.protocol, days, tz_name)
    return render_template(
        "console/dashboard.html", numbers=numbers, span=span, ranges=RANGES, charts=_charts(numbers)
    )


def _charts(n: metrics.Dashboard) -> dict[str, object]:
    return {
        "per_day": charts.stacked_bars(
            "Conversations per day by disposition",
            n.days,
            [Series(label, css, n.by_disposition[key]) for key, label, css in DISPOSITION_SERIES],
        ),
        "ack": charts.lines(
            "Minutes from flag to acknowledgement",
            n.days,
            [
                Series("Median", "s-median", n.ack_median_minutes),
                Series("90th percentile", "s-p90", n.ack_p90_minutes),
            ],
            unit="min",
        ),
        "flags": charts.horizontal_bars("Red flags by frequency", n.red_flags),
        "abandoned": charts.stacked_bars(
            "Abandoned conversations per day",
            n.days,
            [
                Series("Text", "s-sms", n.abandoned.get("sms", [])),
                Series("Voice", "s-voice", n.abandoned.get("voice", [])),
            ],
        ),
    }
