"""Simulated patients for the benchmark: whole SMS conversations and voice calls, as signed webhooks.

Everything here is precomputed before a run: a Twilio signature depends only on the URL and the
form parameters, so every request of every patient is built (and signed with twilio's own
RequestValidator) up front, and wrk only replays bytes.

A patient follows one *script*: the answers that lead to one disposition. The mix of scripts
(`SMS_MIX`, `VOICE_MIX`) is meant to look like a real back-pain line: most callers are routine, and
routine conversations are the longest ones (every red-flag question is asked and answered "no").

`interleave()` arranges many patients into one request stream so that one patient's consecutive
messages are far apart in it: the stream is a round robin over `slots`; each slot plays one patient
after another, and slot s starts s * L / slots rounds late (L = the mean conversation length), so
the steady mix of first messages, middle answers and final answers is there from the first second.
"""
from __future__ import annotations

import itertools
import random
import secrets
import urllib.parse
from dataclasses import dataclass, field
from typing import Iterator

from twilio.request_validator import RequestValidator

LINE_NUMBER = "+12025550100"  # the line's own Twilio number: every webhook is sent To it
ACCOUNT_SID = "AC" + "b3" * 16
# Patient numbers: +1 NPA 555 xxxx. NPA 202 is kept for the line and the on-call clinician.
PATIENT_NPAS = (617, 212, 312, 415, 206, 303, 512, 713, 404, 305, 718, 646, 310, 702, 602, 503,
                612, 720, 919, 614)

NO = ("no", "No", "nope", "No.", "not at all", "nah")
YES = ("yes", "Yes", "yeah", "Yes.")
ROUTINE_NARRATIVES = (
    "My lower back has been sore since I helped a friend move house on Saturday.",
    "Back pain after gardening all weekend, it is stiff in the mornings.",
    "I have had a dull ache in my lower back for about a week, worse when I sit at work.",
    "Hurt my back lifting my toddler, it is sore on the left side.",
    "Took up pickleball last month and my lower back is achy the day after games.",
    "back pain",
    "My back has been aching on and off for two weeks. Is it worth seeing someone?",
)
# No fact of the protocol in these: "goes down my leg" would answer the NEURO question in advance.
SCIATICA_NARRATIVES = ("back and leg pain", "My lower back aches and so does my right thigh.")
URGENT_VOLUNTEERED = (  # an urgent-only fact in the first text: the combination questions are skipped
    "I slipped on ice on Monday and landed hard. Back sore since.",
    "I had breast cancer ten years ago. My upper back aches.",
)
EMERGENCY_VOLUNTEERED = (
    "My back is killing me and since this morning I can't pee at all.",
    "Terrible back pain and I wet myself last night without knowing.",
)
EMERGENCY_NARRATIVES = ("back pain", "My back hurts a lot today.", "Sudden bad back pain this morning.")
THANKS = ("Thanks!", "thank you", "ok thanks")

# The questions in the order the protocol asks them on a path with no yes (flows/protocol.yaml).
STAGE1 = ("chest_pain", "tearing_pain_or_abdominal", "fainted_or_lightheaded", "bladder_problem",
          "bowel_problem", "saddle_numbness", "leg_weakness_both", "foot_drop", "major_trauma")


@dataclass(frozen=True)
class Script:
    """One path through the protocol. `answers` are yes/no (True/False); age comes first."""

    name: str
    disposition: str  # routine | urgent | emergency
    answers: tuple[bool, ...]  # after the age, in the order the questions come
    narrative: str = "routine"  # SMS: which narrative list the first text comes from
    age: bool = True  # SMS: False when the first text already completes an emergency rule
    thanks: bool = False  # SMS: a last "thanks" after the outcome (the after-end reply)


def _no(n: int) -> tuple[bool, ...]:
    return (False,) * n


