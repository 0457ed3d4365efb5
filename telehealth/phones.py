"""Phone numbers in E.164, read with the `phonenumbers` library."""
from __future__ import annotations

import phonenumbers


def to_e164(raw: str, region: str = "US") -> str | None:
    """The number in E.164, or None when it is not a possible phone number."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def masked(e164: str) -> str:
    """For screens and alerts that need only the last four digits: '+1 *** *** 1234'."""
    return f"{e164[:2]} *** *** {e164[-4:]}" if len(e164) > 6 else "***"
