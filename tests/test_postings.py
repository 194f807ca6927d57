"""ERP posting confirmations (JSON lines) → Posting events and dead letters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from remitflow.events import Posting, event_from_json, event_to_json
from remitflow.records import DeadLetter
from sources.base import ParseContext, Parsed
from sources.postings import parse_bytes, posting_event_id


def run(data: bytes, file: str = "erp.jsonl") -> list[Parsed]:
    return list(parse_bytes(data, ParseContext(file=file)))


def line(**fields: object) -> bytes:
    base: dict[str, object] = {
        "posting_id": "JE-1001",
        "idempotency_key": "case-7f3a",
        "status": "posted",
        "amount": "945.00",
        "posted_at": "2025-03-18T14:02:11Z",
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def one(data: bytes) -> Parsed:
    (item,) = run(data)
    return item


def posting(data: bytes) -> Posting:
    item = one(data)
    assert isinstance(item, Posting), getattr(item, "reason", item)
    return item


def letter(data: bytes) -> DeadLetter:
    item = one(data)
    assert isinstance(item, DeadLetter)
    return item


# --- good lines ----------------------------------------------------------------------------


def test_posted_line() -> None:
    p = posting(line(entity="H1", reason=None))
    assert p.posting_id == "JE-1001"
    assert p.idempotency_key == "case-7f3a"
    assert p.status == "posted"
    assert p.amount == Decimal("945.00") and str(p.amount) == "945.00"
    assert p.posted_at == datetime(2025, 3, 18, 14, 2, 11, tzinfo=UTC)
    assert p.occurred_at == p.posted_at
    assert p.entity == "H1"
    assert p.source.system == "postings" and p.source.file == "erp.jsonl"
    assert p.source.record == "line 1" and p.source.offset == 0
    assert event_from_json(event_to_json(p)) == p  # model_construct built valid types


def test_rejected_line_without_amount_keeps_its_reason() -> None:
    p = posting(line(status="rejected", amount=..., reason="period closed"))
    assert p.status == "rejected"
    assert p.amount is None
    assert p.reason == "period closed"


def test_reversed_line_with_negative_amount_and_offset_zone() -> None:
    p = posting(line(status="reversed", amount="-945.00", posted_at="2025-03-18T09:02:11-05:00"))
    assert p.amount == Decimal("-945.00")
    assert p.posted_at.utcoffset() == timedelta(hours=-5)
    assert p.posted_at == datetime(2025, 3, 18, 14, 2, 11, tzinfo=timezone.utc)  # noqa: UP017


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (b"945", "945"),
        (b"945.1", "945.1"),
        (b"945.10", "945.10"),  # the number's own text, not a float's repr
        (b"0.07", "0.07"),
        (b"123456789012345.67", "123456789012345.67"),  # beyond float precision
        (b"1e2", "100"),
    ],
)
def test_json_number_amount_is_read_exactly(written: bytes, expected: str) -> None:
    data = line(amount=0).replace(b'"amount":0', b'"amount":' + written)
    assert str(posting(data).amount) == expected


def test_lines_offsets_blank_lines_crlf_and_bom() -> None:
    first, second = line(posting_id="A"), line(posting_id="B")
    data = b"\xef\xbb\xbf" + first + b"\r\n\r\n   \n" + second + b"\r\n"
    a, b = run(data)
    assert isinstance(a, Posting) and isinstance(b, Posting)
    assert (a.posting_id, a.source.record, a.source.offset) == ("A", "line 1", 0)
    assert (b.posting_id, b.source.record) == ("B", "line 4")
    assert data[b.source.offset or 0 :].startswith(second)


def test_unknown_fields_are_ignored() -> None:
    assert posting(line(erp_batch="B-9", journal={"lines": 4})).posting_id == "JE-1001"


# --- bad lines ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "secret"),
    [
        (b'{"posting_id": "JE-1", "status": "posted", SECRET', "invalid JSON", "SECRET"),
        (b'["JE-1", "SECRET"]', "not a JSON object", "SECRET"),
        (b'"SECRET"', "not a JSON object", "SECRET"),
        (line(posting_id=...), "posting_id: Field required", None),
        (line(posting_id=""), "posting_id", None),
        (line(posting_id=4711), "posting_id", "4711"),
        (line(idempotency_key=None), "idempotency_key", None),
        (line(status="SECRET"), "status", "SECRET"),
        (line(posted_at="2025-03-18T14:02:11"), "posted_at: has no time zone", "14:02"),
        (line(posted_at="2025-03-18"), "posted_at: has no time zone", "2025"),
        (line(posted_at="1742306531"), "posted_at: is not an ISO-8601", "1742306531"),
        (line(posted_at=1742306531), "posted_at: must be an ISO-8601 string", "1742306531"),
        (line(posted_at="18/03/2025 14:02 UTC"), "posted_at: is not an ISO-8601", "18/03"),
        (line(amount="9,45.00"), "amount: must be a plain decimal", "9,45"),
        (line(amount="NaN"), "amount: must be a plain decimal", "NaN"),
        (line(amount="1e3"), "amount: must be a plain decimal", "1e3"),
        (line(amount=True), "amount: must be a decimal string or a number, not a boolean", None),
        (line(amount={"value": "945"}), "amount", "945"),
        (line(reason=["x"]), "reason", None),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_line_is_dead_lettered_naming_field_not_value(
    data: bytes, field: str, secret: str | None
) -> None:
    dl = letter(data)
    assert dl.stage == "parse"
    assert field in dl.reason
    if secret:
        assert secret not in dl.reason
    assert dl.original() == data
    assert dl.source.system == "postings" and dl.source.record == "line 1"


def test_float_arithmetic_in_amount_is_refused() -> None:
    data = line(amount=0).replace(b'"amount":0', b'"amount":945.1000000001')
    dl = letter(data)
    assert "amount: a JSON number may have at most 2 decimals" in dl.reason


def test_invalid_utf8_is_invalid_json() -> None:
    data = line(reason="x").replace(b'"x"', b'"\xff\xfe"')
    assert "invalid JSON" in letter(data).reason


def test_bad_line_does_not_stop_the_file() -> None:
    data = b"\n".join([line(posting_id="A"), b"{oops", line(posting_id="B")])
    a, bad, b = run(data)
    assert isinstance(a, Posting) and isinstance(b, Posting)
    assert isinstance(bad, DeadLetter)
    assert bad.source.record == "line 2"
    assert bad.original() == b"{oops"
    assert bad.source.offset == len(line(posting_id="A")) + 1


# --- identity -----------------------------------------------------------------------------


def test_ids_are_stable_across_files_positions_and_formatting() -> None:
    p = posting(line())
    again = run(b"\n\n" + line(amount="945.0", reason="resent") + b"\n", file="other.jsonl")
    pretty = orjson.loads(line())
    spaced = orjson.dumps(pretty, option=orjson.OPT_SORT_KEYS).replace(b",", b", ")
    assert isinstance(again[0], Posting)
    assert again[0].event_id == p.event_id == posting(spaced).event_id
    assert p.event_id == posting_event_id("JE-1001", "case-7f3a", "posted")
    assert p.event_id.startswith("post-")


def test_status_and_key_change_the_id() -> None:
    ids = {
        posting(line()).event_id,
        posting(line(status="reversed")).event_id,
        posting(line(idempotency_key="case-other")).event_id,
        posting(line(posting_id="JE-1002")).event_id,
    }
    assert len(ids) == 4