# Routine: every stage-1 question, fever, NEURO, then the two grouped "or" questions.
ROUTINE = Script("routine", "routine", _no(9) + (False, False, False, False))
ROUTINE_THANKS = Script("routine_thanks", "routine", ROUTINE.answers, thanks=True)
# Tingling in one leg alone stays routine: the longest path (every partner of NEURO is asked).
ROUTINE_SCIATICA = Script("routine_sciatica", "routine",
                          _no(9) + (False, True, False, False, False, False, False, False),
                          narrative="sciatica")
URGENT_FEVER = Script("urgent_fever", "urgent", _no(9) + (True, False, False, False))
URGENT_HISTORY = Script("urgent_history", "urgent", _no(9) + (False, False, True))
URGENT_RISK = Script("urgent_risk_signs", "urgent", _no(9) + (False, False, False, True))
URGENT_VOLUNTEERED_S = Script("urgent_volunteered", "urgent", _no(9) + (False, False),
                              narrative="urgent_volunteered")
EMERGENCY_CHEST = Script("emergency_chest", "emergency", (True,), narrative="emergency")
EMERGENCY_SADDLE = Script("emergency_saddle", "emergency", _no(5) + (True,), narrative="emergency")
EMERGENCY_FEVER_IV = Script("emergency_fever_iv", "emergency", _no(9) + (True, False, True),
                            narrative="emergency")
EMERGENCY_VOLUNTEERED_S = Script("emergency_volunteered", "emergency", (), narrative="emergency_volunteered",
                                 age=False)

# (script, weight): 60% routine, 25% urgent, 15% emergency of conversations.
SMS_MIX: tuple[tuple[Script, float], ...] = (
    (ROUTINE, 0.30), (ROUTINE_THANKS, 0.12), (ROUTINE_SCIATICA, 0.18),
    (URGENT_FEVER, 0.07), (URGENT_HISTORY, 0.08), (URGENT_RISK, 0.05), (URGENT_VOLUNTEERED_S, 0.05),
    (EMERGENCY_CHEST, 0.04), (EMERGENCY_SADDLE, 0.05), (EMERGENCY_FEVER_IV, 0.04),
    (EMERGENCY_VOLUNTEERED_S, 0.02),
)
# A call has no narrative: the volunteered paths become their asked equivalents.
VOICE_MIX: tuple[tuple[Script, float], ...] = (
    (ROUTINE, 0.42), (ROUTINE_SCIATICA, 0.18),
    (URGENT_FEVER, 0.08), (URGENT_HISTORY, 0.12), (URGENT_RISK, 0.05),
    (EMERGENCY_CHEST, 0.05), (EMERGENCY_SADDLE, 0.06), (EMERGENCY_FEVER_IV, 0.04),
)
# Conversations left in the middle (Redis memory per active conversation): routine paths cut short.
HALF_ROUTINE = Script("routine_half", "none", _no(6))


