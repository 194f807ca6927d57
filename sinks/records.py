"""Outcome records as plain dicts (DESIGN.md §4), built on the hot path and serialised by orjson.

Builders are pure: the same decision, times and ``as_of`` give the same records, so a replay
regenerates them byte for byte (``emitted_at`` aside, which is wall clock by definition). Items
are quoted in canonical order (date, then id) and case ids hash the sorted event ids, so nothing
depends on the order in which events arrived. :mod:`remitflow.outcomes` holds the schemas these
dicts are tested against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from matchers.base import Decision, ordered
from remitflow.calendar import business_days_between
from remitflow.identity import content_id
from remitflow.outcomes import PostingOutcomeKind
from state.items import OpenItem, money_text

Record = dict[str, Any]

# Output file stem (embedded mode: DIR/<stem>.jsonl) of each record type.
RECORD_FILE: dict[str, str] = {
    "matched": "matched",
    "posted": "matched",
    "variance": "variance",
    "unmatched": "unmatched",
    "posting_rejected": "unmatched",
    "posting_reversed": "unmatched",
    "orphan_posting": "unmatched",
    "duplicate_posting": "unmatched",
    "erp_posting": "erp_postings",
    "dead_letter": "dead_letter",
}

_POSTING_FIELDS = (
    "event_id",
    "posting_id",
    "idempotency_key",
    "status",
    "amount",
    "posted_at",
    "reason",
    "source",
)


def case_id(event_ids: Iterable[str]) -> str:
    """The case's id: a hash of its sorted event ids, so a replay regenerates it."""
    return _case_id(tuple(sorted(event_ids)))


@lru_cache(maxsize=4096)  # a case's records, journal and audit lines all ask for it in turn
def _case_id(ids: tuple[str, ...]) -> str:
    return content_id("case", ids)


def iso(moment: datetime) -> str:
    """ISO-8601 of a tz-aware datetime; a naive one cannot be placed in time, so it is a bug."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("record timestamps must be timezone-aware")
    return moment.isoformat()


def case_entity(decision: Decision) -> str | None:
    """The case's entity: the deposits' (where the cash landed) before the remittances'."""
    for item in (*ordered(decision.deposits), *ordered(decision.remittances)):
        if item.entity is not None:
            return item.entity
    return None


def bank_minus_remittance_cents(decision: Decision) -> int:
    return sum(d.cents for d in decision.deposits) - sum(r.cents for r in decision.remittances)


def decision_records(
    decision: Decision,
    *,
    decided_at: datetime,
    emitted_at: datetime,
    as_of: date,
    header: Record | None = None,
) -> list[Record]:
    """The records of one decision: one for a case, one per item when unmatched.

    ``as_of`` is the event-time business date of the decision, from which an unmatched item's
    age is counted. ``header``: the case's :func:`case_header` for these times, when the
    caller built it already (it is copied, not changed).
    """
    decided, emitted = iso(decided_at), iso(emitted_at)
    if decision.outcome == "unmatched":
        reason = _reason(decision)
        return [
            _unmatched(item, decision.rule, reason, decided, emitted, as_of)
            for item in ordered(decision.items)
        ]
    record = (
        dict(header)
        if header is not None
        else case_header(decision, decision.outcome, decided, emitted)
    )
    if decision.outcome == "variance":
        record["variance"] = {
            "amount": money_text(bank_minus_remittance_cents(decision)),
            "reason": _reason(decision),
        }
    return [record]


def case_header(decision: Decision, record: str, decided: str, emitted: str) -> Record:
    """The fields every record of a matched or variance case starts with."""
    return {
        "record": record,
        "case_id": case_id(item.event_id for item in decision.items),
        "entity": case_entity(decision),
        "rule": decision.rule,
        "confidence": decision.confidence,
        "decided_at": decided,
        "emitted_at": emitted,
        "remittances": [item.ref for item in ordered(decision.remittances)],
        "bank_transactions": [item.ref for item in ordered(decision.deposits)],
    }


def _reason(decision: Decision) -> str:
    if not decision.reason:
        raise ValueError(f"a {decision.outcome} decision ({decision.rule}) must give a reason")
    return decision.reason


def _unmatched(
    item: OpenItem, rule: str, reason: str, decided: str, emitted: str, as_of: date
) -> Record:
    is_remittance = item.kind == "remittance"
    return {
        "record": "unmatched",
        "case_id": case_id((item.event_id,)),
        "entity": item.entity,
        "rule": rule,
        "confidence": None,
        "decided_at": decided,
        "emitted_at": emitted,
        "kind": item.kind,
        "reason": reason,
        "age_business_days": max(0, business_days_between(item.day, as_of)),
        "remittances": [item.ref] if is_remittance else [],
        "bank_transactions": [] if is_remittance else [item.ref],
    }


def posting_outcome_record(
    kind: PostingOutcomeKind,
    *,
    posting: Mapping[str, Any],
    case: Mapping[str, Any] | None,
    decided_at: datetime,
    emitted_at: datetime,
) -> Record:
    """What an ERP confirmation did to its case: ``posted`` closes it, the rest are exceptions.

    ``case`` holds the ``case_id``, ``entity`` and ``rule`` of the journal the confirmation's
    idempotency key names (and, when the case index keeps them, its ``remittances`` and
    ``bank_transactions``); ``None`` for an orphan, whose case id is then derived from the
    confirmation's own event id and whose entity is the one the ERP gave.
    """
    fragment = posting_fragment(posting)
    if case is None:
        header = {
            "case_id": case_id((fragment["event_id"],)),
            "entity": posting.get("entity"),
            "rule": None,
        }
    else:
        header = {"case_id": case["case_id"], "entity": case["entity"], "rule": case["rule"]}
    record: Record = {
        "record": kind,
        **header,
        "confidence": 1.0 if kind == "posted" else None,
        "decided_at": iso(decided_at),
        "emitted_at": iso(emitted_at),
    }
    if kind != "posted":
        record["kind"] = "posting"
        record["reason"] = kind
        record["age_business_days"] = 0
    record["idempotency_key"] = fragment["idempotency_key"]
    record["posting"] = fragment
    record["remittances"] = list(case.get("remittances", ())) if case else []
    record["bank_transactions"] = list(case.get("bank_transactions", ())) if case else []
    return record


def posting_fragment(posting: Mapping[str, Any]) -> Record:
    """The confirmation as records quote it, JSON-ready whether it was dumped in python or json
    mode (Decimal amount → string, datetime → ISO, Source → dict)."""
    fragment = {name: posting.get(name) for name in _POSTING_FIELDS}
    amount = fragment["amount"]
    if isinstance(amount, Decimal | int) and not isinstance(amount, bool):
        fragment["amount"] = format(amount, "f")  # never exponent notation
    elif amount is not None and not isinstance(amount, str):
        raise TypeError(f"posting amount must be a decimal or a string, not {type(amount)}")
    posted_at = fragment["posted_at"]
    if isinstance(posted_at, datetime):
        fragment["posted_at"] = iso(posted_at)
    source = fragment["source"]
    if source is not None and not isinstance(source, Mapping):
        fragment["source"] = source.model_dump()
    elif isinstance(source, Mapping):
        fragment["source"] = dict(source)
    return fragment
