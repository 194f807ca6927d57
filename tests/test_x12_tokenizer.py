"""X12 tokenizer: delimiters read from the data, every real layout, chunk boundaries."""

from __future__ import annotations

import io

import pytest

from sources.x12.tokenizer import Delimiters, X12Tokenizer, sniff_delimiters
from tests.conftest import sample_bytes

X12_SAMPLES = [
    "LinuxForHealth-x12__cob-contractural-adjustment.835",
    "LinuxForHealth-x12__managed-care.835",
    "LinuxForHealth-x12__medicare-part-a.835",
    "LinuxForHealth-x12__secondary-payment.835",
    "TigerShark__5010-835-example-1.txt",
    "TigerShark__835-example-2.txt",
    "affect-therapeutics-edi-835-parser__sample_835_with_interests.txt",
    "edi-835-parser__blue_cross_nc_sample.txt",
    "edi-835-parser__emedny_sample.txt",
    "edi-835-parser__united_healthcare_legacy_sample.txt",
    "pyx12__835_mult_loops.txt",
]


def segments(data: bytes, chunk_size: int = 1 << 20) -> list[tuple[int, str]]:
    return list(X12Tokenizer(io.BytesIO(data), chunk_size=chunk_size))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("LinuxForHealth-x12__managed-care.835", Delimiters("*", ":", "^", "~")),
        # Declares ":" in ISA16 although its SVC composites use ">": the header is what counts.
        ("LinuxForHealth-x12__secondary-payment.835", Delimiters("*", ":", "^", "~")),
        ("edi-835-parser__united_healthcare_legacy_sample.txt", Delimiters("*", ">", "^", "~")),
        ("TigerShark__835-example-2.txt", Delimiters("|", "^", "^", "~")),
        ("TigerShark__5010-835-example-1.txt", Delimiters("*", "|", "^", "~")),
        ("edi-835-parser__blue_cross_nc_sample.txt", Delimiters("*", ":", "^", "~")),
    ],
)
def test_delimiters_come_from_the_data(name: str, expected: Delimiters) -> None:
    assert sniff_delimiters(sample_bytes(name).decode("latin-1")) == expected


def test_newline_terminated_file_without_tilde() -> None:
    data = b"ST*835*0001\nBPR*I*1*C*ACH\nTRN*1*X*1\nSE*4*0001\n"
    assert [s for _, s in segments(data)] == [
        "ST*835*0001",
        "BPR*I*1*C*ACH",
        "TRN*1*X*1",
        "SE*4*0001",
    ]


@pytest.mark.parametrize("name", X12_SAMPLES)
def test_segments_are_whole_and_offsets_point_at_them(name: str) -> None:
    data = sample_bytes(name)
    text = data.decode("latin-1")
    segs = segments(data)
    assert segs[0][1].startswith(("ISA", "ST"))
    assert segs[-1][1].startswith(("IEA", "SE"))
    for offset, seg in segs:
        assert text[offset : offset + len(seg)] == seg
        assert seg == seg.strip()
        assert "\n" not in seg


@pytest.mark.parametrize("name", X12_SAMPLES)
def test_chunk_boundaries_do_not_change_segments(name: str) -> None:
    data = sample_bytes(name)
    whole = segments(data)
    for size in (1, 2, 3, 7, 64, 333):
        assert segments(data, chunk_size=size) == whole


@pytest.mark.parametrize("newline", [b"\r\n", b"\n", b""])
def test_line_breaks_after_terminators_are_ignored(newline: bytes) -> None:
    data = sample_bytes("LinuxForHealth-x12__managed-care.835").replace(b"~\n", b"~" + newline)
    assert [s for _, s in segments(data)] == [
        s for _, s in segments(sample_bytes("LinuxForHealth-x12__managed-care.835"))
    ]


def test_two_interchanges_with_different_delimiters() -> None:
    first = sample_bytes("LinuxForHealth-x12__managed-care.835")
    second = sample_bytes("TigerShark__835-example-2.txt")
    tok = X12Tokenizer(io.BytesIO(first + b"\n" + second))
    segs = [s for _, s in tok]
    assert sum(1 for s in segs if s.startswith("ISA")) == 2
    assert "ST|835|0002" in segs
    assert "ST*835*112233" in segs
    assert tok.delimiters == Delimiters("|", "^", "^", "~")


def test_not_x12_sets_an_error_and_yields_nothing() -> None:
    tok = X12Tokenizer(io.BytesIO(b"01,121140399,121140399,230214,0754,1,,,2/\n"))
    assert list(tok) == []
    assert tok.error is not None
