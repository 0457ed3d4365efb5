"""Back-pain triage line: Twilio webhooks, a red-flag protocol as data, clinician escalation."""
