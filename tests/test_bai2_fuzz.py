"""Property tests: no bytes crash the BAI2 parser, and no 16 record is ever lost."""

from __future__ import annotations

import io
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from remitflow.events import BankTransaction, event_from_json, event_to_json
from remitflow.records import DeadLetter, ParseIssue
from sources.bai2 import parse, parse_bytes
from sources.base import ParseContext
from tests.conftest import sample_bytes
from tests.strategies import mutated

CTX = ParseContext(file="fuzz.bai2")
SAMPLES = {
    name: sample_bytes(name)
    for name in (
        "bai2__svb_us_example.bai2",
        "moov-io-bai2__sample2.txt",
        "moov-io-bai2__sample3.txt",
        "moov-io-bai2__sample4-continuations-newline-delimited.txt",
        "synthetic__bai2_hcclaimpmt_ach.bai2",
    )
}
# A 16 record starts a line or follows a "/" (several records on one line). Counted on the
# raw bytes, independently of the parser's record assembly.
_SIXTEEN = re.compile(rb"(?:^|/)[ \t]*16,[0-9]{3},", re.MULTILINE)


def count_16(data: bytes) -> int:
    return len(_SIXTEEN.findall(data))


def checked(data: bytes) -> tuple[list[BankTransaction], list[DeadLetter]]:
    """Parse, asserting every item is a well-formed event, dead letter or issue."""
    evs: list[BankTransaction] = []
    letters: list[DeadLetter] = []
    for item in parse_bytes(data, CTX):
        if isinstance(item, BankTransaction):
            assert event_from_json(event_to_json(item)) == item
            evs.append(item)
        elif isinstance(item, DeadLetter):
            assert item.reason and not item.reason.startswith("unexpected parser error")
            assert item.source.offset is not None and 0 <= item.source.offset <= len(data)
            assert DeadLetter.model_validate(item.model_dump()) == item
            letters.append(item)
        else:
            assert isinstance(item, ParseIssue)
            assert ParseIssue.model_validate(item.model_dump()) == item
    return evs, letters


def sixteens_out(data: bytes) -> int:
    evs, letters = checked(data)
    return len(evs) + sum(1 for d in letters if d.original().lstrip(b" \t").startswith(b"16"))


@st.composite
def reordered_lines(draw: st.DrawFn, data: bytes) -> bytes:
    """Whole lines dropped, duplicated or swapped: records stay intact, structure does not."""
    lines = data.split(b"\n")
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "swap"]))
        if op == "drop" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        else:
            j = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def test_every_16_of_every_sample_is_an_event() -> None:
    for data in SAMPLES.values():
        evs, letters = checked(data)
        assert not letters
        assert len(evs) == count_16(data)


@settings(max_examples=150, deadline=None)
@given(data=st.sampled_from(sorted(SAMPLES)).flatmap(lambda n: reordered_lines(SAMPLES[n])))
def test_every_16_ends_as_event_or_dead_letter(data: bytes) -> None:
    assert sixteens_out(data) == count_16(data)


@settings(max_examples=150, deadline=None)
@given(data=st.sampled_from(sorted(SAMPLES)).flatmap(lambda n: mutated(SAMPLES[n])))
def test_mutated_samples_never_crash(data: bytes) -> None:
    checked(data)


@settings(max_examples=60, deadline=None)
@given(
    data=st.sampled_from(sorted(SAMPLES)).flatmap(lambda n: mutated(SAMPLES[n])),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_streaming_reads_what_whole_bytes_read(data: bytes, chunk: int) -> None:
    whole = [i.model_dump(exclude={"emitted_at"}) for i in parse_bytes(data, CTX)]

    class Trickle(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            return super().read(chunk)

    streamed = [i.model_dump(exclude={"emitted_at"}) for i in parse(Trickle(data), CTX)]
    assert streamed == whole


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=600))
def test_random_bytes_never_crash(data: bytes) -> None:
    checked(data)


@settings(max_examples=150, deadline=None)
@given(data=st.text(alphabet="0123456789,/ \t\n\r+-SVDZsvd8169.TRN*\\:", max_size=500))
def test_record_soup_never_crashes(data: str) -> None:
    checked(data.encode())
