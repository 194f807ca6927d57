"""BAI2 parser: the real samples, continuations, control totals, identity and streaming."""

from __future__ import annotations

import io
from collections import Counter
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from remitflow.events import BankTransaction, Source, construct, event_from_json, event_to_json
from remitflow.records import DeadLetter, ParseIssue
from sources.bai2 import parse, parse_bytes
from sources.bai2.records import logical_records
from sources.base import ParseContext, Parsed
from tests.conftest import sample_bytes

SVB = "bai2__svb_us_example.bai2"
SPEC = "moov-io-bai2__sample2.txt"
MULTI = "moov-io-bai2__sample3.txt"
CONT = "moov-io-bai2__sample4-continuations-newline-delimited.txt"
SYNTH = "synthetic__bai2_hcclaimpmt_ach.bai2"
BAI2_SAMPLES = [SVB, SPEC, MULTI, CONT, SYNTH]
CTX = ParseContext(file="test.bai2")

HEADER = b"01,SENDER,RECEIVER,250318,0600,1,,,2/\n02,RECEIVER,SENDER,1,250317,2400,USD,2/\n"


def run(data: bytes, ctx: ParseContext = CTX) -> list[Parsed]:
    return list(parse_bytes(data, ctx))


def events(items: list[Parsed]) -> list[BankTransaction]:
    return [i for i in items if isinstance(i, BankTransaction)]


def dead(items: list[Parsed]) -> list[DeadLetter]:
    return [i for i in items if isinstance(i, DeadLetter)]


def issues(items: list[Parsed]) -> list[ParseIssue]:
    return [i for i in items if isinstance(i, ParseIssue)]


def content(e: BankTransaction) -> dict[str, Any]:
    """An event without where it was read (offsets change with line endings)."""
    return e.model_dump(exclude={"source"})


def comparable(items: list[Parsed]) -> list[Any]:
    """Items as plain data, without the wall-clock emission time of dead letters."""
    return [i.model_dump(exclude={"emitted_at"}) for i in items]


def wrap(body: bytes) -> bytes:
    """A one-account file around some records (trailer totals deliberately left out)."""
    return HEADER + b"03,000123456789,USD,,/\n" + body + b"49,,/\n98,,,/\n99,,,/\n"


# --- every sample ------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAI2_SAMPLES)
def test_sample_parses_into_valid_events_only(name: str) -> None:
    items = run(sample_bytes(name))
    assert not dead(items)
    evs = events(items)
    assert evs
    assert len({e.event_id for e in evs}) == len(evs)
    for e in evs:
        assert event_from_json(event_to_json(e)) == e  # passes the validating boundary
        assert e.source.system == "bai2" and e.source.file == "test.bai2"
        assert e.source.record is not None and e.source.record.startswith("line ")
        assert e.occurred_at.tzinfo is not None
        assert isinstance(e.amount, Decimal) and e.amount > 0


@pytest.mark.parametrize("name", [SVB, SPEC, MULTI, SYNTH])
def test_control_totals_of_consistent_samples_hold(name: str) -> None:
    """The spec's own example (sample2) and the others balance under the BAI2 v2 rules."""
    assert issues(run(sample_bytes(name))) == []


def test_svb_88_text_and_two_groups() -> None:
    evs = events(run(sample_bytes(SVB)))
    assert [(e.type_code, e.amount, e.as_of_date, e.bank_reference) for e in evs] == [
        ("142", Decimal("4901.96"), date(2022, 2, 1), "172629"),
        ("142", Decimal("9058.00"), date(2022, 2, 2), "150675"),
    ]
    for e in evs:
        assert e.account == "1234567890" and e.currency == "USD"
        assert e.text == "SOME PAYMENT ACH OFFSET"  # the whole text is in the 88
        assert (e.direction, e.category) == ("credit", "ach_credit")
        assert e.customer_reference is None


def test_spec_example_funds_types_and_continuations() -> None:
    evs = events(run(sample_bytes(SPEC)))
    got = [(e.account, e.type_code, e.amount, e.bank_reference, e.customer_reference) for e in evs]
    assert got == [
        ("0123456789", "115", Decimal("4500.00"), None, None),  # S: three extra amounts skipped
        ("9876543210", "115", Decimal("5000.00"), None, None),
        ("4589761203", "218", Decimal("200000.00"), "SP4738", "YRC065321"),  # V
        ("4589761203", "195", Decimal("100000.00"), None, None),  # funds type 1
    ]
    lockbox, lockbox2, letter_of_credit, wire = evs
    assert lockbox.text == "" and lockbox2.text == "LOCK BOX NO.68751"
    assert letter_of_credit.text == "PROCEEDS OF LETTER OF CREDIT FROM THE ARAMCO OIL CO"
    assert letter_of_credit.value_date == date(2004, 6, 22)
    assert lockbox.value_date is None
    assert {e.as_of_date for e in evs} == {date(2004, 6, 20)}
    assert lockbox.category == "lockbox" and wire.category == "wire"


