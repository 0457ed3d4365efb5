"""Escalations: page the on-call chain until a clinician takes the case.

An escalation starts with a copy of its level's chain (flows/escalation.yaml). The database says
which step is next and when it is due; jobs and the periodic sweep both just call `run_due`, and
every step and alert is claimed atomically, so a retried job, two workers or a killed worker never
page twice and never lose a page.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import phonenumbers

from telehealth.alerts import FAILED_STATUSES, Alerts, Target
from telehealth.chain import Chain, Step
from telehealth.jobs import JobsUnavailable
from telehealth.paging import ConsolePager, Pager, PagingFailed, RecipientOptedOut
from telehealth.roster import OnCall, Roster

if TYPE_CHECKING:
    from telehealth.services import Services

log = logging.getLogger(__name__)

RUN_DUE_JOB = "workers.escalations.run_due"
DELIVER_JOB = "workers.escalations.deliver"
FAILURE_JOB = "workers.escalations.alert_failure"
# A claim older than this means its sender died: the sweep takes the alert over.
CLAIM_STALE_AFTER = timedelta(seconds=30)
PENDING_STUCK_AFTER = timedelta(seconds=15)
MAX_ATTEMPTS = 3
NOBODY = "console"  # where a page goes when nobody is on call and no supervisor number is set


class EscalationMissing(Exception):
    """A job names an escalation or alert the database does not hold."""


def open_escalation(services: "Services", conversation_id: int, *, level: str, reason: str,
                    summary: str, at: datetime | None = None, late: bool = False) -> int:
    """Record the escalation with its chain and queue its first step. Never waits for a page.

    `at` is when the case was flagged; `late` says it is written only now, from the outbox,
    after a database outage: its steps are due from `at`, so what fell due meanwhile runs at once.
    """
    flagged = at or services.clock()
    escalation_id, created = services.records.create_escalation(
        conversation_id, level=level, reason=reason, summary=summary,
        chain=services.chains[level], at=flagged,
    )
    if created:
        detail: dict[str, Any] = {"level": level, "reason": reason}
        if late:
            detail["written_late"] = True  # the database was down when the case was flagged
        services.records.add_escalation_event(escalation_id, "started", detail, at=flagged)
        _enqueue(services, RUN_DUE_JOB, escalation_id)
        log.info("escalation started", extra={"escalation_id": escalation_id, "conversation_id": conversation_id})
    return escalation_id


def _enqueue(services: "Services", job: str, *args: Any) -> None:
    """Queue a job; if the queue (Redis) is down, the sweep runs the same work from the database."""
    try:
        services.jobs.enqueue(job, *args)
    except JobsUnavailable as exc:
        log.error("queue unavailable: the sweep will run this", extra={"error": type(exc).__name__, "job": job})


def _enqueue_at(services: "Services", when: datetime, job: str, *args: Any) -> None:
    try:
        services.jobs.enqueue_at(when, job, *args)
    except JobsUnavailable as exc:
        log.error("queue unavailable: the sweep will run this", extra={"error": type(exc).__name__, "job": job})


def run_due(services: "Services", escalation_id: int) -> None:
    """Run every step of this escalation that is due now (several, after an outage)."""
    alerts, records = Alerts(services.records), services.records
    while True:
        now = services.clock()
        escalation = records.get_escalation(escalation_id)
        if escalation is None:
            raise EscalationMissing(f"escalation {escalation_id} not found")
        due = escalation["next_due_at"]
        if escalation["status"] != "pending" or due is None or datetime.fromisoformat(due) > now:
            return
        chain, index = Chain(escalation["chain"]), escalation["next_step"]
        started = datetime.fromisoformat(escalation["created_at"])
        if index >= chain.total_steps:
            if alerts.claim_step(escalation_id, index, index, None, now, [], "", finished=True) is not None:
                records.add_escalation_event(escalation_id, "unacknowledged",
                                             {"after_rounds": chain.rounds}, at=now)
                log.warning("escalation unacknowledged", extra={"escalation_id": escalation_id})
            return
        step = chain.step(index)
        targets, gap = _targets(services, step, now)
        body = alert_text(escalation, _patient_phone(services, escalation))
        next_due = chain.due_at(started, index + 1)
        ids = alerts.claim_step(escalation_id, index, index + 1, next_due, now, targets, body)
        if ids is None:
            continue  # another process ran this step; look again
        if gap:
            records.add_escalation_event(escalation_id, "roster_gap", {"tier": gap}, at=now)
        records.add_escalation_event(escalation_id, "step", {
            "step": index, "round": step.round + 1, "to": step.to,
            "pages": [{"name": t.name, "channel": t.channel} for t in targets]}, at=now)
        for alert_id in ids:
            _enqueue(services, DELIVER_JOB, alert_id)  # not queued: the sweep sends it as stuck
        _enqueue_at(services, next_due, RUN_DUE_JOB, escalation_id)


def deliver(services: "Services", alert_id: int) -> None:
    """Hand one alert to the pager, once. Raises on failure so RQ records and retries it."""
    alerts, records = Alerts(services.records), services.records
    now = services.clock()
    claim = alerts.claim(alert_id, now, CLAIM_STALE_AFTER)
    if claim is None:
        return  # sent already, or another worker is sending it
    alert = claim.alert
    escalation = records.get_escalation(alert["escalation_id"])
    if escalation is None:
        raise EscalationMissing(f"escalation {alert['escalation_id']} not found")
    if alert["kind"] == "page" and escalation["status"] not in ("pending", "unacknowledged"):
        alerts.mark(alert_id, "canceled", now, error_code="case-closed")
        return
    try:
        # A dead sender, or an earlier try that timed out after Twilio took the page, may have
        # handed it over already: ask Twilio before sending again.
        if claim.reclaimed or alert["attempts"] > 1:
            since = datetime.fromisoformat(alert["created_at"])
            sid = services.pager.find_sent(alert["recipient"], alert["channel"], since, body=_content(services, alert))
            # A page another alert already owns (another case paging the same clinician) is not ours.
            if sid is not None and not alerts.owns_sid(sid, other_than=alert_id):
                _sent(services, alert, sid, now, recovered=True)
                return
        sid = _send(services, alert)
    except RecipientOptedOut as exc:
        _fall_back_to_voice(services, alert, escalation, now, exc)
        return
    except PagingFailed as exc:
        _failed(services, alert, now, exc)
        raise
    _sent(services, alert, sid, now)


def delivery_status(services: "Services", alert_id: int, status: str, error_code: str | None) -> None:
    """A Twilio status callback. Statuses only move forward; a failure moves the chain on at once."""
    alerts, now = Alerts(services.records), services.clock()
    alert = alerts.get(alert_id)
    if alert is None or not alerts.mark(alert_id, status, now, error_code=error_code):
        return
    services.records.add_escalation_event(alert["escalation_id"], "delivery", {
        "alert": alert_id, "to": alert["recipient_name"], "channel": alert["channel"], "status": status,
        **({"error": error_code} if error_code else {})}, at=now)
    if status in FAILED_STATUSES and alert["kind"] == "page":
        if error_code == "21610" and alert["channel"] == "sms":
            escalation = services.records.get_escalation(alert["escalation_id"])
            _fall_back_to_voice(services, alert, escalation or {}, now, RecipientOptedOut())
        elif alerts.hurry(alert["escalation_id"], alert["step"], now):
            services.jobs.enqueue(RUN_DUE_JOB, alert["escalation_id"])


def acknowledge(services: "Services", escalation_id: int, by_phone: str, by_name: str) -> str:
    """Take a case. Returns 'taken', 'yours', 'taken_by:<name>', 'closed' or 'unknown'."""
    alerts, records, now = Alerts(services.records), services.records, services.clock()
    escalation = records.get_escalation(escalation_id)
    if escalation is None:
        return "unknown"
    if alerts.acknowledge(escalation_id, by_name, now):
        others = {a["recipient"]: a for a in alerts.for_escalation(escalation_id)
                  if a["kind"] == "page" and a["recipient"] not in (by_phone, NOBODY)}
        notice = f"Case {escalation_id} was taken by {by_name}. No need to act."
        targets = [Target(a["recipient"], a["recipient_name"], "sms", a["clinician_id"]) for a in others.values()]
        for alert_id in alerts.add_notices(escalation_id, targets, notice, now):
            services.jobs.enqueue(DELIVER_JOB, alert_id)
        log.info("escalation acknowledged", extra={"escalation_id": escalation_id})
        return "taken"
    # Read again: someone may have taken it between our first read and our attempt.
    escalation = records.get_escalation(escalation_id) or escalation
    if escalation["acknowledged_by"] == by_name:
        return "yours"
    if escalation["status"] == "acknowledged":
        return f"taken_by:{escalation['acknowledged_by']}"
    return "closed"


def sweep(services: "Services") -> None:
    """The backstop that does not depend on RQ's scheduler: run what is due, resend what is stuck."""
    alerts, now = Alerts(services.records), services.clock()
    for escalation_id in alerts.due_escalations(now):
        _quietly(run_due, services, escalation_id)
    for alert_id in alerts.stuck(now, pending_for=PENDING_STUCK_AFTER, claimed_for=CLAIM_STALE_AFTER):
        _quietly(deliver, services, alert_id)


