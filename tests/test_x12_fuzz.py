"""Property tests: no bytes crash the 835 parser, and layout never changes what it reads."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from remitflow.events import Remittance, event_from_json, event_to_json
from remitflow.identity import PhiHasher
from remitflow.records import DeadLetter, ParseIssue
from sources.base import ParseContext
from sources.x12 import parse_bytes
from tests.conftest import sample_bytes
from tests.strategies import X12_LAYOUTS, mutated, reflowed_x12
from tests.test_x12_tokenizer import X12_SAMPLES

CTX = ParseContext(file="fuzz.835", phi=PhiHasher(b"k"))
SAMPLES = {name: sample_bytes(name) for name in X12_SAMPLES}
# Files whose ISA line is well-formed, so that their segments can be re-laid out freely.
REFLOWABLE = [n for n in X12_SAMPLES if not n.startswith("TigerShark__835")]


def _check_items(data: bytes) -> list[Remittance]:
    rems = []
    for item in parse_bytes(data, CTX):
        assert isinstance(item, Remittance | DeadLetter | ParseIssue)
        if isinstance(item, Remittance):
            # Whatever the input, an event the parser emits passes the validating boundary.
            assert event_from_json(event_to_json(item)) == item
            rems.append(item)
        elif isinstance(item, DeadLetter):
            assert item.reason and item.original() is not None
    return rems


@settings(max_examples=150, deadline=None)
@given(data=st.sampled_from(sorted(SAMPLES)).flatmap(lambda n: mutated(SAMPLES[n])))
def test_mutated_samples_never_crash(data: bytes) -> None:
    _check_items(data)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=600))
def test_random_bytes_never_crash(data: bytes) -> None:
    _check_items(data)


@settings(max_examples=100, deadline=None)
@given(data=st.text(alphabet="ISTBPRNC*~|:>\n0123456789.", max_size=400))
def test_segment_soup_never_crashes(data: str) -> None:
    _check_items(b"ISA*00*" + data.encode())
    _check_items(b"ST*835*1~" + data.encode())


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.sampled_from(REFLOWABLE), min_size=1, max_size=4),
    layout=st.sampled_from(X12_LAYOUTS),
)
def test_concatenated_files_in_any_layout_keep_every_remittance(
    names: list[str], layout: str
) -> None:
    expected = [r.event_id for n in names for r in _check_items(SAMPLES[n])]
    combined = b"".join(reflowed_x12(SAMPLES[n], layout) for n in names)
    assert [r.event_id for r in _check_items(combined)] == expected