def test_several_records_per_line_and_text_running_onto_next_line() -> None:
    items = run(sample_bytes(MULTI))
    evs = events(items)
    assert len(evs) == 26
    # Credits and debits add up to the 03 records' 100/400 summaries (397.13 and 594.18).
    assert sum(e.amount for e in evs if e.direction == "credit") == Decimal("397.13")
    assert sum(e.amount for e in evs if e.direction == "debit") == Decimal("594.18")
    on_line_3 = [e for e in evs if e.source.record == "line 3"]
    assert [(e.amount, e.text) for e in on_line_3] == [
        (Decimal("25.00"), "TRANSFER   PAYPAL             PPD"),
        (Decimal("5.00"), "TRANSFER   MSPBNA BANK        PPD"),
    ]
    offsets = [e.source.offset for e in on_line_3]
    assert offsets == [173, 224]  # each record's own byte offset in the file
    # Line 18's text goes on at line 19 without an 88, then an 88 follows.
    wrapped = next(e for e in evs if e.source.record == "line 18")
    assert wrapped.text == "111111     ACH_SETL           1111111111 111111111111111 1111111111"
    assert Counter(e.account for e in evs) == {"11111111": 18, "1111111": 8}


def test_unterminated_text_with_commas_and_key_value_88s() -> None:
    items = run(sample_bytes(CONT))
    evs = events(items)
    assert len(evs) == 17
    first = evs[0]
    assert (first.type_code, first.amount, first.bank_reference, first.customer_reference) == (
        "447",
        Decimal("600.00"),
        "SPB2322984714570",
        "1111",
    )
    assert first.text == (
        "ACH Credit Payment,Entry Description: EXP; -, SEC: CCD, Client Ref ID: 1111, "
        "GS ID: SPB2322984714570 EREF: 1111 DBNM: TEST INC CACT: ACHCONTROLOUTUSD01"
    )
    ach_return = next(e for e in evs if e.type_code == "557")
    assert (ach_return.direction, ach_return.category) == ("debit", "return")
    assert ach_return.text.endswith("DBNM: SAMPLE INC. CABA: 021000089")
    sweep = next(e for e in evs if e.type_code == "275")
    assert sweep.category == "zba" and not sweep.is_payer_cash


def test_sample4_trailers_are_inconsistent_and_reported_not_fixed() -> None:
    """sample4's hand-written trailers do not add up: each one is flagged where it is."""
    got = [(i.code, i.source.record, i.difference) for i in issues(run(sample_bytes(CONT)))]
    assert got == [
        ("control_total_mismatch", "line 22", Decimal("-12601693417.22")),
        ("record_count_mismatch", "line 22", Decimal(8)),
        ("control_total_mismatch", "line 110", Decimal("-6600480.96")),
        ("record_count_mismatch", "line 110", Decimal(-80)),
        ("control_total_mismatch", "line 115", Decimal("12601613417.62")),
        ("record_count_mismatch", "line 115", Decimal(-1)),
        ("record_count_mismatch", "line 115", Decimal(-98)),
        ("record_count_mismatch", "line 116", Decimal(-98)),
    ]
    assert len(events(run(sample_bytes(CONT)))) == 17  # still every transaction


def test_synthetic_hcclaimpmt_deposits() -> None:
    evs = events(run(sample_bytes(SYNTH)))
    assert len(evs) == 4
    by_amount = {e.amount: e for e in evs}
    era1 = by_amount[Decimal("945.00")]
    assert (era1.trace_number, era1.payer_id, era1.type_code) == ("7170066655", "1935665544", "165")
    era2 = by_amount[Decimal("150000.00")]
    assert (era2.trace_number, era2.payer_id, era2.type_code) == ("12345", "1512345678", "169")
    for e in (era1, era2):
        assert (e.direction, e.category) == ("credit", "claim_payment")
        assert e.entry_description == "HCCLAIMPMT" and e.is_payer_cash
    no_addenda = by_amount[Decimal("550.00")]
    assert no_addenda.type_code == "142" and no_addenda.direction == "credit"
    assert no_addenda.trace_number is None and no_addenda.company_name == "UNKNOWN PAYER"
    check = by_amount[Decimal("2500.00")]
    assert (check.type_code, check.direction, check.customer_reference) == (
        "475",
        "debit",
        "004521",
    )
    assert not check.is_payer_cash
    assert {e.account for e in evs} == {"000123456789"}
    assert {e.as_of_date for e in evs} == {date(2025, 3, 17)}


