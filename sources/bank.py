"""Bank facts shared by the BAI2 and camt.053 parsers: text, identity, classification.

What bank statement text says about a payment: the ACH addenda's TRN, payer and company.

Banks wrap the CCD+ addenda (``TRN*1*<trace>*<payer
id>\\``) in their own text, split it across 16/88 records or ``Ustrd`` lines, and add spaces or
line breaks inside it, so the search runs over the text with whitespace removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from remitflow.events import Category, Direction
from remitflow.identity import content_id, normalize_trace

# TRN*1*<trace 1..50>*<originating company id 1..10>[*<supplemental>]; the segment ends at a
# terminator (\ or ~), another element, or the end of the text.
_TRN = re.compile(r"TRN\*1\*([^*\\~]{1,50})\*([0-9A-Za-z]{1,10})", re.IGNORECASE)
_HCCLAIMPMT = "HCCLAIMPMT"
_KV_NAME = re.compile(
    r"(?:ORIG(?:INATOR)?\s*CO(?:MPANY)?\s*NAME|CO(?:MPANY)?\s*NAME|FROM)\s*[:=]\s*"
    r"([A-Za-z0-9&.,' -]{2,40}?)(?=\s{2,}|\s*[,;]|\s+[A-Z ]{2,20}\s*[:=]|$)",
    re.IGNORECASE,
)
# Originating company id: 9 digits (EIN) or 10 ("1" + EIN). Digits only, so that "Client Ref
# ID: GSV0DL6RKT" and other bank references are not taken for a payer.
_KV_ID = re.compile(
    r"(?:ORIG(?:INATOR)?\s*ID|CO(?:MPANY)?\s*ID|ID)\s*[:=]\s*([0-9]{9,10})\b", re.IGNORECASE
)
_KV_DESC = re.compile(
    r"(?:ENTRY\s*DESC(?:RIPTION)?|DESC)\s*[:=]\s*([A-Za-z0-9 ]{1,10}?)(?=\s*[,;]|\s{2,}|$)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class TextFacts:
    trace_number: str | None = None
    trace_normalized: str | None = None
    payer_id: str | None = None
    company_name: str | None = None
    company_id: str | None = None
    entry_description: str | None = None

    @property
    def is_claim_payment(self) -> bool:
        return self.trace_number is not None or self.entry_description == _HCCLAIMPMT


_NO_FACTS = TextFacts()


def extract(text: str) -> TextFacts:
    """Pull trace, payer id, company name/id and entry description out of free bank text."""
    # Every pattern below needs "*" (TRN), ":" or "=" (key: value) or HCCLAIMPMT: most bank
    # text (sweeps, fees, card settlements) has none, and skipping the regexes halves the cost.
    if not text or (
        "*" not in text and ":" not in text and "=" not in text and _HCCLAIMPMT not in text.upper()
    ):
        return _NO_FACTS
    squeezed = "".join(text.split())
    trace = payer = None
    m = _TRN.search(squeezed)
    if m:
        trace, payer = m.group(1), m.group(2)
    upper = text.upper()
    desc: str | None = None
    name: str | None = None
    pos = upper.find(_HCCLAIMPMT)
    if pos >= 0:
        desc = _HCCLAIMPMT
        # NACHA layout as banks print it: "<COMPANY NAME> HCCLAIMPMT <SEC>" (name before it).
        before = text[:pos].strip(" ,;:-")
        if before and "TRN*" not in before.upper():
            name = " ".join(before.split()[-6:]) or None
    else:
        dm = _KV_DESC.search(text)
        if dm:
            desc = dm.group(1).strip() or None
    if name is None:
        nm = _KV_NAME.search(text)
        if nm:
            name = " ".join(nm.group(1).split()) or None
    im = _KV_ID.search(text)
    company_id = im.group(1) if im else None
    if payer is None and company_id is not None:
        payer = company_id
    return TextFacts(
        trace_number=trace,
        trace_normalized=normalize_trace(trace) if trace else None,
        payer_id=payer,
        company_name=name,
        company_id=company_id or payer,
        entry_description=desc,
    )


# --- identity -------------------------------------------------------------------------------


def bank_transaction_id(
    account: str,
    as_of_date: date,
    bank_reference: str | None,
    amount: Decimal,
    type_code: str,
    *,
    detail: str = "",
    ordinal: int = 0,
) -> str:
    """Identity of a bank transaction across files (intraday then final report, re-sent files).

    Account, as-of date, bank reference, amount and type code identify it. When the bank gives
    no reference, ``detail`` (customer reference and text) and ``ordinal`` (how many identical
    transactions came before it in the same statement) keep two equal payments apart; both are
    the same when the same statement is reported again.
    """
    parts = [
        account.strip().lstrip("0"),
        as_of_date.isoformat(),
        (bank_reference or "").strip(),
        str(amount.normalize() if amount else Decimal(0)),
        type_code,
    ]
    if not (bank_reference or "").strip():
        parts += [" ".join(detail.split()), str(ordinal)]
    return content_id("bank", parts)


# --- classification ---------------------------------------------------------------------------

_LOCKBOX_CODES = frozenset({"115", "116", "118", "121", "122"})
_WIRE_IN_CODES = frozenset({"195", "196", "191", "206", "208"})
# BAI2 v2 Appendix A. Sweeps and automatic transfers move money between own accounts.
_ZBA_CODES = frozenset(
    {"201", "270", "271", "274", "275", "276", "277", "278", "501"}
    | {"570", "571", "574", "575", "577", "578"}
)
# Returns, rejects and reversals of earlier items, on either side.
_RETURN_CODES = frozenset(
    {"123", "168", "251", "252", "255", "256", "257", "258", "261", "266", "268", "395"}
    | {"423", "468", "552", "555", "556", "557", "558", "561", "566", "568", "694"}
)
_FEE_CODES = frozenset({"564", "567", "661", "698"})


def classify(type_code: str, facts: TextFacts) -> tuple[Direction, Category]:
    """Direction from the BAI2 type-code range, then what kind of money it is.

    Credits are 100–399, the loan payment credits 720–728 and the custom credit range 930–959
    (BAI: 900–929 status, 930–959 credits, 960–999 debits); everything else is a debit. An ACH
    credit whose text carries HCCLAIMPMT or a TRN addenda is a claim payment whatever its code,
    because banks disagree on 142/165/169.
    """
    code = type_code.strip()
    n = int(code) if code.isascii() and code.isdigit() and len(code) <= 3 else -1
    credit = 100 <= n <= 399 or 720 <= n <= 728 or 930 <= n <= 959
    direction: Direction = "credit" if credit else "debit"
    if code in _ZBA_CODES:
        return direction, "zba"
    if code in _RETURN_CODES:
        return direction, "return"
    if direction == "debit":
        return direction, "fee" if code in _FEE_CODES else "debit"
    if facts.is_claim_payment:
        return direction, "claim_payment"
    if code in _LOCKBOX_CODES:
        return direction, "lockbox"
    if code in _WIRE_IN_CODES:
        return direction, "wire"
    if code in {"175", "176", "187", "214"}:
        return direction, "check_deposit"
    if 140 <= n <= 169:
        return direction, "ach_credit"
    return direction, "other_credit"