def alert_text(escalation: dict[str, Any], patient_phone: str) -> str:
    """Only what the clinician needs: level, case code, red flags, callback number, how to take it."""
    level = str(escalation["level"]).upper()
    flags = escalation["summary"]
    stopped = " Patient stopped replying." if escalation["reason"] == "abandoned" else ""
    return (f"{level} back pain {escalation['id']}: {flags}.{stopped} Call {readable(patient_phone)}. "
            f"Reply 1 to take it.")


def readable(phone: str) -> str:
    try:
        number = phonenumbers.parse(phone, None)
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return phone


def alert_failure(services: "Services", endpoint: str, caller: str) -> None:
    """A webhook failed mid-conversation: ask whoever is on call to phone the patient back."""
    who = f"Call {readable(caller)} back." if caller else "Caller unknown."
    _fault_page(services, f"LINE FAULT: the triage line failed to answer a patient ({endpoint}). {who}", endpoint)


def waiting_alert(level: str, caller: str, services: "Services | None" = None) -> None:
    """RQ job: a case was flagged while the records database is down (telehealth/outbox.py).

    Its escalation is written, and the chain paged, when the database is back; until then the
    roster cannot be read, so this tells the supervisor (or whoever can be read as on call).
    """
    if services is None:
        from telehealth import services as services_module

        services = services_module.for_worker()
    who = f"Call {readable(caller)} back." if caller else "Caller unknown."
    text = (f"LINE FAULT: records database down. An {level.upper()} back pain case waits to be paged. "
            f"{who}")
    _fault_page(services, text, "case waiting for the database")