# --- identity ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAI2_SAMPLES)
def test_ids_survive_another_file_header_and_name(name: str) -> None:
    data = sample_bytes(name)
    first_line, rest = data.split(b"\n", 1)
    code, sender, receiver, _date, _time, _file_id, *tail = first_line.split(b",")
    resent = b",".join([code, sender, receiver, b"991231", b"2359", b"RESENT7", *tail])
    original = events(run(data))
    again = events(run(resent + b"\n" + rest, ParseContext(file="renamed.bai2")))
    assert [e.event_id for e in again] == [e.event_id for e in original]
    assert {e.source.file for e in again} == {"renamed.bai2"}


def test_different_transactions_get_different_ids_and_twins_an_ordinal() -> None:
    body = (
        b"16,142,1000,Z,,,SAME TEXT/\n"
        b"16,142,1000,Z,,,SAME TEXT/\n"  # an identical twin: only the ordinal tells it apart
        b"16,142,1001,Z,,,SAME TEXT/\n"
        b"16,142,1000,Z,,CREF2,SAME TEXT/\n"
        b"16,142,1000,Z,REF9,,SAME TEXT/\n"
    )
    evs = events(run(wrap(body)))
    assert len(evs) == 5
    assert len({e.event_id for e in evs}) == 5
    assert [e.event_id for e in events(run(wrap(body)))] == [e.event_id for e in evs]


def test_line_endings_do_not_change_events() -> None:
    for name in BAI2_SAMPLES:
        lf = sample_bytes(name).replace(b"\r\n", b"\n")
        for other in (lf.replace(b"\n", b"\r\n"), lf.replace(b"\n", b"\r")):
            assert [content(e) for e in events(run(other))] == [content(e) for e in events(run(lf))]
        cr = events(run(lf.replace(b"\n", b"\r")))  # same byte lengths: same lines and offsets
        assert [e.source for e in cr] == [e.source for e in events(run(lf))]


class ChoppedStream(io.RawIOBase):
    """A stream whose reads stop at chosen positions (as sockets and pipes do)."""

    def __init__(self, data: bytes, cuts: list[int]) -> None:
        self._data, self._pos, self._cuts = data, 0, sorted(set(cuts))

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else min(len(self._data), self._pos + size)
        nxt = next((c for c in self._cuts if self._pos < c < end), end)
        chunk, self._pos = self._data[self._pos : nxt], nxt
        return chunk


@pytest.mark.parametrize("name", BAI2_SAMPLES)
def test_chunk_boundaries_never_change_what_is_read(name: str) -> None:
    data = sample_bytes(name)
    whole = comparable(run(data))
    everywhere = list(range(1, len(data)))  # a boundary between every two bytes at once
    assert comparable(list(parse(ChoppedStream(data, everywhere), CTX))) == whole  # type: ignore[arg-type]
    step = 1 if len(data) < 1500 else 7
    for cut in range(1, len(data), step):
        assert comparable(list(parse(ChoppedStream(data, [cut]), CTX))) == whole  # type: ignore[arg-type]


def test_overlong_lines_are_cut_at_record_boundaries_without_changing_records() -> None:
    """A file sent as one endless line (records only separated by '/') streams in pieces."""

    def fields(data: bytes, max_line: int) -> list[tuple[object, ...]]:
        chunks = [data[i : i + 5] for i in range(0, len(data), 5)]
        return [
            (r.code, r.body, r.text, r.line, r.offset, r.raw, r.count)
            for r in logical_records(chunks, max_line=max_line)
        ]

    for name in (SPEC, MULTI, SYNTH):
        one_line = sample_bytes(name).replace(b"/\n", b"/")
        assert fields(one_line, 24) == fields(one_line, 1 << 20)
        cr_only = sample_bytes(name).replace(b"\n", b"\r")
        assert fields(cr_only, 24) == fields(sample_bytes(name), 1 << 20)


# --- record assembly ---------------------------------------------------------------------


def test_88_continues_any_record_type_and_slashes_in_text_stay() -> None:
    data = (
        HEADER
        + b"03,000123456789,USD,010,100000,,/\n88,015,200000,,/\n"
        + b"16,142,1234,Z,REF1,CREF1,INV 12/16/2023 A/B, PAID/\n"
        + b"16,142,1000,D,2,0,600,1,400,REF2,CREF2,SPLIT, AVAILABILITY\n"
        + b"88,MORE TEXT\n88,AND MORE/\n"
        + b"16,142,500,V,250320,1200,REF3/\n88,CREF3,VALUE DATED\n"
        + b"49,302734/\n88,10/\n98,302734,1,12/\n99,302734,1,14/\n"
    )
    items = run(data)
    assert issues(items) == [] and dead(items) == []
    slashes, split, dated = events(items)
    assert slashes.text == "INV 12/16/2023 A/B, PAID"
    assert (split.bank_reference, split.customer_reference) == ("REF2", "CREF2")
    assert split.text == "SPLIT, AVAILABILITY MORE TEXT AND MORE"
    assert (dated.bank_reference, dated.customer_reference, dated.text) == (
        "REF3",
        "CREF3",
        "VALUE DATED",
    )
    assert dated.value_date == date(2025, 3, 20)


