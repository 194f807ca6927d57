"""The Redis case index on a real server: what operators read, whatever order records came in.

Records are built by the real builders (decisions, journals, ERP confirmations) and folded in
with :meth:`CaseIndex.apply`; every test writes under its own key prefix and deletes it after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from matchers.base import Decision
from remitflow.events import Remittance, midnight_utc
from remitflow.identity import PhiHasher
from remitflow.outcomes import PostingOutcomeKind
from remitflow.refdata import ReferenceData
from sinks.journal import journal_record
from sinks.records import RECORD_FILE, case_id, decision_records, posting_outcome_record
from sources.base import ParseContext
from sources.x12 import parse_bytes
from state.case_index import CaseIndex
from state.items import remittance_item
from tests.conftest import sample_bytes
from tests.factories import LATE_AFTER, MONDAY, deposit, remittance
from tests.test_confirm_and_clock_lifecycle import T0, posting
from tests.test_era835 import PHI_VALUES
from tests.test_services_smoke import REDIS_URL, _servers_wanted

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not _servers_wanted(), reason="local servers not running"),
]

Record = tuple[str, dict[str, Any]]
DAY_S = 86_400
DECIDED = midnight_utc(MONDAY)
AS_OF = MONDAY + timedelta(days=10)


# -- an index of its own per test ---------------------------------------------------------


def _client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=5)


def _drop(prefix: str) -> None:
    client = _client()
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=500):
            client.delete(key)
    finally:
        client.close()


@contextmanager
def fresh_index(ttl_days: int = 2) -> Iterator[tuple[CaseIndex, str]]:
    prefix = f"ci-{uuid4().hex[:10]}"
    try:
        yield CaseIndex(REDIS_URL, prefix, ttl_days=ttl_days), prefix
    finally:
        _drop(prefix)


@pytest.fixture
def index() -> Iterator[tuple[CaseIndex, str]]:
    with fresh_index() as made:
        yield made


def stored_strings(prefix: str) -> list[str]:
    """Every key, hash field, hash value and set member under ``prefix``."""
    client = _client()
    out: list[str] = []
    try:
        for raw_key in client.scan_iter(match=f"{prefix}:*", count=500):
            key = str(raw_key)
            out.append(key)
            kind = str(client.type(key))
            if kind == "hash":
                for field, value in client.hgetall(key).items():
                    out += [str(field), str(value)]
            elif kind == "set":
                out += [str(member) for member in client.smembers(key)]
            else:
                raise AssertionError(f"unexpected {kind} at {key}")
    finally:
        client.close()
    return out


# -- records of a few cases, by the real builders -----------------------------------------


def journal_of(decision: Decision) -> dict[str, Any]:
    journal = journal_record(decision, ReferenceData(), decided_at=DECIDED, emitted_at=T0)
    assert journal is not None
    return journal


def records_of(decision: Decision) -> list[Record]:
    return [
        (RECORD_FILE[r["record"]], r)
        for r in decision_records(decision, decided_at=DECIDED, emitted_at=T0, as_of=AS_OF)
    ]


def confirmation(
    kind: PostingOutcomeKind, value: dict[str, Any], journal: dict[str, Any] | None
) -> Record:
    record = posting_outcome_record(
        kind,
        posting=value,
        case=journal,
        decided_at=datetime.fromisoformat(value["posted_at"]),
        emitted_at=T0,
    )
    return (RECORD_FILE[kind], record)


POSTED_R = remittance("r-posted", 100_000, trace="12524965")
POSTED_D = deposit("d-posted", 100_000, trace="0012524965")
POSTED_CASE = Decision("matched", "trace_exact", 1.0, (POSTED_R,), (POSTED_D,))
POSTED_JOURNAL = journal_of(POSTED_CASE)

MATCHED_CASE = Decision(
    "matched",
    "trace_exact",
    1.0,
    (remittance("r-matched", 5_000, trace="99887"),),
    (deposit("d-matched", 5_000, trace="99887"),),
)
MATCHED_JOURNAL = journal_of(MATCHED_CASE)

VARIANCE_CASE = Decision(
    "variance",
    "fee",
    0.9,
    (remittance("r-variance", 100_000, trace="1QG11111111"),),
    (deposit("d-variance", 99_000, trace="1qg11111111"),),
    reason="fee",
    variance_cents=-1_000,
)
VARIANCE_JOURNAL = journal_of(VARIANCE_CASE)

LOOSE_R = remittance("r-loose", 25_000, trace="EFT2024A")
LOOSE_D = deposit("d-loose", 25_000)
UNMATCHED_CASE = Decision(
    "unmatched", "ambiguous", None, (LOOSE_R,), (LOOSE_D,), reason="ambiguous"
)

ORPHAN = posting("idem-of-no-journal", "p-orphan", entity="H002")

RECORDS: list[Record] = [
    *records_of(POSTED_CASE),
    ("erp_postings", POSTED_JOURNAL),
    confirmation(
        "posted",
        posting(POSTED_JOURNAL["idempotency_key"], "p-posted", posted_at=T0 + timedelta(hours=1)),
        POSTED_JOURNAL,
    ),
    *records_of(MATCHED_CASE),
    ("erp_postings", MATCHED_JOURNAL),
    *records_of(VARIANCE_CASE),
    ("erp_postings", VARIANCE_JOURNAL),
    confirmation(
        "posting_rejected",
        posting(VARIANCE_JOURNAL["idempotency_key"], "p-rejected", status="rejected"),
        VARIANCE_JOURNAL,
    ),
    *records_of(UNMATCHED_CASE),
    confirmation("orphan_posting", ORPHAN, None),
    # What the sink also passes on and the index must ignore.
    ("audit", {"record": "audit", "event_id": "p-posted", "case_id": POSTED_JOURNAL["case_id"]}),
    ("parse_issues", {"record": "parse_issue", "code": "x"}),
]

POSTED = POSTED_JOURNAL["case_id"]
MATCHED = MATCHED_JOURNAL["case_id"]
VARIANCE = VARIANCE_JOURNAL["case_id"]
LOOSE_REMITTANCE = case_id(["r-loose"])
LOOSE_DEPOSIT = case_id(["d-loose"])
ORPHANED = case_id(["p-orphan"])
ALL_CASES = (POSTED, MATCHED, VARIANCE, LOOSE_REMITTANCE, LOOSE_DEPOSIT, ORPHANED)
TRACES = ("12524965", "99887", "1QG11111111", "EFT2024A", "BRd-loose")


def views(cases: CaseIndex) -> dict[str, Any]:
    """Everything an operator can read of the index."""
    return {
        "cases": {cid: cases.get(cid) for cid in ALL_CASES},
        "traces": {trace: cases.by_trace(trace) for trace in TRACES},
        "exceptions": cases.exceptions(),
    }


# -- what a case shows --------------------------------------------------------------------


def test_a_posted_case_shows_its_decision_lineage_journal_and_posting(
    index: tuple[CaseIndex, str],
) -> None:
    cases, _ = index
    assert cases.apply(RECORDS) == len(ALL_CASES)
    case = cases.get(POSTED)
    assert case is not None
    assert (case["outcome"], case["status"], case["posting_status"]) == (
        "matched",
        "posted",
        "posted",
    )
    assert (case["entity"], case["payer"], case["rule"]) == ("H001", "1673696652", "trace_exact")
    assert case["confidence"] == "1.0"
    assert case["decided_at"] == DECIDED.isoformat()
    # Lineage: every event of the case, with where it was read.
    assert case["remittances"] == [POSTED_R.ref]
    assert case["remittances"][0]["source"] == {
        "system": "x12-835",
        "file": "era.835",
        "record": "0001",
        "offset": 0,
    }
    assert case["bank_transactions"] == [POSTED_D.ref]
    assert case["bank_transactions"][0]["source"]["system"] == "bai2"
    # From the journal.
    assert case["idempotency_key"] == POSTED_JOURNAL["idempotency_key"]
    assert case["journal_date"] == "2024-03-04"
    # From the confirmation: the posting event, and when the ERP posted it.
    assert [p["event_id"] for p in case["postings"]] == ["p-posted"]
    assert case["postings"][0]["posting_id"] == "ERP-1"
    assert case["posting_decided_at"] == (T0 + timedelta(hours=1)).isoformat()


def test_a_case_without_confirmation_has_its_decisions_outcome_as_status(
    index: tuple[CaseIndex, str],
) -> None:
    cases, _ = index
    cases.apply(RECORDS)
    matched = cases.get(MATCHED)
    assert matched is not None
    assert (matched["status"], matched["postings"]) == ("matched", [])
    assert "posting_status" not in matched
    assert matched["idempotency_key"] == MATCHED_JOURNAL["idempotency_key"]

    variance = cases.get(VARIANCE)
    assert variance is not None
    assert (variance["outcome"], variance["status"]) == ("variance", "posting_rejected")
    assert (variance["reason"], variance["variance_amount"]) == ("fee", "-10.00")
    assert variance["rule"] == "fee" and variance["confidence"] == "0.9"

    loose = cases.get(LOOSE_REMITTANCE)
    assert loose is not None
    assert (loose["status"], loose["reason"], loose["rule"]) == (
        "unmatched",
        "ambiguous",
        "ambiguous",
    )
    assert loose["age_business_days"] == "8"  # MONDAY → 10 calendar days later
    assert (loose["remittances"], loose["bank_transactions"]) == ([LOOSE_R.ref], [])
    deposit_case = cases.get(LOOSE_DEPOSIT)
    assert deposit_case is not None
    assert deposit_case["bank_transactions"] == [LOOSE_D.ref] and deposit_case["payer"] == ""

    orphan = cases.get(ORPHANED)
    assert orphan is not None
    assert (orphan["outcome"], orphan["status"], orphan["entity"]) == (
        "orphan_posting",
        "orphan_posting",
        "H002",
    )
    assert orphan["idempotency_key"] == "idem-of-no-journal"
    assert cases.get(case_id(["nothing-like-it"])) is None


def test_by_trace_finds_a_case_however_the_trace_is_written(
    index: tuple[CaseIndex, str],
) -> None:
    cases, _ = index
    cases.apply(RECORDS)

    def found(trace: str) -> list[str]:
        return [case["case_id"] for case in cases.by_trace(trace)]

    assert found("12524965") == found("0012524965") == found(" 125-249-65 ") == [POSTED]
    assert found("1qg11111111") == found("001QG11111111") == [VARIANCE]
    assert found("eft2024a") == [LOOSE_REMITTANCE]
    assert found("brd-loose") == [LOOSE_DEPOSIT]  # a deposit by its bank reference
    assert found("4242424242") == [] and found("") == [] and found("---") == []


def test_exceptions_are_what_operators_must_work(index: tuple[CaseIndex, str]) -> None:
    cases, _ = index
    cases.apply(RECORDS)
    listed = {case["case_id"]: case["status"] for case in cases.exceptions()}
    assert listed == {
        VARIANCE: "posting_rejected",
        LOOSE_REMITTANCE: "unmatched",
        LOOSE_DEPOSIT: "unmatched",
        ORPHANED: "orphan_posting",
    }
    assert POSTED not in listed and MATCHED not in listed


def test_a_rejected_journal_leaves_the_exceptions_once_the_erp_posts_it(
    index: tuple[CaseIndex, str],
) -> None:
    cases, _ = index
    key = MATCHED_JOURNAL["idempotency_key"]
    cases.apply([*records_of(MATCHED_CASE), ("erp_postings", MATCHED_JOURNAL)])
    assert cases.exceptions() == []
    rejected = posting(key, "p-rej", status="rejected")
    cases.apply([confirmation("posting_rejected", rejected, MATCHED_JOURNAL)])
    assert [(c["case_id"], c["status"]) for c in cases.exceptions()] == [
        (MATCHED, "posting_rejected")
    ]
    fixed = posting(key, "p-ok", posting_id="ERP-2", posted_at=T0 + timedelta(hours=1))
    cases.apply([confirmation("posted", fixed, MATCHED_JOURNAL)])
    assert cases.exceptions() == []


def test_a_variance_case_is_an_exception_before_any_confirmation(
    index: tuple[CaseIndex, str],
) -> None:
    cases, _ = index
    cases.apply([*records_of(VARIANCE_CASE), ("erp_postings", VARIANCE_JOURNAL)])
    assert [c["status"] for c in cases.exceptions()] == ["variance"]


# -- idempotent and order-free ------------------------------------------------------------


def test_applying_the_same_batch_again_changes_nothing(index: tuple[CaseIndex, str]) -> None:
    cases, prefix = index
    cases.apply(RECORDS)
    once, stored = views(cases), sorted(stored_strings(prefix))
    assert cases.apply(RECORDS) == len(ALL_CASES)
    assert views(cases) == once
    assert sorted(stored_strings(prefix)) == stored  # not one copy more in any hash or set


def test_a_decision_after_its_posted_confirmation_leaves_the_case_posted(
    index: tuple[CaseIndex, str],
) -> None:
    cases, _ = index
    posted = [r for r in RECORDS if r[1].get("record") == "posted"]
    cases.apply(posted)
    early = cases.get(POSTED)
    assert early is not None and early["status"] == "posted" and "outcome" not in early
    cases.apply([*records_of(POSTED_CASE), ("erp_postings", POSTED_JOURNAL)])
    case = cases.get(POSTED)
    assert case is not None
    assert (case["status"], case["outcome"], case["rule"]) == ("posted", "matched", "trace_exact")
    assert POSTED not in {c["case_id"] for c in cases.exceptions()}


def _canonical_views() -> dict[str, Any]:
    with fresh_index() as (cases, _):
        cases.apply(RECORDS)
        return views(cases)


CANONICAL: list[dict[str, Any]] = []  # filled on first use: the module imports without Redis


@settings(max_examples=20, deadline=None)
@given(order=st.permutations(RECORDS), batch=st.integers(min_value=1, max_value=len(RECORDS)))
def test_records_in_any_order_and_batches_give_the_same_index(
    order: list[Record], batch: int
) -> None:
    if not CANONICAL:
        CANONICAL.append(_canonical_views())
    with fresh_index() as (cases, _):
        for start in range(0, len(order), batch):
            cases.apply(order[start : start + batch])
        assert views(cases) == CANONICAL[0]


@pytest.mark.parametrize("rejected_first", [True, False], ids=["in-order", "posted-first"])
def test_the_latest_confirmation_decides_the_status_whatever_the_order(
    rejected_first: bool,
) -> None:
    """An ERP rejects a journal, then posts it after a fix: the case is posted, even when a
    replay (or a rebuild from the output topics, where the two live in different topics)
    folds the posting in before the rejection."""
    key = POSTED_JOURNAL["idempotency_key"]
    rejected = confirmation(
        "posting_rejected", posting(key, "p-rej", status="rejected"), POSTED_JOURNAL
    )
    posted = confirmation(
        "posted",
        posting(key, "p-ok", posting_id="ERP-2", posted_at=T0 + timedelta(hours=1)),
        POSTED_JOURNAL,
    )
    with fresh_index() as (cases, _):
        cases.apply([rejected, posted] if rejected_first else [posted, rejected])
        case = cases.get(POSTED)
        assert case is not None
        assert [p["event_id"] for p in case["postings"]] == ["p-rej", "p-ok"]
        assert case["status"] == "posted"
        assert case["posting_decided_at"] == (T0 + timedelta(hours=1)).isoformat()


# -- no PHI, and expiry -------------------------------------------------------------------


def test_nothing_stored_holds_phi_from_the_remittance(index: tuple[CaseIndex, str]) -> None:
    """A real 835 with patient names, member ids and CLP01s, through to the index."""
    data = sample_bytes("LinuxForHealth-x12__managed-care.835")
    phi = [value.decode() for value in PHI_VALUES]
    assert all(value.encode() in data for value in phi)  # the search below can find something
    parsed = list(parse_bytes(data, ParseContext(file="era.835", phi=PhiHasher(b"k"))))
    (era,) = [event for event in parsed if isinstance(event, Remittance)]
    item = remittance_item(era, "rushmore", LATE_AFTER)
    cash = deposit("d-phi", item.cents, day=item.day, trace=era.trace_number)
    matched = Decision("matched", "trace_exact", 1.0, (item,), (cash,))
    journal = journal_of(matched)
    alone = Decision("unmatched", "no_counterpart", None, (item,), (), reason="no_counterpart")
    cases, prefix = index
    cases.apply(
        [
            *records_of(matched),
            ("erp_postings", journal),
            confirmation("posted", posting(journal["idempotency_key"], "p-phi"), journal),
            *records_of(alone),
        ]
    )

    stored = stored_strings(prefix)
    assert any("7170066655" in text for text in stored)  # the trace is there: values were read
    for value in phi:
        assert not [text for text in stored if value.lower() in text.lower()], value
    case = cases.get(journal["case_id"])
    assert case is not None and case["status"] == "posted"


def test_case_and_trace_keys_expire_after_ttl_days(index: tuple[CaseIndex, str]) -> None:
    cases, prefix = index
    cases.apply(RECORDS)
    client = _client()
    try:
        case_keys = list(client.scan_iter(match=f"{prefix}:case:*", count=500))
        trace_keys = list(client.scan_iter(match=f"{prefix}:trace:*", count=500))
        assert sorted(case_keys) == sorted(f"{prefix}:case:{cid}" for cid in ALL_CASES)
        assert trace_keys  # the traces are indexed, and expire like their cases
        for key in (*case_keys, *trace_keys):
            assert DAY_S < client.ttl(key) <= 2 * DAY_S, key
    finally:
        client.close()


@pytest.mark.parametrize("replay_first", [True, False], ids=["replay-first", "run-first"])
def test_a_replays_end_of_input_unmatched_item_is_superseded_by_the_runs_match(
    replay_first: bool,
) -> None:
    """A replay decides at the end of what it read; an item whose counterpart it did not read
    is unmatched there, while the run matched it. The match stands, in either order."""
    alone = Decision("unmatched", "end_of_input", None, (LOOSE_R,), (), reason="end_of_input")
    matched = Decision("matched", "trace_exact", 1.0, (LOOSE_R,), (LOOSE_D,))
    batches = [records_of(alone), records_of(matched)]
    with fresh_index() as (cases, _):
        for batch in batches if replay_first else batches[::-1]:
            cases.apply(batch)
        view = cases.get(case_id(["r-loose"]))
        assert view is not None and view["status"] == "superseded"
        assert view["superseded_by"] == [case_id(["d-loose", "r-loose"])]
        assert case_id(["r-loose"]) not in {c["case_id"] for c in cases.exceptions()}
        only_unmatched = Decision("unmatched", "no_counterpart", None, (), (LOOSE_D,), reason="x")
        cases.apply(records_of(only_unmatched))  # the deposit was in the match too
        assert cases.get(case_id(["d-loose"]))["status"] == "superseded"  # type: ignore[index]