def _fault_page(services: "Services", text: str, endpoint: str) -> None:
    step = Step(0, 0, 0, "primary", ("sms",))
    try:
        targets, _ = _targets(services, step, services.clock())
    except Exception:  # the roster is in the database, which may be what failed: page anyway
        log.error("could not read the roster for a failure alert", extra={"endpoint": endpoint})
        phone = services.settings.supervisor_phone
        targets = [Target(phone or NOBODY, "supervisor" if phone else "nobody on call", "sms")]
    for target in targets:
        services.pager.send_sms(target.recipient, text)
    # The pages are out: failing now (the database may be what broke) would make the webhook's
    # fallback, or RQ's retries, page everyone again for the same fault.
    try:
        services.records.audit("failure_alert_sent", detail={"endpoint": endpoint, "paged": len(targets)})
    except Exception:
        log.error("could not record the failure alert", extra={"endpoint": endpoint})


# --- internals -----------------------------------------------------------------------------


def _targets(services: "Services", step: Step, now: datetime) -> tuple[list[Target], str | None]:
    """Who this step pages, and the tier that had nobody on call (then the supervisor is paged)."""
    people: list[OnCall] = []
    if step.to != "supervisor":
        people = Roster(services.records).on_call(step.to, now)
    gap = None if people or step.to == "supervisor" else step.to
    if not people:
        supervisor = services.settings.supervisor_phone
        people = [OnCall(None, "supervisor", supervisor)] if supervisor else [OnCall(None, "nobody on call", NOBODY)]
        if not supervisor:
            gap = gap or step.to
    targets: list[Target] = []
    for person in people:
        for channel in step.via if person.phone != NOBODY else ("sms",):
            # An SMS opt-out is worked around by calling instead.
            channel = "voice" if channel == "sms" and person.sms_opted_out else channel
            target = Target(person.phone, person.name, channel, person.clinician_id)
            if target not in targets:
                targets.append(target)
    return targets, gap


