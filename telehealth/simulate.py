"""`telehealth simulate`: play the patient in a terminal against a running line, over HTTP.

Every request is signed the way Twilio signs it, so the server cannot tell this from a real
phone. SMS mode sends each typed line as a text. Voice mode follows the TwiML like Twilio does:
it prints what would be spoken, answers each <Gather> with a typed line (digits are keyed,
anything else is speech, an empty line is silence) and stops at <Hangup/>.
"""
from __future__ import annotations

import re
import sys
import time
import uuid
from typing import TextIO
from urllib.parse import urljoin
from xml.etree import ElementTree

import requests
from twilio.request_validator import RequestValidator

LINE_NUMBER = "+12025550100"  # the "To" of every webhook: the line's own number
ACCOUNT_SID = "AC" + "0" * 32
END_WORDS = {"/quit", "/exit"}
VOICE_END_WORDS = END_WORDS | {"quit", "exit"}  # on SMS plain QUIT is Twilio's opt-out keyword
KEYS = re.compile(r"^[0-9*#]+$")
SPEECH_CONFIDENCE = "0.9"
MAX_CALL_REQUESTS = 200


class LineError(Exception):
    """The server refused a request or did not answer with TwiML."""


class Webhooks:
    """Posts form-encoded, Twilio-signed webhooks to one server and parses the TwiML it returns."""

    def __init__(self, base_url: str, auth_token: str, *, timeout: float = 20.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.timeout = timeout
        self.http = session or requests.Session()

    def url(self, path: str) -> str:
        return self.base_url + path

    def post(self, url: str, params: dict[str, str]) -> requests.Response:
        """POST `params` to an absolute URL, signed over that URL and the params."""
        signature = self.validator.compute_signature(url, params)
        return self.http.post(url, data=params, headers={"X-Twilio-Signature": signature},
                              timeout=self.timeout)

    def twiml(self, url: str, params: dict[str, str]) -> ElementTree.Element:
        response = self.post(url, params)
        if response.status_code == 403:
            raise LineError("the server refused the signature (403): is --auth-token the server's "
                            "TWILIO_AUTH_TOKEN, and --base-url the URL it signs against?")
        if response.status_code == 204 or not response.content.strip():
            return ElementTree.Element("Response")
        if response.status_code != 200:
            raise LineError(f"HTTP {response.status_code} from {url}")
        try:
            root = ElementTree.fromstring(response.content)
        except ElementTree.ParseError as exc:
            raise LineError(f"not TwiML from {url}: {exc}") from exc
        if root.tag != "Response":
            raise LineError(f"not TwiML from {url}: root element <{root.tag}>")
        return root


def message_texts(root: ElementTree.Element) -> list[str]:
    """The texts of a messaging response: <Message>text</Message> or <Message><Body>text</Body>."""
    texts = []
    for message in root.iter("Message"):
        body = message.find("Body")
        texts.append(((body.text if body is not None else message.text) or "").strip())
    return texts


def gather_params(gather: ElementTree.Element, typed: str) -> dict[str, str]:
    """What Twilio posts for a typed answer: keys as Digits (cut like Twilio), words as speech."""
    if KEYS.match(typed):
        finish = gather.get("finishOnKey", "#")
        digits = typed.split(finish)[0] if finish else typed
        if gather.get("numDigits"):
            digits = digits[: int(gather.get("numDigits", "1"))]
        return {"Digits": digits}
    return {"SpeechResult": typed, "Confidence": SPEECH_CONFIDENCE}


class Chat:
    def __init__(self, hooks: Webhooks, phone: str, input: TextIO, output: TextIO) -> None:
        self.hooks, self.phone, self.input, self.output = hooks, phone, input, output

    def say(self, text: str) -> None:
        print(text, file=self.output, flush=True)

    def ask(self, prompt: str) -> str | None:
        """One typed line, or None at end of input."""
        self.output.write(prompt)
        self.output.flush()
        line = self.input.readline()
        if not line:
            self.say("")
            return None
        line = line.rstrip("\r\n")
        if not self.input.isatty():
            self.say(line)  # piped or scripted input: show it, as a terminal would
        return line

    # --- SMS -----------------------------------------------------------------------------

    def sms(self) -> int:
        self.say(f"Texting {self.hooks.base_url} from {self.phone}. "
                 "Type a text and press Enter; Ctrl-D or /quit ends.")
        url = self.hooks.url("/twilio/sms")
        while True:
            typed = self.ask("you> ")
            if typed is None or typed.strip().lower() in END_WORDS:
                return 0
            params = {"From": self.phone, "To": LINE_NUMBER, "Body": typed, "NumMedia": "0",
                      "MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": ACCOUNT_SID}
            texts = message_texts(self.hooks.twiml(url, params))
            for text in texts:
                self.say(f"line> {text}")
            if not texts:
                self.say("line> (no reply)")

    # --- voice ---------------------------------------------------------------------------

    def voice(self) -> int:
        self.say(f"Calling {self.hooks.base_url} from {self.phone}. At each question type digits "
                 "(1 yes, 2 no, 9 repeat, 45# for a number) or words (spoken); an empty line is "
                 "silence; Ctrl-D or quit hangs up.")
        call = {"CallSid": "CA" + uuid.uuid4().hex, "From": self.phone, "To": LINE_NUMBER,
                "AccountSid": ACCOUNT_SID, "Direction": "inbound"}
        started = time.monotonic()
        url = self.hooks.url("/twilio/voice")
        root = self.hooks.twiml(url, {**call, "CallStatus": "ringing"})
        try:
            self._follow(call, url, root)
        finally:
            duration = str(int(time.monotonic() - started))
            self.hooks.post(self.hooks.url("/twilio/voice/status"),
                            {**call, "CallStatus": "completed", "CallDuration": duration})
        self.say("(call ended)")
        return 0

    def _follow(self, call: dict[str, str], url: str, root: ElementTree.Element) -> None:
        """Run TwiML documents verb by verb until the call ends."""
        in_progress = {**call, "CallStatus": "in-progress"}
        for _ in range(MAX_CALL_REQUESTS):
            next_request: tuple[str, dict[str, str]] | None = None
            for verb in root:
                if verb.tag == "Say":
                    self.say(f"line: {(verb.text or '').strip()}")
                elif verb.tag == "Gather":
                    for said in verb.iter("Say"):
                        self.say(f"line: {(said.text or '').strip()}")
                    typed = self.ask("you> ")
                    if typed is None or typed.strip().lower() in VOICE_END_WORDS:
                        return  # the caller hangs up
                    typed = typed.strip()
                    if typed or verb.get("actionOnEmptyResult") == "true":
                        params = gather_params(verb, typed) if typed else {}
                        next_request = (urljoin(url, verb.get("action") or url), {**in_progress, **params})
                        break
                    self.say("(silence)")  # Twilio goes on to the verb after the <Gather>
                elif verb.tag == "Redirect":
                    next_request = (urljoin(url, (verb.text or "").strip() or url), in_progress)
                    break
                elif verb.tag in {"Hangup", "Reject"}:
                    return
            if next_request is None:
                return  # a document that runs out of verbs ends the call
            url, params = next_request
            root = self.hooks.twiml(url, params)
        raise LineError(f"the call did not end after {MAX_CALL_REQUESTS} requests")


def run(base_url: str, auth_token: str, channel: str = "sms", phone: str = "+16175550100",
        input: TextIO | None = None, output: TextIO | None = None) -> int:
    """Chat with the line at `base_url` as the patient `phone`; return the exit status."""
    output = output or sys.stdout
    if not auth_token:
        print("simulate needs the server's TWILIO_AUTH_TOKEN (--auth-token; `telehealth serve` "
              "prints it)", file=output)
        return 2
    chat = Chat(Webhooks(base_url, auth_token), phone, input or sys.stdin, output)
    try:
        return chat.voice() if channel == "voice" else chat.sms()
    except KeyboardInterrupt:
        return 0
    except LineError as exc:
        print(f"error: {exc}", file=output)
        return 1
    except requests.RequestException as exc:
        print(f"error: cannot reach {base_url}: {type(exc).__name__}", file=output)
        return 1