@dataclass
class Request:
    """One signed webhook: what wrk sends byte for byte, and what Python can send for checks."""

    path: str
    params: dict[str, str]
    signature: str
    patient: int  # index of the patient in its stream
    last: bool = False  # the patient's last request

    def body(self) -> bytes:
        return urllib.parse.urlencode(self.params).encode()

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": self.signature,
                "I-Twilio-Idempotency-Token": self.params.get("MessageSid", self.params.get("CallSid", "")),
                "User-Agent": "TwilioProxy/1.1"}

    def raw(self, host: str) -> bytes:
        body = self.body()
        head = [f"POST {self.path} HTTP/1.1", f"Host: {host}"]
        head += [f"{k}: {v}" for k, v in self.headers().items()]
        head += [f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(head).encode() + body


@dataclass
class Patient:
    index: int
    channel: str  # sms | voice
    phone: str
    script: Script
    requests: list[Request] = field(default_factory=list)
    call_sid: str | None = None


class Phones:
    """Unique, possible US numbers for patients (one per conversation in the whole run)."""

    def __init__(self) -> None:
        self._numbers = (f"+1{npa}555{n:04d}" for npa in PATIENT_NPAS for n in range(10000))

    def take(self) -> str:
        try:
            return next(self._numbers)
        except StopIteration:
            raise RuntimeError("out of patient phone numbers: use a shorter run") from None


class Builder:
    """Builds signed requests for one target base URL (ours, floor or bare)."""

    def __init__(self, auth_token: str, host: str, rng: random.Random, phones: Phones) -> None:
        self.validator = RequestValidator(auth_token)
        self.host, self.rng, self.phones = host, rng, phones
        self.nonce = secrets.token_hex(4)
        self._sids = itertools.count(1)
        self._patients = itertools.count()

    # --- patients -------------------------------------------------------------------------

    def patient(self, channel: str, script: Script, *, sms_path: str = "/twilio/sms",
                voice_path: str = "/twilio/voice", narrative: str | None = None,
                spoken: bool | None = None) -> Patient:
        p = Patient(next(self._patients), channel, self.phones.take(), script)
        if channel == "sms":
            for text in self.sms_texts(script, narrative):
                p.requests.append(self._sms(p, sms_path, text))
        else:
            p.call_sid = self._sid("CA")
            p.requests.append(self._call(p, voice_path, self._call_params(p, "ringing")))
            for step, given in enumerate(self.voice_inputs(script, spoken), start=2):
                params = self._call_params(p, "in-progress") | given
                p.requests.append(self._call(p, f"{voice_path}/answer?step={step}", params))
            params = self._call_params(p, "completed") | {
                "CallDuration": str(8 * len(script.answers) + 20), "Duration": "1",
                "CallbackSource": "call-progress-events", "SequenceNumber": "0"}
            p.requests.append(self._call(p, f"{voice_path}/status", params))
        p.requests[-1].last = True
        return p

    def sms_texts(self, script: Script, narrative: str | None = None) -> list[str]:
        pick = self.rng.choice
        texts = [narrative or pick(narratives(script))]
        if script.age:
            texts.append(str(self.rng.randint(19, 84)))
        texts += [pick(YES) if yes else pick(NO) for yes in script.answers]
        if script.thanks:
            texts.append(pick(THANKS))
        return texts

    def voice_inputs(self, script: Script, spoken: bool | None = None) -> list[dict[str, str]]:
        """Gather results: the age keyed, then yes/no keyed (1/2) or spoken, one style per caller."""
        spoken = self.rng.random() < 0.4 if spoken is None else spoken
        inputs = [{"Digits": str(self.rng.randint(19, 84)), "FinishedOnKey": "#", "msg": "Gather End"}]
        for yes in script.answers:
            if spoken:
                inputs.append({"SpeechResult": "Yes." if yes else "No.", "Confidence": "0.92",
                               "Language": "en-US"})
            else:
                inputs.append({"Digits": "1" if yes else "2", "FinishedOnKey": "", "msg": "Gather End"})
        return inputs

    # --- requests -------------------------------------------------------------------------

    def _sid(self, prefix: str) -> str:
        return f"{prefix}{self.nonce}{next(self._sids):024x}"

    def _sign(self, path: str, params: dict[str, str], patient: Patient) -> Request:
        signature = self.validator.compute_signature(f"http://{self.host}{path}", params)
        return Request(path, params, signature, patient.index)

    def _sms(self, p: Patient, path: str, text: str) -> Request:
        sid = self._sid("SM")
        params = {
            "ToCountry": "US", "ToState": "DC", "SmsMessageSid": sid, "NumMedia": "0",
            "ToCity": "WASHINGTON", "FromZip": "02108", "SmsSid": sid, "FromState": "MA",
            "SmsStatus": "received", "FromCity": "BOSTON", "Body": text, "FromCountry": "US",
            "To": LINE_NUMBER, "ToZip": "20001", "NumSegments": "1", "MessageSid": sid,
            "AccountSid": ACCOUNT_SID, "From": p.phone, "ApiVersion": "2010-04-01",
        }
        return self._sign(path, params, p)

    def _call_params(self, p: Patient, status: str) -> dict[str, str]:
        assert p.call_sid is not None
        return {
            "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": p.call_sid,
            "CallStatus": status, "Called": LINE_NUMBER, "CalledCity": "WASHINGTON", "CalledCountry": "US",
            "CalledState": "DC", "CalledZip": "20001", "Caller": p.phone, "CallerCity": "BOSTON",
            "CallerCountry": "US", "CallerState": "MA", "CallerZip": "02108", "Direction": "inbound",
            "From": p.phone, "FromCity": "BOSTON", "FromCountry": "US", "FromState": "MA",
            "FromZip": "02108", "To": LINE_NUMBER, "ToCity": "WASHINGTON", "ToCountry": "US",
            "ToState": "DC", "ToZip": "20001",
        }

    def _call(self, p: Patient, path: str, params: dict[str, str]) -> Request:
        return self._sign(path, params, p)


def narratives(script: Script) -> tuple[str, ...]:
    """The first texts a patient on this script may send."""
    return {
        "routine": ROUTINE_NARRATIVES, "sciatica": SCIATICA_NARRATIVES,
        "urgent_volunteered": URGENT_VOLUNTEERED, "emergency": EMERGENCY_NARRATIVES,
        "emergency_volunteered": EMERGENCY_VOLUNTEERED,
    }[script.narrative]


def weighted(mix: tuple[tuple[Script, float], ...], rng: random.Random) -> Iterator[Script]:
    scripts, weights = zip(*mix)
    while True:
        yield rng.choices(scripts, weights)[0]


def mean_length(builder: Builder, channel: str, mix: tuple[tuple[Script, float], ...]) -> float:
    """Mean requests per conversation of a mix (exact: from the scripts' lengths)."""
    total = sum(w for _, w in mix)
    extra = 1 if channel == "sms" else 2  # SMS: the narrative; voice: the call and the status callback
    return sum(w * (len(s.answers) + s.age + s.thanks + extra if channel == "sms" else len(s.answers) + 1 + extra)
               for s, w in mix) / total


def interleave(patients: Iterator[Patient], slots: int, capacity: int, mean_len: float,
               min_spacing: int = 16) -> list[Request]:
    """Round robin over `slots`; each slot plays patients back to back.

    The first `min_spacing` slots start at once and the others join over one mean conversation
    length, so a patient's consecutive requests are always at least `min_spacing` apart (about
    `slots` apart once all have joined) and the mix of first, middle and last messages is steady
    early on. Returns at most `capacity` requests.
    """
    lanes: list[list[Request]] = [[] for _ in range(slots)]
    eager = min(slots, min_spacing)
    delays = [0 if s < eager else int((s - eager + 1) * mean_len / max(1, slots - eager)) for s in range(slots)]
    rounds_needed = capacity // max(1, slots) + int(mean_len) + 2
    for s in range(slots):
        lane = lanes[s]
        while len(lane) + delays[s] < rounds_needed:
            lane.extend(next(patients).requests)
    return _round_robin(lanes, delays, capacity)


def round_robin(patients: list[Patient], slots: int) -> list[Request]:
    """A finite set of patients, spread over `slots` lanes, every request sent once."""
    lanes: list[list[Request]] = [[] for _ in range(slots)]
    for i, patient in enumerate(patients):
        lanes[i % slots].extend(patient.requests)
    return _round_robin(lanes, [0] * slots, sum(len(p.requests) for p in patients))


def _round_robin(lanes: list[list[Request]], delays: list[int], capacity: int) -> list[Request]:
    slots = len(lanes)
    last_round = max((len(lane) + d for lane, d in zip(lanes, delays)), default=0)
    stream: list[Request] = []
    for r in itertools.count():
        if len(stream) >= capacity or r >= last_round:
            break
        for s in range(slots):
            k = r - delays[s]
            if 0 <= k < len(lanes[s]):
                stream.append(lanes[s][k])
                if len(stream) >= capacity:
                    break
    return stream


def patients(builder: Builder, channel: str, mix: tuple[tuple[Script, float], ...], rng: random.Random,
             **paths: str) -> Iterator[Patient]:
    for script in weighted(mix, rng):
        yield builder.patient(channel, script, **paths)
