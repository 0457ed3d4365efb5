"""GSM-7: the SMS alphabet in which one segment holds 160 characters ([SMS] in CLINICAL.md)."""
from __future__ import annotations

SEGMENT = 160
_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension characters take two septets (an escape plus the character).
_EXTENDED = set("^{}\\[~]|€\f")


def non_gsm_characters(text: str) -> list[str]:
    return sorted({c for c in text if c not in _BASIC and c not in _EXTENDED})


def septets(text: str) -> int:
    return sum(2 if c in _EXTENDED else 1 for c in text)


def fits_one_segment(text: str) -> bool:
    return not non_gsm_characters(text) and septets(text) <= SEGMENT
