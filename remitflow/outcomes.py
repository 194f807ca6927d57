"""Schemas of the output records (DESIGN.md §4): what outside tools may rely on.

The dataflow builds these records as plain dicts (:mod:`sinks.records`, :mod:`sinks.journal`)
because pydantic on the hot path would cost more than the matching itself; these models are the
contract those dicts are held to. Tests validate every builder's output against them, and
outside tools read the contract from ``model_json_schema()`` (see :func:`record_schemas`).

Money is a decimal string with exactly two decimals (``"945.00"``, ``"-10.30"``), never a JSON
number, so no consumer ever reads it as a float. Datetimes are ISO-8601 with a zone.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

from remitflow.events import Source
from remitflow.records import DeadLetter

MoneyText = Annotated[
    str,
    StringConstraints(pattern=r"^-?[0-9]+\.[0-9]{2}$"),
    Field(description='signed amount, a decimal string with two decimals ("945.00")'),
]
AmountText = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]+\.[0-9]{2}$"),
    Field(description='non-negative amount, a decimal string with two decimals ("0.00")'),
]
# ERP confirmations quote the ERP's own amount as sent (validated as a plain decimal upstream).
ErpAmountText = Annotated[
    str,
    StringConstraints(pattern=r"^[+-]?[0-9]+(\.[0-9]+)?$"),
    Field(description="the amount the ERP confirmed, as a plain decimal string"),
]

PostingOutcomeKind = Literal[
    "posted", "posting_rejected", "posting_reversed", "orphan_posting", "duplicate_posting"
]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RemittanceRef(_Record):
    """An 835 transaction set as outcome records quote it."""

    event_id: str = Field(description="id of the canonical remittance event")
    trace_number: str | None = Field(description="TRN02 as the ERA wrote it (EFT trace or check)")
    payer_id: str | None = Field(description="TRN03: '1' + payer EIN, as the ERA wrote it")
    amount: MoneyText = Field(description="BPR02, the payment the ERA announces")
    source: Source = Field(description="file, ST control number and byte offset of the ERA")


class BankTransactionRef(_Record):
    """A bank statement line (BAI2 16 record or camt.053 entry) as outcome records quote it."""

    event_id: str = Field(description="id of the canonical bank_transaction event")
    bank_reference: str | None = Field(description="the bank's reference of the transaction")
    account: str = Field(description="the bank account number the cash landed in")
    amount: MoneyText = Field(description="amount of the transaction")
    value_date: date = Field(description="value date (the as-of date when the bank gives none)")
    source: Source = Field(description="file, record and byte offset of the statement line")


class _Outcome(_Record):
    """Fields every outcome record carries (DESIGN.md §4)."""

    case_id: str = Field(description="stable id of the case, derived from its event ids")
    entity: str | None = Field(description="hospital / legal entity; null when unresolved")
    rule: str | None = Field(description="the cascade rule that decided the case")
    confidence: float | None = Field(
        ge=0.0, le=1.0, description="how sure the rule is (null for exceptions)"
    )
    decided_at: AwareDatetime = Field(description="event time at which the case was decided")
    emitted_at: AwareDatetime = Field(description="wall-clock time the record was written")
    remittances: list[RemittanceRef] = Field(description="the ERAs of the case")
    bank_transactions: list[BankTransactionRef] = Field(description="the deposits of the case")


class Matched(_Outcome):
    """A reconciled case: ERA(s) and deposit(s) agree (or a zero-pay ERA that expects no cash)."""

    record: Literal["matched"] = Field(description="record type")
    rule: str = Field(description="the cascade rule that matched the case")
    confidence: float = Field(ge=0.0, le=1.0, description="how sure the rule is")


class VarianceDetail(_Record):
    amount: MoneyText = Field(description="Σ bank − Σ remittance (negative: the bank is short)")
    reason: str = Field(description="fee | amount_mismatch | remit_unbalanced")


class Variance(_Outcome):
    """A case matched on its key whose amounts differ, or whose ERA does not balance."""

    record: Literal["variance"] = Field(description="record type")
    rule: str = Field(description="the cascade rule that paired the items")
    confidence: float = Field(ge=0.0, le=1.0, description="how sure the pairing is")
    variance: VarianceDetail = Field(description="the difference and why")

    @model_validator(mode="after")
    def _amount_is_bank_minus_remittance(self) -> Self:
        bank = sum((Decimal(b.amount) for b in self.bank_transactions), Decimal(0))
        remitted = sum((Decimal(r.amount) for r in self.remittances), Decimal(0))
        if Decimal(self.variance.amount) != bank - remitted:
            raise ValueError("variance.amount must equal Σ bank − Σ remittance amounts")
        return self


class Unmatched(_Outcome):
    """One item left without a counterpart: an exception for someone to work."""

    record: Literal["unmatched"] = Field(description="record type")
    confidence: None = Field(description="always null: nothing was matched")
    kind: Literal["remittance", "bank_transaction"] = Field(description="what the item is")
    reason: str = Field(
        description="ambiguous | no_counterpart | end_of_input | late_counterpart | ..."
    )
    age_business_days: int = Field(
        ge=0, description="Fed business days from the item's date to the decision"
    )

    @model_validator(mode="after")
    def _exactly_one_item(self) -> Self:
        expected = (1, 0) if self.kind == "remittance" else (0, 1)
        if (len(self.remittances), len(self.bank_transactions)) != expected:
            raise ValueError(f"an unmatched {self.kind} record quotes exactly that one item")
        return self


class JournalDimensions(_Record):
    entity: str | None = Field(description="legal entity the line belongs to")
    payer: str | None = Field(description="payer (reference-data id when known)")
    facility: str | None = Field(description="facility of the entity, from reference data")


class JournalLine(_Record):
    """One line of a balanced journal: exactly one of debit and credit is non-zero."""

    account: str = Field(description="GL account, from reference data")
    debit: AmountText = Field(description="debit amount, or 0.00")
    credit: AmountText = Field(description="credit amount, or 0.00")
    memo: str = Field(description="why the line exists (no PHI)")
    dimensions: JournalDimensions = Field(description="analysis dimensions of the line")

    @model_validator(mode="after")
    def _one_side(self) -> Self:
        if (Decimal(self.debit) == 0) == (Decimal(self.credit) == 0):
            raise ValueError("a journal line has exactly one non-zero side")
        return self


class ErpPosting(_Outcome):
    """The cash journal of a reconciled case, sent to the ERP once per idempotency key."""

    record: Literal["erp_posting"] = Field(description="record type")
    rule: str = Field(description="the cascade rule that decided the case")
    confidence: float = Field(ge=0.0, le=1.0, description="how sure the rule is")
    idempotency_key: str = Field(
        description="stable per case (entity + rule version + sorted event ids)"
    )
    journal_date: date = Field(description="date of the latest deposit of the case")
    currency: str = Field(description="ISO 4217 currency of every line")
    lines: list[JournalLine] = Field(min_length=2, description="balanced journal lines")

    @model_validator(mode="after")
    def _balanced(self) -> Self:
        debit = sum((Decimal(line.debit) for line in self.lines), Decimal(0))
        credit = sum((Decimal(line.credit) for line in self.lines), Decimal(0))
        if debit != credit:
            raise ValueError(f"journal does not balance: debit {debit} ≠ credit {credit}")
        return self


class PostingRef(_Record):
    """The ERP confirmation a posting outcome is about."""

    event_id: str = Field(description="id of the canonical posting event")
    posting_id: str = Field(description="the ERP's journal id")
    idempotency_key: str = Field(description="the key the ERP received the journal under")
    status: Literal["posted", "rejected", "reversed"] = Field(description="what the ERP did")
    amount: ErpAmountText | None = Field(description="amount the ERP confirmed, if it said")
    posted_at: AwareDatetime = Field(description="when the ERP booked (or refused) it")
    reason: str | None = Field(description="the ERP's reason (rejections, reversals)")
    source: Source = Field(description="where the confirmation was read")


class Posted(_Outcome):
    """The ERP confirmed a case's journal: the case is closed three ways (to matched.jsonl)."""

    record: Literal["posted"] = Field(description="record type")
    confidence: float = Field(ge=0.0, le=1.0, description="always 1.0: the ERP confirmed it")
    idempotency_key: str = Field(description="the case's journal key")
    posting: PostingRef = Field(description="the confirmation")


