"""The ERP cash journal of a reconciled case (DESIGN.md §4 ``erp_posting``).

The journal books what reached the bank against what the ERAs say it pays, and explains every
cent in between on its own account. With cents and per remittance ``BPR02 = ΣCLP04 − ΣPLB +
balance_diff`` (the parser's balancing difference) and ``deposits = ΣBPR02 + variance``::

    Dr cash (Σ deposits)  + Dr PLB (positive: recoupments, withholding)
      = Cr clearing (Σ CLP04) + Cr PLB (negative: interest)
        + Cr remit_unbalanced (balance_diff) + Cr cash variance (bank − remittance)

Every amount is a signed line (debit positive) so negative cases need no special handling: a
reversal that nets the claims below zero debits clearing, a bank short of the ERA debits the fee
or mismatch account, an ERA paying less than its claims explain debits the ERA variance account.
Accounts come from reference data only. A journal that does not balance is a bug upstream (item
cents inconsistent with their balancing difference) and raises :class:`JournalImbalance`; it is
never "fixed" with a plug line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from matchers.base import Decision, ordered
from remitflow.identity import idempotency_key
from remitflow.refdata import GLMapping, ReferenceData
from sinks.records import Record, bank_minus_remittance_cents, case_entity, case_header, iso
from state.items import OpenItem, money_text

_Era = tuple[OpenItem, str | None, str | None]  # an ERA, its clearing account, its payer


class JournalImbalance(ValueError):
    """A case whose journal cannot balance: its items disagree with their own amounts."""


@dataclass(frozen=True, slots=True)
class _Line:
    account: str
    cents: int  # signed: positive debit, negative credit
    memo: str
    payer: str | None


def journal_record(
    decision: Decision,
    refdata: ReferenceData,
    *,
    decided_at: datetime,
    emitted_at: datetime,
    header: Record | None = None,
) -> Record | None:
    """The ``erp_posting`` record of a matched or variance case with cash; else ``None``.

    Unmatched items post nothing, and a case without deposits (a zero-pay ``non_payment`` ERA)
    moves no cash. Raises :class:`JournalImbalance` when the lines cannot balance. ``header``:
    the case's :func:`case_header` for these times, when the caller built it already.
    """
    if decision.outcome == "unmatched" or not decision.deposits:
        return None
    remittances, deposits = ordered(decision.remittances), ordered(decision.deposits)
    gl = refdata.gl
    # Each ERA's payer is resolved once: (ERA, its payer's clearing account, payer dimension).
    eras = [(r, *_payer_of(r, refdata)) for r in remittances]
    payers = (
        {label for _, _, label in eras} if eras else {_payer_of(d, refdata)[1] for d in deposits}
    )
    payer = payers.pop() if len(payers) == 1 else None  # of case-level lines: cash, variance
    lines = [
        *_cash_lines(deposits, refdata, payer),
        *_clearing_lines(eras, gl),
        *_plb_lines(eras, gl),
        *_unbalanced_lines(eras, gl),
        *_variance_lines(decision, gl, payer),
    ]
    lines = [line for line in lines if line.cents]
    if not lines:
        return None
    debit = sum(line.cents for line in lines if line.cents > 0)
    credit = -sum(line.cents for line in lines if line.cents < 0)
    entity = case_entity(decision)
    if header is not None:
        record = {**header, "record": "erp_posting"}
    else:
        record = case_header(decision, "erp_posting", iso(decided_at), iso(emitted_at))
    if debit != credit:
        raise JournalImbalance(
            f"case {record['case_id']}: debits {money_text(debit)} ≠ credits {money_text(credit)}"
        )
    facility = refdata.facility(entity)
    record["idempotency_key"] = idempotency_key(entity, (i.event_id for i in decision.items))
    record["journal_date"] = max(d.day for d in deposits).isoformat()
    record["currency"] = gl.currency
    record["lines"] = [
        {
            "account": line.account,
            "debit": money_text(max(line.cents, 0)),
            "credit": money_text(max(-line.cents, 0)),
            "memo": line.memo,
            "dimensions": {"entity": entity, "payer": line.payer, "facility": facility},
        }
        for line in lines
    ]
    return record


def _cash_lines(deposits: list[OpenItem], refdata: ReferenceData, payer: str | None) -> list[_Line]:
    """Dr each bank account's GL cash; an account reference data does not know is unapplied."""
    totals: dict[tuple[str, str], int] = {}
    memos: dict[tuple[str, str], str] = {}
    for d in deposits:
        bank = refdata.account(d.account) if d.account else None
        if bank is not None:
            key = (bank.gl_cash, bank.number)
            memo = f"Cash received, bank account ending {bank.number[-4:]}"
        else:
            number = d.account or ""
            key = (refdata.gl.unapplied_cash, number)
            where = f"bank account ending {number[-4:]}" if number else "no bank account"
            memo = f"Cash received, {where} not in reference data: unapplied cash"
        totals[key] = totals.get(key, 0) + d.cents
        memos[key] = memo
    return [_Line(key[0], totals[key], memos[key], payer) for key in sorted(totals)]


