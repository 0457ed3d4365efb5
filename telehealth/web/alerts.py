"""Twilio webhooks for clinician alerts: delivery status callbacks and the alert call itself."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, request, url_for
from twilio.twiml.voice_response import Gather, VoiceResponse

from telehealth import acknowledgements, escalation
from telehealth.alerts import Alerts
from telehealth.web.twilio_guard import twilio_webhook, twiml

bp = Blueprint("alerts", __name__)


@bp.post("/twilio/alerts/status")
@twilio_webhook("status")
def delivery_status() -> Response:
    alert_id = request.args.get("alert", type=int)
    status = request.form.get("MessageStatus") or request.form.get("CallStatus") or ""
    if alert_id is not None and status:
        escalation.delivery_status(current_app.config["SERVICES"], alert_id, status.lower(),
                                   request.form.get("ErrorCode") or None)
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
