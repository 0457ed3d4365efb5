"""What every Twilio webhook shares: the signature check and the fail-safe reply.

Fail safe (safety rule 2): whatever breaks while handling a webhook, Twilio still gets HTTP 200
with valid TwiML telling the caller to call 911 if this is an emergency; the failure is logged
without patient data, recorded and escalated.
"""
from __future__ import annotations

import functools
import logging
import threading
import traceback
from typing import Any, Callable

from flask import Response, current_app, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

log = logging.getLogger(__name__)

FAILSAFE_SMS = ("Sorry, we could not handle your message. If this is an emergency, call 911 now. "
                "Otherwise please text us again in a few minutes.")
FAILSAFE_VOICE = ("Sorry, we have a technical problem. If this is an emergency, hang up and call "
                  "911 now. Otherwise please call back in a few minutes.")
FAILURE_JOB = "workers.escalations.alert_failure"


def twiml(response: MessagingResponse | VoiceResponse) -> Response:
    return Response(str(response), status=200, mimetype="text/xml")


def signed_url() -> str:
    """The URL Twilio signed: behind a proxy, PUBLIC_BASE_URL says what the outside world used."""
    base = current_app.config["SERVICES"].settings.public_base_url
    if not base:
        return request.url
    query = request.query_string.decode()
    return f"{base}{request.path}" + (f"?{query}" if query else "")


def is_signed_by_twilio() -> bool:
    token = current_app.config["SERVICES"].settings.twilio_auth_token
    signature = request.headers.get("X-Twilio-Signature", "")
    return bool(signature) and RequestValidator(token).validate(signed_url(), request.form, signature)


def twilio_webhook(channel: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Refuse unsigned requests with 403; turn any failure into the fail-safe TwiML."""

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Response:
            try:
                if not is_signed_by_twilio():
                    return Response("invalid Twilio signature", status=403, mimetype="text/plain")
                return view(*args, **kwargs)
            except Exception as exc:  # the one broad catch: the caller must always hear 911 advice
                _report_failure(request.endpoint or "?", exc)
                return _failsafe(channel)

        return guarded

    return decorate


def _failsafe(channel: str) -> Response:
    if channel == "voice":
        response = VoiceResponse()
        response.say(FAILSAFE_VOICE)
        response.hangup()
        return twiml(response)
    if channel == "status":
        return Response("", status=204)
    response = MessagingResponse()
    response.message(FAILSAFE_SMS)
    return twiml(response)


def _report_failure(endpoint: str, exc: Exception) -> None:
    """Log, record and escalate a failed webhook. Each step is best effort: one may be what broke."""
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else "?"
    # Only the class and the place: exception messages can carry patient data.
    log.error("webhook failed", extra={"endpoint": endpoint, "error": type(exc).__name__, "where": where})
    services = current_app.config["SERVICES"]
    detail = {"endpoint": endpoint, "error": type(exc).__name__, "where": where}
    caller = request.form.get("From", "")
    try:
        services.records.audit("webhook_failure", detail=detail)
    except Exception:
        log.error("could not record the webhook failure", extra={"endpoint": endpoint})
    try:
        services.jobs.enqueue(FAILURE_JOB, endpoint, caller)
    except Exception:
        # The queue may be what failed: page from here, off the request thread.
        from telehealth import escalation

        threading.Thread(target=_page_quietly, args=(escalation.alert_failure, services, endpoint, caller),
                         daemon=True).start()


def _page_quietly(send: Callable[..., None], *args: Any) -> None:
    try:
        send(*args)
    except Exception:
        log.error("could not page about the webhook failure")
