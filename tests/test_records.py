"""Outcome records: field names of DESIGN.md §4, schemas, case ids, posting outcomes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from matchers.base import Decision
from remitflow.events import BankTransaction, Posting, Remittance
from remitflow.identity import content_id
from remitflow.outcomes import (
    RECORD_MODELS,
    ErpPosting,
    Matched,
    Posted,
    PostingException,
    Unmatched,
    Variance,
    record_schemas,
    validate_record,
)
from sinks.records import RECORD_FILE, case_id, decision_records, posting_outcome_record
from state.items import OpenItem, bank_item, money_text, remittance_item

MONDAY = date(2025, 3, 17)
DECIDED = datetime(2025, 3, 18, tzinfo=UTC)
EMITTED = datetime(2025, 3, 18, 14, 30, 5, tzinfo=UTC)
RUSHMORE_TRN03 = "1935665544"

COMMON_FIELDS = [
    "record",
    "case_id",
    "entity",
    "rule",
    "confidence",
    "decided_at",
    "emitted_at",
    "remittances",
    "bank_transactions",
]
REMITTANCE_REF_FIELDS = {"event_id", "trace_number", "payer_id", "amount", "source"}
BANK_REF_FIELDS = {"event_id", "bank_reference", "account", "amount", "value_date", "source"}


# --- factory: OpenItems built directly, the way state/items.py builds them --------------------


def remittance(
    event_id: str,
    claims: int,
    *,
    plb: tuple[tuple[str, int], ...] = (),
    diff: int = 0,
    payer_id: str | None = RUSHMORE_TRN03,
    payer: str = "RUSHMORE",
    entity: str | None = "NORTH",
    day: date = MONDAY,
    trace: str | None = "12524965",
) -> OpenItem:
    """An ERA paying ``claims`` cents (Σ CLP04) less its PLBs, off balance by ``diff``."""
    amount = claims - sum(c for _, c in plb) + diff
    return OpenItem(
        event_id=event_id,
        kind="remittance",
        entity=entity,
        payer=payer,
        cents=amount,
        day=day,
        trace=trace,
        trace_key=trace,
        payer_id=payer_id,
        deadline=day + timedelta(days=6),
        ref={
            "event_id": event_id,
            "trace_number": trace,
            "payer_id": payer_id,
            "amount": money_text(amount),
            "source": {"system": "x12-835", "file": "era.835", "record": "0001", "offset": 106},
        },
        balanced=diff == 0,
        balance_diff_cents=diff,
        claims_paid_cents=claims,
        plb=plb,
    )


def deposit(
    event_id: str,
    cents: int,
    *,
    account: str | None = "000123456789",
    entity: str | None = "NORTH",
    day: date = MONDAY,
    trace: str | None = "12524965",
    payer_id: str | None = RUSHMORE_TRN03,
    payer: str = "RUSHMORE",
) -> OpenItem:
    return OpenItem(
        event_id=event_id,
        kind="bank_transaction",
        entity=entity,
        payer=payer,
        cents=cents,
        day=day,
        trace=trace,
        trace_key=trace,
        payer_id=payer_id,
        deadline=day + timedelta(days=6),
        ref={
            "event_id": event_id,
            "bank_reference": f"BR-{event_id}",
            "account": account or "",
            "amount": money_text(cents),
            "value_date": day.isoformat(),
            "source": {"system": "bai2", "file": "bank.bai2", "record": "16", "offset": 512},
        },
        account=account,
        category="claim_payment",
    )


def decide(
    outcome: str,
    remittances: tuple[OpenItem, ...],
    deposits: tuple[OpenItem, ...],
    *,
    rule: str = "trace_exact",
    reason: str | None = None,
    confidence: float | None = 1.0,
) -> Decision:
    variance = sum(d.cents for d in deposits) - sum(r.cents for r in remittances)
    return Decision(
        outcome=outcome,  # type: ignore[arg-type]
        rule=rule,
        confidence=None if outcome == "unmatched" else confidence,
        remittances=remittances,
        deposits=deposits,
        reason=reason,
        variance_cents=variance if outcome == "variance" else None,
    )


def records_of(decision: Decision, as_of: date = MONDAY) -> list[dict[str, Any]]:
    return decision_records(decision, decided_at=DECIDED, emitted_at=EMITTED, as_of=as_of)


def wire(record: dict[str, Any]) -> dict[str, Any]:
    """The record as a consumer reads it: through orjson and back."""
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(record))
    return loaded


# --- matched / variance / unmatched ------------------------------------------------------------


def test_matched_record_fields_and_refs() -> None:
    era = remittance("rem-1", 94500)
    cash = deposit("bank-1", 94500)
    (record,) = records_of(decide("matched", (era,), (cash,), confidence=0.99))
    assert list(record) == COMMON_FIELDS
    assert record["record"] == "matched"
    assert record["case_id"] == content_id("case", ["bank-1", "rem-1"])
    assert record["entity"] == "NORTH"
    assert record["rule"] == "trace_exact"
    assert record["confidence"] == 0.99
    assert record["decided_at"] == "2025-03-18T00:00:00+00:00"
    assert record["emitted_at"] == "2025-03-18T14:30:05+00:00"
    assert record["remittances"] == [era.ref]
    assert record["bank_transactions"] == [cash.ref]
    Matched.model_validate(wire(record))


def test_variance_record_amount_is_bank_minus_remittance() -> None:
    era = remittance("rem-1", 100000)
    cash = deposit("bank-1", 99500)
    (record,) = records_of(decide("variance", (era,), (cash,), reason="fee", confidence=0.95))
    assert list(record) == [*COMMON_FIELDS, "variance"]
    assert record["variance"] == {"amount": "-5.00", "reason": "fee"}
    Variance.model_validate(wire(record))

    over = deposit("bank-2", 100001)
    (record,) = records_of(decide("variance", (era,), (over,), reason="amount_mismatch"))
    assert record["variance"] == {"amount": "0.01", "reason": "amount_mismatch"}
    Variance.model_validate(wire(record))


def test_consolidated_case_quotes_items_in_canonical_order() -> None:
    first = remittance("rem-b", 30000, day=MONDAY)
    second = remittance("rem-a", 20000, day=MONDAY + timedelta(days=1))
    cash = deposit("bank-1", 50000, day=MONDAY + timedelta(days=1))
    forward = records_of(decide("matched", (first, second), (cash,), rule="consolidated"))
    backward = records_of(decide("matched", (second, first), (cash,), rule="consolidated"))
    assert forward == backward
    assert [r["event_id"] for r in forward[0]["remittances"]] == ["rem-b", "rem-a"]
    assert forward[0]["case_id"] == case_id(["rem-a", "rem-b", "bank-1"])


def test_case_entity_prefers_the_deposit() -> None:
    era = remittance("rem-1", 1000, entity="SOUTH")
    cash = deposit("bank-1", 1000, entity="NORTH")
    unknown = deposit("bank-0", 0, entity=None)
    (record,) = records_of(decide("matched", (era,), (unknown, cash), rule="consolidated"))
    assert record["entity"] == "NORTH"
    (record,) = records_of(decide("matched", (era,), (), rule="non_payment"))
    assert record["entity"] == "SOUTH"
    assert record["bank_transactions"] == []


def test_unmatched_gives_one_record_per_item() -> None:
    era = remittance("rem-1", 1000, day=MONDAY)
    other = remittance("rem-2", 1000, day=MONDAY, entity="SOUTH")
    cash = deposit("bank-1", 1000, day=MONDAY + timedelta(days=1))
    records = records_of(
        decide("unmatched", (era, other), (cash,), rule="ambiguity", reason="ambiguous"),
        as_of=MONDAY + timedelta(days=7),  # the next Monday
    )
    assert [r["case_id"] for r in records] == [
        case_id(["rem-1"]),
        case_id(["rem-2"]),
        case_id(["bank-1"]),
    ]
    assert len({r["case_id"] for r in records}) == 3
    assert [(r["kind"], r["entity"], r["age_business_days"]) for r in records] == [
        ("remittance", "NORTH", 5),
        ("remittance", "SOUTH", 5),
        ("bank_transaction", "NORTH", 4),
    ]
    for record in records:
        assert set(record) == {*COMMON_FIELDS, "kind", "reason", "age_business_days"}
        assert record["rule"] == "ambiguity"
        assert record["reason"] == "ambiguous"
        assert record["confidence"] is None
        Unmatched.model_validate(wire(record))
    assert records[0]["remittances"] == [era.ref] and records[0]["bank_transactions"] == []
    assert records[2]["remittances"] == [] and records[2]["bank_transactions"] == [cash.ref]


def test_unmatched_age_counts_fed_business_days_and_never_goes_negative() -> None:
    # Friday 2025-01-17 → Tuesday 2025-01-21: Monday the 20th is Martin Luther King Jr. Day.
    item = deposit("bank-1", 1000, day=date(2025, 1, 17))
    decision = decide("unmatched", (), (item,), rule="window", reason="no_counterpart")
    (record,) = records_of(decision, as_of=date(2025, 1, 21))
    assert record["age_business_days"] == 1
    (record,) = records_of(decision, as_of=date(2025, 1, 10))  # decided before the item's date
    assert record["age_business_days"] == 0


def test_decisions_without_reason_are_refused() -> None:
    era = remittance("rem-1", 1000)
    with pytest.raises(ValueError, match="reason"):
        records_of(decide("unmatched", (era,), (), rule="end", reason=None))
    with pytest.raises(ValueError, match="reason"):
        records_of(decide("variance", (era,), (deposit("bank-1", 999),), reason=None))


def test_naive_timestamps_are_refused() -> None:
    decision = decide("matched", (remittance("rem-1", 1000),), (deposit("bank-1", 1000),))
    with pytest.raises(ValueError, match="timezone"):
        decision_records(
            decision, decided_at=datetime(2025, 3, 18), emitted_at=EMITTED, as_of=MONDAY
        )


def test_case_id_is_deterministic_and_order_free() -> None:
    assert case_id(["b", "a", "c"]) == case_id(("c", "b", "a")) == content_id("case", "abc")
    assert case_id(["a"]) != case_id(["a", "b"])
    assert case_id(["a"]).startswith("case-")


def test_records_of_real_events_validate() -> None:
    """Items built by state/items.py from canonical events quote what the schemas describe."""
    era = Remittance.model_validate(
        {
            "event_id": "rem-real",
            "entity": "NORTH",
            "occurred_at": "2025-03-17T00:00:00Z",
            "source": {"system": "x12-835", "file": "a.835", "record": "1001", "offset": 0},
            "handling_code": "I",
            "amount": "1010.30",
            "method": "ACH",
            "effective_date": "2025-03-17",
            "trace_number": "0012524965",
            "trace_normalized": "12524965",
            "payer_id": RUSHMORE_TRN03,
            "claims": [
                {"claim_ref": "h:1", "status": "1", "charge": "1500", "paid": "1000.00"},
            ],
            "provider_adjustments": [{"reason": "L6", "amount": "-10.30"}],
        }
    )
    bank = BankTransaction.model_validate(
        {
            "event_id": "bank-real",
            "entity": "NORTH",
            "occurred_at": "2025-03-18T00:00:00Z",
            "source": {"system": "bai2", "file": "b.bai2", "record": "12", "offset": 400},
            "account": "000123456789",
            "bank_reference": None,
            "type_code": "165",
            "direction": "credit",
            "category": "claim_payment",
            "amount": "1010.30",
            "as_of_date": "2025-03-18",
        }
    )
    r = remittance_item(era, "RUSHMORE", 4)
    b = bank_item(bank, "RUSHMORE", 4, trace="12524965", trace_key="12524965")
    assert r.plb == (("L6", -1030),) and r.claims_paid_cents == 100000
    for outcome, reason in (("matched", None), ("variance", "fee"), ("unmatched", "end_of_input")):
        for record in records_of(decide(outcome, (r,), (b,), reason=reason)):
            for ref in record["remittances"]:
                assert set(ref) == REMITTANCE_REF_FIELDS
            for ref in record["bank_transactions"]:
                assert set(ref) == BANK_REF_FIELDS
            assert type(validate_record(wire(record))).__name__ == outcome.capitalize()


# --- posting outcomes -------------------------------------------------------------------------

POSTING = Posting.model_validate(
    {
        "event_id": "post-1",
        "entity": "NORTH",
        "occurred_at": "2025-03-19T14:02:11-05:00",
        "source": {"system": "postings", "file": "erp.jsonl", "record": "3", "offset": 311},
        "posting_id": "JE-20250319-000003",
        "idempotency_key": "idem-abc",
        "status": "posted",
        "amount": "945.00",
        "posted_at": "2025-03-19T14:02:11-05:00",
        "reason": None,
    }
)
CASE = {"case_id": "case-123", "entity": "NORTH", "rule": "trace_exact"}
POSTING_FRAGMENT = {
    "event_id": "post-1",
    "posting_id": "JE-20250319-000003",
    "idempotency_key": "idem-abc",
    "status": "posted",
    "amount": "945.00",
    "posted_at": "2025-03-19T14:02:11-05:00",
    "reason": None,
    "source": {"system": "postings", "file": "erp.jsonl", "record": "3", "offset": 311},
}


def posting_record(kind: Any, posting: dict[str, Any], case: dict[str, Any] | None):
    return posting_outcome_record(
        kind,
        posting=posting,
        case=case,
        decided_at=POSTING.posted_at,
        emitted_at=EMITTED,
    )


@pytest.mark.parametrize("mode", ["python", "json"])
def test_posted_record(mode: str) -> None:
    record = posting_record("posted", POSTING.model_dump(mode=mode), CASE)
    assert list(record) == [
        *COMMON_FIELDS[:7],
        "idempotency_key",
        "posting",
        "remittances",
        "bank_transactions",
    ]
    assert record["case_id"] == "case-123" and record["rule"] == "trace_exact"
    assert record["confidence"] == 1.0
    assert record["decided_at"] == "2025-03-19T14:02:11-05:00"
    assert record["idempotency_key"] == "idem-abc"
    assert record["posting"] == POSTING_FRAGMENT  # the same whichever way it was dumped
    assert RECORD_FILE[record["record"]] == "matched"
    assert isinstance(validate_record(wire(record)), Posted)


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("posting_rejected", "rejected"),
        ("posting_reversed", "reversed"),
        ("duplicate_posting", "posted"),
        ("orphan_posting", "posted"),
    ],
)
def test_posting_exceptions(kind: str, status: str) -> None:
    posting = POSTING.model_dump() | {"status": status}
    if status == "rejected":
        posting["reason"] = "accounting period closed"
    case = None if kind == "orphan_posting" else CASE
    record = posting_record(kind, posting, case)
    assert set(record) == {
        *COMMON_FIELDS,
        "kind",
        "reason",
        "age_business_days",
        "idempotency_key",
        "posting",
    }
    assert record["record"] == record["reason"] == kind
    assert record["kind"] == "posting"
    assert record["confidence"] is None
    assert record["age_business_days"] == 0
    assert record["remittances"] == [] and record["bank_transactions"] == []
    assert record["posting"]["status"] == status
    assert RECORD_FILE[kind] == "unmatched"
    if case is None:
        assert record["case_id"] == case_id(["post-1"])
        assert record["entity"] == "NORTH"  # the ERP said so
        assert record["rule"] is None
    else:
        assert record["case_id"] == "case-123"
    assert isinstance(validate_record(wire(record)), PostingException)


def test_posting_outcome_quotes_case_items_when_the_index_has_them() -> None:
    era = remittance("rem-1", 94500)
    case = CASE | {"remittances": [era.ref], "bank_transactions": []}
    record = posting_record("posting_rejected", POSTING.model_dump(), case)
    assert record["remittances"] == [era.ref]
    PostingException.model_validate(wire(record))


def test_posting_amount_is_a_plain_decimal_string() -> None:
    record = posting_record("posted", POSTING.model_dump() | {"amount": Decimal("1E+2")}, CASE)
    assert record["posting"]["amount"] == "100"
    Posted.model_validate(wire(record))


def test_posting_with_unusable_amount_is_refused() -> None:
    with pytest.raises(TypeError):
        posting_record("posted", POSTING.model_dump() | {"amount": 945.0}, CASE)


# --- schemas ----------------------------------------------------------------------------------


def test_record_file_covers_every_record_type() -> None:
    assert set(RECORD_FILE) == set(RECORD_MODELS)
    assert set(RECORD_FILE.values()) == {
        "matched",
        "variance",
        "unmatched",
        "erp_postings",
        "dead_letter",
    }
    assert RECORD_FILE["erp_posting"] == "erp_postings"
    assert RECORD_FILE["variance"] == "variance"


def test_schemas_name_the_design_fields() -> None:
    schemas = record_schemas()
    for name in ("matched", "variance", "unmatched", "erp_posting", "posted"):
        assert set(COMMON_FIELDS) <= set(schemas[name]["properties"]), name
        assert set(COMMON_FIELDS) <= set(schemas[name]["required"]), name
        assert schemas[name]["additionalProperties"] is False
    assert {"variance"} <= set(schemas["variance"]["required"])
    assert {"kind", "reason", "age_business_days"} <= set(schemas["unmatched"]["required"])
    assert {"idempotency_key", "journal_date", "currency", "lines"} <= set(
        schemas["erp_posting"]["required"]
    )
    line = schemas["erp_posting"]["$defs"]["JournalLine"]
    assert set(line["required"]) == {"account", "debit", "credit", "memo", "dimensions"}
    assert line["properties"]["debit"]["type"] == "string"  # money is never a JSON number
    assert set(schemas["matched"]["$defs"]["RemittanceRef"]["required"]) == REMITTANCE_REF_FIELDS
    assert set(schemas["matched"]["$defs"]["BankTransactionRef"]["required"]) == BANK_REF_FIELDS
    assert {"stage", "reason", "source", "payload"} <= set(schemas["dead_letter"]["properties"])
    assert all(model.model_config.get("extra") == "forbid" for model in RECORD_MODELS.values())


def _valid_matched() -> dict[str, Any]:
    decision = decide("matched", (remittance("rem-1", 94500),), (deposit("bank-1", 94500),))
    return wire(records_of(decision)[0])


@pytest.mark.parametrize(
    "breakage",
    [
        {"extra_field": 1},
        {"decided_at": "2025-03-18T00:00:00"},  # naive
        {"confidence": 1.5},
        {"remittances": [{"event_id": "x", "amount": "1.00"}]},
    ],
)
def test_models_reject_malformed_records(breakage: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Matched.model_validate(_valid_matched() | breakage)


def test_models_reject_money_as_numbers_and_inconsistent_amounts() -> None:
    record = _valid_matched()
    bad_ref = record["remittances"][0] | {"amount": 945.0}
    with pytest.raises(ValidationError):
        Matched.model_validate(record | {"remittances": [bad_ref]})
    with pytest.raises(ValidationError, match="Σ bank − Σ remittance"):
        Variance.model_validate(
            record | {"record": "variance", "variance": {"amount": "1.00", "reason": "fee"}}
        )
    with pytest.raises(ValidationError, match="exactly that one item"):
        Unmatched.model_validate(
            record
            | {
                "record": "unmatched",
                "confidence": None,
                "kind": "remittance",
                "reason": "ambiguous",
                "age_business_days": 0,
            }
        )


def test_journal_model_rejects_unbalanced_and_two_sided_lines() -> None:
    dims = {"entity": "NORTH", "payer": None, "facility": None}
    base = _valid_matched() | {
        "record": "erp_posting",
        "idempotency_key": "idem-1",
        "journal_date": "2025-03-17",
        "currency": "USD",
    }

    def line(debit: str, credit: str) -> dict[str, Any]:
        return {"account": "A", "debit": debit, "credit": credit, "memo": "m", "dimensions": dims}

    ErpPosting.model_validate(base | {"lines": [line("1.00", "0.00"), line("0.00", "1.00")]})
    with pytest.raises(ValidationError, match="does not balance"):
        ErpPosting.model_validate(base | {"lines": [line("1.00", "0.00"), line("0.00", "0.99")]})
    with pytest.raises(ValidationError, match="one non-zero side"):
        ErpPosting.model_validate(base | {"lines": [line("1.00", "1.00"), line("0.00", "0.00")]})
    with pytest.raises(ValidationError):
        ErpPosting.model_validate(base | {"lines": [line("-1.00", "0.00"), line("0.00", "-1.00")]})


def test_money_text_matches_the_schema_pattern() -> None:
    for cents, text in ((0, "0.00"), (5, "0.05"), (-1030, "-10.30"), (94500, "945.00")):
        assert money_text(cents) == text
        assert Decimal(text) * 100 == cents
