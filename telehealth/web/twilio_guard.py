"""What every Twilio webhook shares: the size limit, the signature check and the fail-safe reply.

Fail safe (safety rule 2): whatever breaks while handling a webhook, Twilio still gets HTTP 200
with valid TwiML telling the caller to call 911 if this is an emergency; the failure is logged
without patient data, recorded and escalated. When the live state (Redis) is what broke, the turn
and the fail-safe reply are still written to the durable record, straight to SQL.
"""
from __future__ import annotations

import functools
import logging
import threading
import traceback
from datetime import timedelta
from typing import Any, Callable

from flask import Response, current_app, request
from redis.exceptions import RedisError
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.exceptions import RequestEntityTooLarge

from telehealth import escalation

log = logging.getLogger(__name__)

FAILSAFE_SMS = ("Sorry, we could not handle your message. If this is an emergency, call 911 now. "
                "Otherwise please text us again in a few minutes.")
FAILSAFE_VOICE = ("Sorry, we have a technical problem. If this is an emergency, hang up and call "
                  "911 now. Otherwise please call back in a few minutes.")
# Twilio's own webhooks are a few kilobytes (an SMS body is at most 1,600 characters); anything
# much larger is refused before it is read, signed or not.
MAX_WEBHOOK_BYTES = 64 * 1024
PATIENT_ENDPOINTS = {"sms.inbound_sms", "voice.inbound_call", "voice.answer", "voice.call_status"}


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
    """Refuse oversized bodies with 413 and unsigned requests with 403; turn any failure into the
    fail-safe TwiML."""

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Response:
            if _oversized():
                return _too_large()
            try:
                if not is_signed_by_twilio():
                    return Response("invalid Twilio signature", status=403, mimetype="text/plain")
                return view(*args, **kwargs)
            except RequestEntityTooLarge:
                return _too_large()
            except Exception as exc:  # the one broad catch: the caller must always hear 911 advice
                _report_failure(request.endpoint or "?", exc)
                return _failsafe(channel)

        return guarded

    return decorate


def _oversized() -> bool:
    """Over MAX_WEBHOOK_BYTES, read no further than that. A body sent without Content-Length
    (chunked) is read up to the limit, where werkzeug would silently cut it, and refused if more
    follows."""
    request.max_content_length = MAX_WEBHOOK_BYTES
    if request.content_length is not None:
        return request.content_length > MAX_WEBHOOK_BYTES
    try:
        request.get_data(cache=True)  # what the form is parsed from
        request.stream.read(1)  # past the limit: raises
    except RequestEntityTooLarge:
        return True
    return False


def _too_large() -> Response:
    return Response("request body too large", status=413, mimetype="text/plain")


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
    database_broke = _is_database_failure(exc)
    try:
        services.records.audit("webhook_failure", detail=detail)
    except Exception:
        log.error("could not record the webhook failure", extra={"endpoint": endpoint})
    if endpoint in PATIENT_ENDPOINTS and not database_broke:
        _record_failsafe(services, endpoint)
    if not _queue_shares_broken_redis(services, exc):  # do not wait for a dead Redis twice
        try:
            services.jobs.enqueue(escalation.FAILURE_JOB, endpoint, caller)
            return
        except Exception:
            pass
    # The queue may be what failed: page from here, off the request thread.
    threading.Thread(target=_page_quietly, args=(escalation.alert_failure, services, endpoint, caller),
                     daemon=True).start()


def _queue_shares_broken_redis(services: Any, exc: BaseException) -> bool:
    from telehealth.jobs import JobsUnavailable, RQJobs
    from telehealth.sessions import SessionUnavailable

    return isinstance(services.jobs, RQJobs) and isinstance(exc, (SessionUnavailable, JobsUnavailable, RedisError))


def _is_database_failure(exc: BaseException) -> bool:
    from telehealth.records import RecordsUnavailable

    return isinstance(exc, RecordsUnavailable)


def _record_failsafe(services: Any, endpoint: str) -> None:
    """Write what arrived and the fail-safe reply to SQL, without Redis. Best effort."""
    from telehealth.acknowledgements import staff_member
    from telehealth.conversations import TriageLine
    from telehealth.phones import to_e164
    from telehealth.web.voice import ENDED_STATUSES

    form, settings = request.form, services.settings
    raw_from = form.get("From", "")
    phone = to_e164(raw_from, settings.default_region) or raw_from
    now = services.clock()
    common = {"phone": phone, "protocol_version": services.protocol.version, "at": now,
              "idle_since": now - timedelta(minutes=settings.sms_session_timeout_minutes)}
    call_sid = form.get("CallSid", "")
    try:
        if endpoint == "sms.inbound_sms":
            if staff_member(services, phone) is not None:
                return  # a clinician answering a page: not a patient's turn
            services.records.record_failsafe(channel="sms", reply=FAILSAFE_SMS, text=form.get("Body", ""),
                                             sid=form.get("MessageSid") or None, **common)
        elif endpoint == "voice.call_status":
            if call_sid and form.get("CallStatus", "") in ENDED_STATUSES:
                line = TriageLine(services, live=False)
                line._caller = phone
                line.call_ended_durably(call_sid)
        elif call_sid:
            answer: dict[str, Any] = {}
            if endpoint == "voice.answer":
                digits, speech = form.get("Digits", ""), form.get("SpeechResult", "")
                step = request.args.get("step", default=0, type=int)
                answer = {"sid": f"{call_sid}:{step}", "text": digits or speech or "(silence)",
                          "digits": digits or None, "speech": speech or None,
                          "confidence": form.get("Confidence", type=float)}
            services.records.record_failsafe(channel="voice", reply=FAILSAFE_VOICE, call_sid=call_sid,
                                             **answer, **common)
    except Exception as exc:
        log.error("could not record the fail-safe turn", extra={"endpoint": endpoint, "error": type(exc).__name__})


def _page_quietly(send: Callable[..., None], *args: Any) -> None:
    try:
        send(*args)
    except Exception:
        log.error("could not page about the webhook failure")
