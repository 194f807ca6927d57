"""What the case status API shows: response models (the OpenAPI schema) and how a case of the
index becomes one, with its lineage; the exception queue, filtered and paged.

Everything shown comes from the case index and the ERP idempotency ledger, which hold no PHI:
event ids, trace numbers, payer ids, bank references, amounts and the sources items were read
from. Operators' reasons are shown as they typed them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from remitflow.events import Source
from remitflow.outcomes import BankTransactionRef, RemittanceRef
from remitflow.refdata import ReferenceData
from state.case_index import CONFIRMATIONS, age_business_days, exception_reason, opened_on

MAX_LIMIT = 500
T = TypeVar("T")


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class LedgerState(_View):
    """The journal's entry in the ERP idempotency ledger."""

    status: str = Field(description="pending (claimed, not acknowledged yet) | posted")
    claimed_at: datetime | None = Field(None, description="when the sink claimed the key")
    posted_at: datetime | None = Field(None, description="when the ERP acknowledged it")
    response: str | None = Field(None, description="the ERP's (or the topic's) acknowledgement")


class Journal(_View):
    """The case's ERP journal: its key, what the sink did with it, what the ledger holds."""

    idempotency_key: str
    journal_date: date | None = None
    sink_status: str | None = Field(
        None, description="posted | failed (dead-lettered: see sink_reason)"
    )
    sink_reason: str | None = None
    ledger: LedgerState | None = Field(None, description="null: the ledger has no such key")


class ErpConfirmation(_View):
    """An ERP confirmation of the case's journal (read from the postings topic)."""

    event_id: str
    posting_id: str | None = Field(None, description="the ERP's journal id")
    status: str | None = Field(None, description="posted | rejected | reversed, as the ERP said")
    outcome: str = Field(description="what it did to the case: posted, posting_rejected, ...")
    amount: str | None = None
    posted_at: str | None = Field(None, description="the ERP's time")
    reason: str | None = Field(None, description="the ERP's reason (rejections, reversals)")
    source: Source | None = None


class Resolution(_View):
    """An operator's resolution of the case (or of the cases it made this one from)."""

    action: Literal["confirm_pair", "non_payer_cash"]
    operator: str
    reason: str
    resolved_at: datetime
    case_id: str = Field(description="the case the resolution made (or closed)")
    resolves: list[str] = Field(description="the exception cases it resolved")
    event_ids: list[str]
    rule: str
    outcome: str


class LineageStep(_View):
    """One step of how the case's money got where it is, in order."""

    step: Literal["read", "decided", "resolved", "journal", "erp"]
    at: str | None = Field(None, description="when (event time for decisions, else wall clock)")
    event_id: str | None = None
    kind: str | None = None
    source: Source | None = Field(None, description="file/record/offset the item was read from")
    rule: str | None = None
    outcome: str | None = None
    confidence: float | None = None
    reason: str | None = None
    operator: str | None = None
    idempotency_key: str | None = None
    status: str | None = None
    posting_id: str | None = None


class CaseView(_View):
    """A case: its decision, its items and where they were read, its journal and postings."""

    case_id: str
    status: str = Field(
        description="posted | matched | variance | unmatched | superseded | resolved | "
        "journal_failed | posting_rejected | posting_reversed | duplicate_posting | "
        "orphan_posting | pending"
    )
    outcome: str | None = Field(None, description="the decision: matched | variance | unmatched")
    entity: str | None = None
    payer_ids: list[str] = Field(description="TRN03 of the case's remittances")
    rule: str | None = None
    confidence: float | None = None
    decided_at: datetime | None = None
    reason: str | None = Field(None, description="variance or unmatched reason")
    variance_amount: str | None = Field(None, description="bank − remittance")
    opened_on: date | None = Field(None, description="the case's date (see age_business_days)")
    age_business_days: int | None = Field(
        None, description="Fed business days from opened_on to as_of (today unless given)"
    )
    age_at_decision: int | None = Field(None, description="an unmatched item's age when decided")
    remittances: list[RemittanceRef]
    bank_transactions: list[BankTransactionRef]
    journal: Journal | None = None
    erp_confirmations: list[ErpConfirmation]
    resolution: Resolution | None = None
    superseded_by: list[str] = Field(description="cases that matched this unmatched item")
    lineage: list[LineageStep]


class CaseList(_View):
    items: list[CaseView]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page")


class ExceptionItem(_View):
    """One row of the exception queue."""

    case_id: str
    status: str
    reason: str = Field(description="variance/unmatched reason, or the status for ERP ones")
    entity: str | None = None
    payer_ids: list[str]
    rule: str | None = None
    kind: Literal["remittance", "bank_transaction", "case", "posting"] = Field(
        description="an unmatched item's kind; case: remittances and deposits; posting: ERP"
    )
    remitted: str | None = Field(None, description="Σ remittance amounts")
    deposited: str | None = Field(None, description="Σ deposit amounts")
    variance_amount: str | None = None
    traces: list[str]
    bank_references: list[str]
    opened_on: date | None = None
    age_business_days: int


