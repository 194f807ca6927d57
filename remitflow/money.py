"""Money parsing. Amounts are Decimal, never float; X12 and BAI2 write them differently."""

from __future__ import annotations

from decimal import Decimal

CENT = Decimal("0.01")
ZERO = Decimal(0)


class AmountError(ValueError):
    """An amount field that is not a number."""


MAX_DIGITS = 15  # ten trillion dollars and cents: more is not a payment, it is damage


def parse_money(text: str) -> Decimal:
    """A money amount written with a decimal point: at most two decimals, no exponent, bounded.

    Decimal alone would accept ``1E5000``, ``1_000``, ``NaN`` or ``100.005``; a payment is none
    of these, and rounding one to cents would silently change it.
    """
    s = text.strip()
    digits = s.lstrip("+-")
    dot = digits.find(".")
    whole, frac = (digits, "") if dot < 0 else (digits[:dot], digits[dot + 1 :])
    if (
        not (whole or frac)
        or len(frac) > 2
        or len(whole) > MAX_DIGITS
        or not (whole.isdigit() or not whole)
        or not (frac.isdigit() or not frac)
        or not whole.isascii()
        or not frac.isascii()
        or len(s) - len(digits) > 1
    ):
        raise AmountError("not an amount in dollars and cents")
    return Decimal(s)


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
        raise AmountError("not an implied-decimal amount")  # the text is not quoted: no PHI
    return (Decimal(s) * sign).scaleb(-2)


def cents(amount: Decimal) -> int:
    """Integer cents, for exact sums and keys."""
    return int((amount * 100).to_integral_value())
