"""Whatever the bytes, the camt.053 and postings parsers return items and never raise."""

from __future__ import annotations

import json
import re
from xml.sax.saxutils import escape

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remitflow.events import BankTransaction, Posting, event_from_json, event_to_json
from remitflow.records import DeadLetter, ParseIssue
from sources import camt053, postings
from sources.base import ParseContext, Parsed
from tests.conftest import sample_bytes

CAMT_SAMPLES = [
    sample_bytes("camt053__statement_ac04.xml"),
    sample_bytes("synthetic__camt053_us_ach_hcclaimpmt.xml"),
]
CTX = ParseContext(file="fuzz")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Fragments that make mutations reach the interesting paths rather than only breaking the XML.
XML_BITS = [
    b"<",
    b">",
    b"</Ntry>",
    b"<Ntry>",
    b"<Amt>",
    b"-1.00",
    b"1e5",
    b"DBIT",
    b"&amp;",
    b"&lol;",
    b"<!DOCTYPE x>",
    b"<TxDtls><Amt>1</Amt></TxDtls>",
    b"<RvslInd>true</RvslInd>",
    b"<Dt>2025-02-30</Dt>",
    b"\xff",
    b"\x00",
]


def check(items: list[Parsed], event_type: type) -> None:
    for item in items:
        assert isinstance(item, (event_type, DeadLetter, ParseIssue))
        if isinstance(item, event_type):
            # Every event the parser builds with model_construct must survive validation.
            assert event_from_json(event_to_json(item)) == item


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(CAMT_SAMPLES)))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        if kind == "insert":
            data[pos:pos] = draw(st.sampled_from(XML_BITS) | st.binary(max_size=8))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 40))]
        elif kind == "replace":
            data[pos : pos + 1] = draw(st.binary(min_size=1, max_size=1))
        else:
            del data[pos:]
    return bytes(data)


# Element contents of the samples (">…<"): replaced, the XML stays well-formed and the damage
# reaches the entry-level code (amounts, dates, codes, references, text).
CONTENT = re.compile(rb">([^<>]*)<")
INTERESTING_TEXT = [
    "",
    "  ",
    "-1.00",
    "1e5",
    "0",
    "99999999999999999999.99999",
    "DBIT",
    "CRDT",
    "true",
    "2025-02-30",
    "2025-03-17T10:00:00+01:00",
    "165",
    "NOTPROVIDED",
    "TRN*1*12345*1512345678\\",
    "HCCLAIMPMT",
]


XML_CHARS = st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t")


@st.composite
def content_mutated(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(CAMT_SAMPLES))
    root = data.index(b"<Document")
    spans = [m.span(1) for m in CONTENT.finditer(data, root)]
    chosen = draw(st.lists(st.sampled_from(spans), min_size=1, max_size=4, unique=True))
    for start, end in sorted(chosen, reverse=True):
        text = draw(st.sampled_from(INTERESTING_TEXT) | st.text(XML_CHARS, max_size=30))
        data = data[:start] + escape(text).encode("utf-8", "surrogatepass") + data[end:]
    return data


@FUZZ
@given(mutated())
def test_camt053_mutations_never_raise(data: bytes) -> None:
    check(list(camt053.parse_bytes(data, CTX)), BankTransaction)


@FUZZ
@given(content_mutated())
def test_camt053_content_mutations_never_raise(data: bytes) -> None:
    items = list(camt053.parse_bytes(data, CTX))
    check(items, BankTransaction)
    # Damage inside an entry costs that entry at most: one item per entry or more.
    assert len(items) >= data.count(b"<Ntry>")


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_camt053_random_bytes_never_raise(data: bytes) -> None:
    items = list(camt053.parse_bytes(data, CTX))
    assert items and all(isinstance(i, DeadLetter) for i in items)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
FIELD_VALUES = {
    "posting_id": JSON_VALUES | st.just("JE-1"),
    "idempotency_key": JSON_VALUES | st.just("k"),
    "status": JSON_VALUES | st.sampled_from(["posted", "rejected", "reversed"]),
    "amount": JSON_VALUES | st.decimals(allow_nan=False, allow_infinity=False).map(str),
    "posted_at": JSON_VALUES | st.datetimes().map(lambda d: d.isoformat() + "Z"),
    "reason": JSON_VALUES,
}
POSTING_OBJECTS = st.fixed_dictionaries({}, optional=FIELD_VALUES)


@FUZZ
@given(st.lists(POSTING_OBJECTS, max_size=4), st.lists(st.binary(max_size=60), max_size=3))
def test_postings_random_lines_never_raise(objects: list[object], junk: list[bytes]) -> None:
    lines = [json.dumps(o).encode() for o in objects] + junk
    data = b"\n".join(lines)
    items = list(postings.parse_bytes(data, CTX))
    check(items, Posting)
    assert len(items) <= len(data.splitlines())