class ExceptionPage(_View):
    items: list[ExceptionItem]
    total: int = Field(description="exceptions that pass the filters, on every page")
    as_of: date = Field(description="the date ages are counted to")
    next_cursor: str | None = None


class ConfirmPair(BaseModel):
    """Confirm that a remittance and a deposit, each an open unmatched case, belong together."""

    remittance_case_id: str = Field(max_length=100)
    deposit_case_id: str = Field(max_length=100)
    reason: str = Field(min_length=1, max_length=500, description="why (no patient data)")


class NonPayerCash(BaseModel):
    """Mark a deposit, an open unmatched case, as cash that is not a payer's payment."""

    case_id: str = Field(max_length=100)
    reason: str = Field(min_length=1, max_length=500, description="why (no patient data)")


class ResolutionResult(_View):
    action: Literal["confirm_pair", "non_payer_cash"]
    case_id: str
    outcome: str
    resolves: list[str]
    idempotency_key: str | None = None
    already_resolved: bool = Field(description="made before: nothing was written this time")
    case: CaseView | None = None


# -- a case, as the API shows it ---------------------------------------------------------------


def today() -> date:
    return datetime.now(UTC).date()


def case_view(case: Mapping[str, Any], ledger: Mapping[str, Any] | None, as_of: date) -> CaseView:
    """``case`` as :meth:`state.case_index.CaseIndex.get` returns it; ``ledger`` its journal's
    ledger entry."""
    journal = _journal(case, ledger)
    confirmations = [_confirmation(p) for p in case.get("postings", ())]
    resolution = Resolution.model_validate(case["resolution"]) if case.get("resolution") else None
    remittances = [RemittanceRef.model_validate(r) for r in case.get("remittances", ())]
    deposits = [BankTransactionRef.model_validate(d) for d in case.get("bank_transactions", ())]
    return CaseView(
        case_id=case["case_id"],
        status=case["status"],
        outcome=case.get("outcome") or None,
        entity=case.get("entity") or None,
        payer_ids=payer_ids(case),
        rule=case.get("rule") or None,
        confidence=_float(case.get("confidence")),
        decided_at=_datetime(case.get("decided_at")),
        reason=case.get("reason") or None,
        variance_amount=case.get("variance_amount") or None,
        opened_on=opened_on(case),
        age_business_days=age_business_days(case, as_of) if opened_on(case) else None,
        age_at_decision=_int(case.get("age_business_days")),
        remittances=remittances,
        bank_transactions=deposits,
        journal=journal,
        erp_confirmations=confirmations,
        resolution=resolution,
        superseded_by=list(case.get("superseded_by", ())),
        lineage=_lineage(case, journal, confirmations, resolution),
    )


def payer_ids(case: Mapping[str, Any]) -> list[str]:
    return [p for p in str(case.get("payer") or "").split(",") if p]


def _journal(case: Mapping[str, Any], ledger: Mapping[str, Any] | None) -> Journal | None:
    key = case.get("idempotency_key")
    if not key:
        return None
    state = None
    if ledger is not None:
        state = LedgerState(
            status=str(ledger.get("status")),
            claimed_at=_epoch(ledger.get("claimed_at")),
            posted_at=_epoch(ledger.get("posted_at")),
            response=str(ledger["response"])[:200] if ledger.get("response") else None,
        )
    return Journal(
        idempotency_key=key,
        journal_date=date.fromisoformat(case["journal_date"]) if case.get("journal_date") else None,
        sink_status=case.get("journal_status") or None,
        sink_reason=case.get("journal_reason") or None,
        ledger=state,
    )


def _confirmation(posting: Mapping[str, Any]) -> ErpConfirmation:
    source = posting.get("source")
    return ErpConfirmation(
        event_id=str(posting.get("event_id")),
        posting_id=posting.get("posting_id"),
        status=posting.get("status"),
        outcome=str(posting.get("outcome")),
        amount=posting.get("amount"),
        posted_at=posting.get("posted_at"),
        reason=posting.get("reason"),
        source=Source.model_validate(source) if source else None,
    )


