"""Twilio webhooks for clinician alerts: delivery status callbacks and the alert call itself."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, request, url_for
from twilio.twiml.voice_response import Gather, VoiceResponse

from telehealth import acknowledgements, escalation
from telehealth.alerts import Alerts
from telehealth.outbox import Outbox
from telehealth.records import RecordsUnavailable
from telehealth.web.twilio_guard import twilio_webhook, twiml

bp = Blueprint("alerts", __name__)


@bp.post("/twilio/alerts/status")
@twilio_webhook("status")
def delivery_status() -> Response:
    alert_id = request.args.get("alert", type=int)
    status = request.form.get("MessageStatus") or request.form.get("CallStatus") or ""
    if alert_id is not None and status:
        services = current_app.config["SERVICES"]
        error_code = request.form.get("ErrorCode") or None
        try:
            escalation.delivery_status(services, alert_id, status.lower(), error_code)
        except RecordsUnavailable:
            # Twilio does not send a status twice: keep it until the database is back.
            Outbox(services.sessions.client, mapping_ttl_seconds=services.settings.session_ttl_seconds).append(
                {"op": "delivery_status", "alert_id": alert_id, "status": status.lower(), "error_code": error_code})
    return Response("", status=204)


@bp.post("/twilio/alerts/call")
@twilio_webhook("voice")
def alert_call() -> Response:
    alert = _alert()
    response = VoiceResponse()
    if alert is None:
        response.say("This is the back pain triage line. This alert is no longer open. Goodbye.")
        response.hangup()
        return twiml(response)
    gather = Gather(input="dtmf", num_digits=1, timeout=8, method="POST",
                    action=url_for("alerts.alert_call_answer", alert=alert["id"]))
    gather.say(f"This is the back pain triage line. {alert['body'].replace('Reply 1 to take it.', '')} "
               "Press 1 to take this case.")
    response.append(gather)
    response.say("No key was pressed. We will keep paging. Goodbye.")
    response.hangup()
    return twiml(response)


@bp.post("/twilio/alerts/call/answer")
@twilio_webhook("voice")
def alert_call_answer() -> Response:
    alert = _alert()
    response = VoiceResponse()
    if alert is None or request.form.get("Digits", "") != "1":
        response.say("The case was not taken. We will keep paging. Goodbye.")
    else:
        services = current_app.config["SERVICES"]
        response.say(acknowledgements.take(services, alert["escalation_id"], alert["recipient"],
                                           alert["recipient_name"]))
    response.hangup()
    return twiml(response)


def _alert() -> dict | None:
    alert_id = request.args.get("alert", type=int)
    return None if alert_id is None else Alerts(current_app.config["SERVICES"].records).get(alert_id)
