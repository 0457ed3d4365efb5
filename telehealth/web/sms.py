"""POST /twilio/sms: one inbound text in, TwiML <Message>s out."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from twilio.twiml.messaging_response import MessagingResponse

from telehealth.conversations import TriageLine
from telehealth.phones import to_e164
from telehealth.web.twilio_guard import twilio_webhook, twiml

bp = Blueprint("sms", __name__)


@bp.post("/twilio/sms")
@twilio_webhook("sms")
def inbound_sms() -> Response:
    services = current_app.config["SERVICES"]
    raw_from = request.form.get("From", "")
    phone = to_e164(raw_from, services.settings.default_region) or raw_from
    messages = TriageLine(services).text_in(phone, request.form.get("Body", ""),
                                            request.form.get("MessageSid", ""))
    response = MessagingResponse()
    for text in messages:
        response.message(text)
    return twiml(response)
