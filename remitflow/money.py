"""Money parsing. Amounts are Decimal, never float; X12 and BAI2 write them differently."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

CENT = Decimal("0.01")
ZERO = Decimal(0)


class AmountError(ValueError):
    """An amount field that is not a number."""


def parse_decimal(text: str) -> Decimal:
    """X12 R-type: optional sign, explicit decimal point (``945``, ``945.00``, ``-1.27``)."""
    s = text.strip()
    if not s:
        raise AmountError("empty amount")
    try:
        d = Decimal(s)
    except InvalidOperation:
        raise AmountError(f"not a number: {s[:20]!r}") from None
    if not d.is_finite():
        raise AmountError(f"not a finite number: {s[:20]!r}")
    return d


def parse_implied_cents(text: str) -> Decimal:
    """BAI2 amounts: an integer of cents with an optional sign (``+4350000`` = 43,500.00)."""
    s = text.strip()
    if not s:
        raise AmountError("empty amount")
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if not s.isdigit() or not s.isascii():
        raise AmountError(f"not an implied-decimal amount: {text[:20]!r}")
    return (Decimal(s) * sign).scaleb(-2)


def cents(amount: Decimal) -> int:
    """Integer cents, for exact sums and keys."""
    return int((amount * 100).to_integral_value())