def _clearing_lines(eras: list[_Era], gl: GLMapping) -> list[_Line]:
    """Cr each payer's clearing/AR account with the claims its ERAs pay (Σ CLP04)."""
    totals: dict[tuple[str, str], int] = {}
    traces: dict[tuple[str, str], list[str]] = {}
    for r, clearing, payer in eras:
        key = (clearing or gl.clearing_default, payer or "")
        totals[key] = totals.get(key, 0) - r.claims_paid_cents
        traces.setdefault(key, []).append(r.trace or "(none)")
    return [
        _Line(key[0], totals[key], f"Claims paid, ERA trace {_join(traces[key])}", key[1] or None)
        for key in sorted(totals)
    ]


def _plb_lines(eras: list[_Era], gl: GLMapping) -> list[_Line]:
    """PLB by reason code: positive amounts withheld from the payment are debits."""
    totals: dict[tuple[str, str, str], int] = {}
    for r, _, payer in eras:
        for reason, amount in r.plb:
            key = (reason, gl.plb.get(reason, gl.plb_default), payer or "")
            totals[key] = totals.get(key, 0) + amount
    return [
        _Line(account, totals[(reason, account, payer)], f"PLB {reason}", payer or None)
        for reason, account, payer in sorted(totals)
    ]


def _unbalanced_lines(eras: list[_Era], gl: GLMapping) -> list[_Line]:
    """What an unbalanced ERA pays beyond (credit) or short of (debit) its claims and PLBs."""
    account = gl.variances.get("remit_unbalanced", gl.unapplied_cash)
    totals: dict[str, int] = {}
    traces: dict[str, list[str]] = {}
    for r, _, label in eras:
        if r.balance_diff_cents:
            payer = label or ""
            totals[payer] = totals.get(payer, 0) - r.balance_diff_cents
            traces.setdefault(payer, []).append(r.trace or "(none)")
    return [
        _Line(
            account,
            totals[payer],
            f"ERA does not balance (BPR02 ≠ Σ CLP04 − Σ PLB), trace {_join(traces[payer])}",
            payer or None,
        )
        for payer in sorted(totals)
    ]


def _variance_lines(decision: Decision, gl: GLMapping, payer: str | None) -> list[_Line]:
    """Bank − remittance: a fee the bank withheld, or a mismatch either way."""
    variance = bank_minus_remittance_cents(decision)
    if not variance:
        return []
    if variance < 0 and decision.reason == "fee":
        account = gl.variances.get("fee", gl.bank_fees)
        memo = "Fee withheld from the deposit"
    else:
        account = gl.variances.get("amount_mismatch", gl.unapplied_cash)
        side = "short of" if variance < 0 else "over"
        memo = f"Deposit {side} the remittance advice"
    return [_Line(account, -variance, memo, payer)]


def _payer_of(item: OpenItem, refdata: ReferenceData) -> tuple[str | None, str | None]:
    """(clearing account, payer dimension): the reference-data payer's when the id is known,
    else no account of its own and the routing key ("?" is no payer)."""
    found = refdata.payer_for_id(item.payer_id)
    if found is not None:
        return found.clearing_account, found.id
    return None, item.payer if item.payer and item.payer != "?" else None


def _join(traces: list[str]) -> str:
    return ", ".join(dict.fromkeys(traces))