def _lineage(
    case: Mapping[str, Any],
    journal: Journal | None,
    confirmations: Sequence[ErpConfirmation],
    resolution: Resolution | None,
) -> list[LineageStep]:
    steps = [
        LineageStep(
            step="read",
            event_id=item["event_id"],
            kind=kind,
            source=Source.model_validate(item["source"]) if item.get("source") else None,
        )
        for side, kind in (("remittances", "remittance"), ("bank_transactions", "bank_transaction"))
        for item in case.get(side, ())
    ]
    if case.get("outcome"):
        steps.append(
            LineageStep(
                step="decided",
                at=case.get("decided_at"),
                rule=case.get("rule") or None,
                outcome=case["outcome"],
                confidence=_float(case.get("confidence")),
                reason=case.get("reason") or None,
            )
        )
    if resolution is not None:
        steps.append(
            LineageStep(
                step="resolved",
                at=resolution.resolved_at.isoformat(),
                rule=resolution.rule,
                outcome=resolution.outcome,
                reason=resolution.reason,
                operator=resolution.operator,
                status=resolution.action,
            )
        )
    if journal is not None:
        ledger = journal.ledger
        at = ledger.posted_at or ledger.claimed_at if ledger else None
        steps.append(
            LineageStep(
                step="journal",
                at=at.isoformat() if at else None,
                idempotency_key=journal.idempotency_key,
                status=(ledger.status if ledger else None) or journal.sink_status,
                reason=journal.sink_reason,
            )
        )
    steps += [
        LineageStep(
            step="erp",
            at=c.posted_at,
            event_id=c.event_id,
            posting_id=c.posting_id,
            status=c.status,
            outcome=c.outcome,
            reason=c.reason,
            source=c.source,
        )
        for c in confirmations
    ]
    return steps


# -- the exception queue -----------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilter:
    entity: str | None = None
    payers: frozenset[str] | None = None  # any of these TRN03 ids
    reason: str | None = None
    min_age: int | None = None
    as_of: date | None = None


def exception_item(case: Mapping[str, Any], as_of: date) -> ExceptionItem:
    rems = case.get("remittances", [])
    deps = case.get("bank_transactions", [])
    if str(case["status"]) in CONFIRMATIONS:
        kind: Literal["remittance", "bank_transaction", "case", "posting"] = "posting"
    elif case.get("outcome") == "unmatched":
        kind = "remittance" if rems else "bank_transaction"
    else:
        kind = "case"
    return ExceptionItem(
        case_id=case["case_id"],
        status=case["status"],
        reason=exception_reason(case),
        entity=case.get("entity") or None,
        payer_ids=payer_ids(case),
        rule=case.get("rule") or None,
        kind=kind,
        remitted=_sum(r["amount"] for r in rems) if rems else None,
        deposited=_sum(d["amount"] for d in deps) if deps else None,
        variance_amount=case.get("variance_amount") or None,
        traces=[r["trace_number"] for r in rems if r.get("trace_number")],
        bank_references=[d["bank_reference"] for d in deps if d.get("bank_reference")],
        opened_on=opened_on(case),
        age_business_days=age_business_days(case, as_of),
    )


def exception_queue(cases: Iterable[Mapping[str, Any]], wanted: QueueFilter) -> list[ExceptionItem]:
    """The exceptions that pass the filters, oldest first (then by case id)."""
    as_of = wanted.as_of or today()
    out: list[ExceptionItem] = []
    for case in cases:
        item = exception_item(case, as_of)
        if wanted.entity and item.entity != wanted.entity:
            continue
        if wanted.payers is not None and not wanted.payers & set(item.payer_ids):
            continue
        if wanted.reason and item.reason != wanted.reason:
            continue
        if wanted.min_age is not None and item.age_business_days < wanted.min_age:
            continue
        out.append(item)
    return sorted(out, key=lambda i: (i.opened_on or date.max, i.case_id))


def payers_matching(query: str, refdata: ReferenceData | None) -> frozenset[str]:
    """TRN03 ids a payer filter stands for: the id itself, and when the reference data knows a
    payer by that id (``aetna``), every TRN03 of that payer."""
    wanted = query.strip()
    ids = {wanted}
    if refdata is not None:
        for payer in refdata.payers:
            if payer.id.lower() == wanted.lower():
                ids.update(payer.payer_ids)
    return frozenset(ids)


# -- cursors -----------------------------------------------------------------------------------


class BadCursor(ValueError):
    pass


def encode_cursor(day: date | None, case_id: str) -> str:
    raw = f"{day.isoformat() if day else '-'}|{case_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[date, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        day, _, case_id = raw.partition("|")
        return (date.max if day == "-" else date.fromisoformat(day)), case_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("cursor is not one this API gave") from None


def page_after(
    rows: Sequence[T], key: Any, cursor: str | None, limit: int
) -> tuple[list[T], str | None]:
    """Keyset paging over rows sorted by ``key(row) = (date | None, case_id)``: the rows after
    the cursor, and the cursor of the next page (None on the last)."""
    if cursor:
        after = decode_cursor(cursor)
        rows = [r for r in rows if _sortable(key(r)) > after]
    chosen = list(rows[:limit])
    if len(rows) > limit:
        day, cid = key(chosen[-1])
        return chosen, encode_cursor(day, cid)
    return chosen, None


def _sortable(k: tuple[date | None, str]) -> tuple[date, str]:
    return (k[0] or date.max, k[1])


# -- small conversions -------------------------------------------------------------------------


def _sum(amounts: Iterable[str]) -> str:
    return format(sum((Decimal(a) for a in amounts), Decimal(0)), "f")


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "", "None") else None
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _datetime(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _epoch(value: Any) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if isinstance(value, int | float) else None
