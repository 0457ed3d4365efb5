"""POST /twilio/sms: one inbound text in, TwiML <Message>s out."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from twilio.twiml.messaging_response import MessagingResponse

from telehealth.acknowledgements import reply_to_clinician, staff_member
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
    body = request.form.get("Body", "")
    line = TriageLine(services)
    message_sid = request.form.get("MessageSid", "")
    cached = line.arrive(phone, message_sid)  # a retried MessageSid: the same reply, nothing read
    # While the database is down the roster cannot be read: the text is taken as a patient's.
    clinician = None if cached is not None else line.durable.read(staff_member, services, phone)
    if clinician is not None:  # a clinician or the supervisor answering a page, not a patient
        messages = reply_to_clinician(services, clinician, body)
        services.records.audit("clinician_text", actor=f"clinician:{clinician['id'] or 'supervisor'}",
                               detail={"replied": len(messages)})
    else:
        messages = line.text_in(phone, body, message_sid)
    response = MessagingResponse()
    for text in messages:
        response.message(text)
    return twiml(response)
