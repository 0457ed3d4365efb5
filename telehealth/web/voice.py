"""Voice webhooks: the call, each answered (or unanswered) question, and the status callback."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, request, url_for
from twilio.twiml.voice_response import Gather, VoiceResponse

from telehealth.conversations import Outgoing, TriageLine
from telehealth.phones import to_e164
from telehealth.triage.engine import Input
from telehealth.web.twilio_guard import twilio_webhook, twiml

bp = Blueprint("voice", __name__)

ENDED_STATUSES = {"completed", "busy", "failed", "no-answer", "canceled"}
GATHER_TIMEOUT_SECONDS = 6


@bp.post("/twilio/voice")
@twilio_webhook("voice")
def inbound_call() -> Response:
    out = _line().call_started(request.form.get("CallSid", ""), _caller())
    return twiml(render(out))


@bp.post("/twilio/voice/answer")
@twilio_webhook("voice")
def answer() -> Response:
    step = request.args.get("step", default=0, type=int)
    given = Input(
        text=request.form.get("SpeechResult", ""),
        digits=request.form.get("Digits", ""),
        confidence=request.form.get("Confidence", type=float),
    )
    if not given.text.strip() and not given.digits:
        given = Input(silent=True)
    out = _line().call_answer(request.form.get("CallSid", ""), _caller(), step, given)
    return twiml(render(out))


@bp.post("/twilio/voice/status")
@twilio_webhook("status")
def call_status() -> Response:
    if request.form.get("CallStatus", "") in ENDED_STATUSES:
        _line().call_ended(request.form.get("CallSid", ""), _caller())
    return Response("", status=204)


def render(out: Outgoing) -> VoiceResponse:
    response = VoiceResponse()
    if out.emergency:
        instruction = " ".join(out.said)
        response.say(instruction)
        response.pause(length=1)
        response.say(instruction)  # said twice: a frightened caller may miss it once
        response.hangup()
        return response
    for text in out.said:
        response.say(text)
    if out.ended or out.prompt is None:
        response.say("Goodbye.")
        response.hangup()
        return response
    action = url_for("voice.answer", step=out.step + 1)
    # TwiML attributes are only taken from the constructor's keywords: setting an attribute on the
    # Gather afterwards never reaches the XML.
    keys: dict[str, object] = (
        {"finish_on_key": "#"} if out.expects == "number"
        else {"num_digits": 1, "hints": "yes, no, yeah, nope, not sure"}
    )
    gather = Gather(input="dtmf speech", action=action, method="POST", timeout=GATHER_TIMEOUT_SECONDS,
                    speech_timeout="auto", language="en-US", action_on_empty_result=False, **keys)
    gather.say(out.prompt)
    response.append(gather)
    # Twilio runs the next verb only when the caller says nothing: that is silence, not a hang-up.
    response.redirect(url_for("voice.answer", step=out.step + 1, silent=1), method="POST")
    return response


def _line() -> TriageLine:
    return TriageLine(current_app.config["SERVICES"])


def _caller() -> str:
    raw = request.form.get("From", "")
    return to_e164(raw, current_app.config["SERVICES"].settings.default_region) or raw