def _send(services: "Services", alert: dict[str, Any]) -> str:
    try:
        return _send_with(services.pager, services, alert)
    except PagingFailed:
        if alert["recipient"] != NOBODY:
            raise
        # Nobody on call and no supervisor, and the carrier cannot deliver to nobody: print the
        # page where the operator sees the service's output. Failing instead would fail every
        # step at once and run the whole chain out in seconds, with nobody having seen a page.
        log.error("nobody on call and no SUPERVISOR_PHONE: the page is printed",
                  extra={"escalation_id": alert["escalation_id"], "alert_id": alert["id"]})
        return _send_with(ConsolePager(), services, alert)


def _send_with(pager: Pager, services: "Services", alert: dict[str, Any]) -> str:
    base = services.settings.public_base_url
    callback = f"{base}/twilio/alerts/status?alert={alert['id']}" if base else None
    if alert["channel"] == "sms":
        return pager.send_sms(alert["recipient"], alert["body"], status_callback=callback)
    return pager.place_call(alert["recipient"], twiml_url=_content(services, alert), status_callback=callback)


def _content(services: "Services", alert: dict[str, Any]) -> str:
    """What identifies this alert's page: the SMS text, or the alert call's TwiML URL."""
    if alert["channel"] == "sms":
        return str(alert["body"])
    return f"{services.settings.public_base_url}/twilio/alerts/call?alert={alert['id']}"


def _sent(services: "Services", alert: dict[str, Any], sid: str, now: datetime, *, recovered: bool = False) -> None:
    """Record the hand-over on the alert and the timeline (also one a dead sender made)."""
    Alerts(services.records).mark(alert["id"], "queued", now, sid=sid)
    detail = {"alert": alert["id"], "to": alert["recipient_name"], "channel": alert["channel"], "sid": sid,
              **({"recovered": True} if recovered else {})}
    services.records.add_escalation_event(
        alert["escalation_id"], "alert_sent" if alert["kind"] == "page" else "notice_sent", detail, at=now)


def _failed(services: "Services", alert: dict[str, Any], now: datetime, exc: PagingFailed) -> None:
    alerts = Alerts(services.records)
    detail = {"alert": alert["id"], "to": alert["recipient_name"], "channel": alert["channel"],
              "error": exc.code or type(exc).__name__, "attempt": alert["attempts"]}
    if exc.transient and alert["attempts"] < MAX_ATTEMPTS:
        alerts.release(alert["id"], now)
        services.records.add_escalation_event(alert["escalation_id"], "alert_retry", detail, at=now)
        return
    alerts.mark(alert["id"], "failed", now, error_code=exc.code or "error")
    services.records.add_escalation_event(alert["escalation_id"], "alert_failed", detail, at=now)
    if alert["kind"] == "page" and alerts.hurry(alert["escalation_id"], alert["step"], now):
        _enqueue(services, RUN_DUE_JOB, alert["escalation_id"])


def _fall_back_to_voice(services: "Services", alert: dict[str, Any], escalation: dict[str, Any],
                        now: datetime, exc: RecipientOptedOut) -> None:
    alerts = Alerts(services.records)
    alerts.mark(alert["id"], "failed", now, error_code=exc.code)
    Roster(services.records).mark_sms_opted_out(alert["recipient"])
    services.records.add_escalation_event(alert["escalation_id"], "sms_opted_out",
                                          {"to": alert["recipient_name"], "fallback": "voice"}, at=now)
    if alert["kind"] != "page":
        return
    target = Target(alert["recipient"], alert["recipient_name"], "voice", alert["clinician_id"])
    fallback = alerts.add_fallback(alert["escalation_id"], alert["step"], target, alert["body"], now)
    if fallback is not None:
        services.jobs.enqueue(DELIVER_JOB, fallback)


def _patient_phone(services: "Services", escalation: dict[str, Any]) -> str:
    conversation = services.records.get_conversation(escalation["conversation_id"])
    return conversation["phone"] if conversation else "unknown"


def _quietly(job: Any, services: "Services", item_id: int) -> None:
    try:
        job(services, item_id)
    except Exception as exc:  # the sweep must go on to the next item; the failure is on the timeline
        log.warning("sweep item failed", extra={"error": type(exc).__name__, "escalation_id": item_id})

