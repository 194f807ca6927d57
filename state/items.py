"""What the matching state keeps of an event: a lean, picklable ``OpenItem``.

Keyed state holds only what the cascade, the outcome records and the journal need, never whole
events (claims alone can be kilobytes): money as integer cents, dates, the trace keys, and the
small output fragment (``ref``) that outcome records quote verbatim. Bytewax snapshots this
state at every epoch, so its size is the size of a snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from remitflow.calendar import add_business_days
from remitflow.events import BankTransaction, Remittance
from remitflow.money import cents

ItemKind = Literal["remittance", "bank_transaction"]


@dataclass(slots=True)
class OpenItem:
    event_id: str
    kind: ItemKind
    entity: str | None
    payer: str  # routing payer key (refdata payer id, normalised TRN03, or "?")
    cents: int
    day: date  # ERA: effective (else production) date; deposit: as-of date
    trace: str | None  # raw trace (ERA TRN02, addenda TRN02, or lockbox check number)
    trace_key: str | None  # normalised trace
    payer_id: str | None  # raw TRN03 (ERA) or addenda/company id (deposit)
    deadline: date  # past this business day without a counterpart the item is late
    ref: dict[str, Any]  # the item as outcome records quote it (DESIGN.md §4)
    # Remittances: whether cash is due at all (zero-pay ERAs promise none), and the cash the
    # ERA explains, for the journal.
    expects_cash: bool = True
    balanced: bool = True
    balance_diff_cents: int = 0
    claims_paid_cents: int = 0
    plb: tuple[tuple[str, int], ...] = ()  # (PLB reason code, cents); positive reduces payment
    # Deposits: where the cash landed.
    account: str | None = None
    category: str | None = None

    @property
    def is_remittance(self) -> bool:
        return self.kind == "remittance"


def _money(c: int) -> str:
    sign = "-" if c < 0 else ""
    c = abs(c)
    return f"{sign}{c // 100}.{c % 100:02d}"


money_text = _money


def _source(ev: Remittance | BankTransaction) -> dict[str, Any]:
    src = ev.source  # a plain dict: model_dump costs more than the rest of the item
    return {"system": src.system, "file": src.file, "record": src.record, "offset": src.offset}


def remittance_item(ev: Remittance, payer: str, late_after: int) -> OpenItem:
    day = ev.effective_date or ev.production_date or ev.occurred_at.date()
    amount = cents(ev.amount)
    return OpenItem(
        event_id=ev.event_id,
        kind="remittance",
        entity=ev.entity,
        payer=payer,
        cents=amount,
        day=day,
        trace=ev.trace_number,
        trace_key=ev.trace_normalized or None,
        payer_id=ev.payer_id,
        deadline=add_business_days(day, late_after),
        ref={
            "event_id": ev.event_id,
            "trace_number": ev.trace_number,
            "payer_id": ev.payer_id,
            "amount": _money(amount),
            "source": _source(ev),
        },
        expects_cash=ev.expects_cash,
        balanced=ev.balanced,
        balance_diff_cents=cents(ev.balance_difference),
        claims_paid_cents=sum(cents(c.paid) for c in ev.claims),
        plb=tuple((p.reason, cents(p.amount)) for p in ev.provider_adjustments),
    )


def bank_item(
    ev: BankTransaction, payer: str, late_after: int, *, trace: str | None, trace_key: str | None
) -> OpenItem:
    """``trace`` is the addenda trace, or the check number for lockbox deposits."""
    amount = cents(ev.amount)
    return OpenItem(
        event_id=ev.event_id,
        kind="bank_transaction",
        entity=ev.entity,
        payer=payer,
        cents=amount,
        day=ev.as_of_date,
        trace=trace,
        trace_key=trace_key,
        payer_id=ev.payer_id,
        deadline=add_business_days(ev.as_of_date, late_after),
        ref={
            "event_id": ev.event_id,
            "bank_reference": ev.bank_reference,
            "account": ev.account,
            "amount": _money(amount),
            "value_date": (ev.value_date or ev.as_of_date).isoformat(),
            "source": _source(ev),
        },
        account=ev.account,
        category=ev.category,
    )