class PostingException(_Outcome):
    """An ERP confirmation that does not close a case cleanly (to unmatched.jsonl)."""

    record: Literal[
        "posting_rejected", "posting_reversed", "orphan_posting", "duplicate_posting"
    ] = Field(description="record type, also the reason")
    confidence: None = Field(description="always null")
    kind: Literal["posting"] = Field(description="the item is an ERP confirmation")
    reason: str = Field(description="same as record")
    age_business_days: int = Field(ge=0, description="0: raised when the confirmation arrives")
    idempotency_key: str = Field(description="the key the confirmation names")
    posting: PostingRef = Field(description="the confirmation")


PostingOutcome = Annotated[Posted | PostingException, Field(discriminator="record")]

RECORD_MODELS: dict[str, type[BaseModel]] = {
    "matched": Matched,
    "variance": Variance,
    "unmatched": Unmatched,
    "erp_posting": ErpPosting,
    "posted": Posted,
    "posting_rejected": PostingException,
    "posting_reversed": PostingException,
    "orphan_posting": PostingException,
    "duplicate_posting": PostingException,
    "dead_letter": DeadLetter,
}

OutputRecord = Annotated[
    Matched | Variance | Unmatched | ErpPosting | Posted | PostingException | DeadLetter,
    Field(discriminator="record"),
]
_OUTPUT_ADAPTER: TypeAdapter[
    Matched | Variance | Unmatched | ErpPosting | Posted | PostingException | DeadLetter
] = TypeAdapter(OutputRecord)


def validate_record(
    data: dict[str, Any],
) -> Matched | Variance | Unmatched | ErpPosting | Posted | PostingException | DeadLetter:
    """Validate one output record (a builder's dict, or a line read back) by its ``record``."""
    return _OUTPUT_ADAPTER.validate_python(data)


def record_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every record type, by ``record`` value, for outside tools."""
    return {name: model.model_json_schema() for name, model in RECORD_MODELS.items()}