def test_currency_from_account_else_group_else_usd() -> None:
    data = (
        b"01,A,B,250318,0600,1,,,2/\n02,B,A,1,250317,2400,CAD,2/\n"
        b"03,1,JPY,,/\n16,142,1500,Z,R1,,/\n49,1500,3/\n"
        b"03,2,,,/\n16,142,1500,Z,R2,,/\n49,1500,3/\n98,3000,2,8/\n"
        b"02,B,A,1,250317,2400,,2/\n03,3,,,/\n16,142,1500,Z,R3,,/\n49,1500,3/\n98,1500,1,5/\n"
        b"99,4500,2,15/\n"
    )
    items = run(data)
    assert issues(items) == []
    assert [(e.currency, e.amount) for e in events(items)] == [
        ("JPY", Decimal(1500)),  # no minor unit: implied decimals follow the currency
        ("CAD", Decimal("15.00")),
        ("USD", Decimal("15.00")),
    ]


# --- control totals ----------------------------------------------------------------------


def test_changed_amount_is_flagged_once_at_its_account_trailer() -> None:
    data = sample_bytes(SPEC).replace(b"16,115,450000,S", b"16,115,450001,S")
    got = [(i.code, i.source.record, i.difference) for i in issues(run(data))]
    assert got == [("control_total_mismatch", "line 6", Decimal("-0.01"))]


def test_lost_record_changes_counts_at_every_level() -> None:
    data = sample_bytes(SPEC).replace(b"88,-1500000,,/\n", b"")
    got = [(i.code, i.source.record, i.difference) for i in issues(run(data))]
    assert got == [
        ("control_total_mismatch", "line 10", Decimal("-15000.00")),
        ("record_count_mismatch", "line 10", Decimal(1)),
        ("record_count_mismatch", "line 11", Decimal(1)),
        ("record_count_mismatch", "line 30", Decimal(1)),
    ]


def test_missing_trailers_are_reported() -> None:
    data = HEADER + b"03,000123456789,USD,,/\n16,142,1000,Z,,,TEXT/\n"
    items = run(data)
    assert len(events(items)) == 1
    assert [i.code for i in issues(items)] == ["missing_segment"] * 3


# --- broken parts ------------------------------------------------------------------------


def test_broken_records_become_dead_letters_and_parsing_goes_on() -> None:
    body = (
        b"16,142,12X4,Z,,,BAD AMOUNT/\n"
        b"16,142/\n"
        b"16,14,100,Z,,,SHORT TYPE CODE/\n"
        b"16,142,100,Q,,,UNKNOWN FUNDS TYPE/\n"
        b"17,142,100,Z,,,UNKNOWN RECORD CODE/\n"
        b"\xff\xfe garbage \x00\x80\n"
        b"16,142,100,Z,,,STILL READ/\n"
    )
    items = run(wrap(body))
    letters = dead(items)
    assert [d.source.record for d in letters] == [f"line {n}" for n in range(4, 10)]
    assert letters[0].original() == b"16,142,12X4,Z,,,BAD AMOUNT/"
    assert letters[5].original() == b"\xff\xfe garbage \x00\x80"
    assert all("unexpected" not in d.reason and "BAD" not in d.reason for d in letters)
    assert [e.text for e in events(items)] == ["STILL READ"]


def test_16_without_account_or_date_is_a_dead_letter() -> None:
    outside = HEADER + b"16,142,100,Z,,,NO ACCOUNT/\n"
    assert [d.reason for d in dead(run(outside))] == [
        "16 transaction outside an account (no open 03)"
    ]
    no_date = sample_bytes(SYNTH).replace(b"1,250317,2400", b"1,,2400")
    items = run(no_date)
    assert events(items) == []
    assert len(dead(items)) == 4
    assert "invalid_date" in [i.code for i in issues(items)]


def test_garbage_never_raises() -> None:
    for data in (b"", b"\n\n", b"\x00" * 100, bytes(range(256)) * 4, b"88,orphan/\n99,,,/"):
        items = run(data)
        assert all(isinstance(i, BankTransaction | DeadLetter | ParseIssue) for i in items)


# --- construction ------------------------------------------------------------------------


def test_fast_construct_equals_model_construct() -> None:
    e = events(run(sample_bytes(SYNTH)))[0]
    values = dict(e.__dict__)
    assert set(values) == set(BankTransaction.model_fields)
    assert construct(BankTransaction, dict(values)) == BankTransaction.model_construct(**values)
    assert set(e.source.__dict__) == set(Source.model_fields)
    assert BankTransaction.model_validate(e.model_dump()) == e
