"""The parse benchmark runs end to end on a tiny dataset and fills every row (no timing asserts)."""

from __future__ import annotations

import importlib
import importlib.util
import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from benchmarks import __main__ as bench_cli
from benchmarks import bench_parse
from benchmarks.bench_parse import (
    Dataset,
    fallback_replicated_samples,
    format_report,
    run_parse_benchmark,
    x12_segments,
)
from sources.x12 import X12Tokenizer
from tests.conftest import SAMPLES

HAVE_EDI_835_PARSER = importlib.util.find_spec("edi_835_parser") is not None
HAVE_PYX12 = importlib.util.find_spec("pyx12") is not None
TINY_RUN = ["parse", "--fallback", "--hospitals", "1", "--days", "2", "--runs", "1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    out = tmp_path_factory.mktemp("bench-data")
    return fallback_replicated_samples(out, hospitals=1, days=4, seed=3, eras_per_file=2)


def test_segments_are_counted_from_the_bytes_like_the_tokenizer_splits_them() -> None:
    """Every real sample (``*``/``|`` separators, ``~``, ``~\\n``, ``\\n~``, no envelope)."""
    x12_files = [p for p in sorted(SAMPLES.iterdir()) if x12_segments(p.read_bytes())]
    assert len(x12_files) == 11
    for path in x12_files:
        data = path.read_bytes()
        assert x12_segments(data) == sum(1 for _ in X12Tokenizer(io.BytesIO(data))), path.name


def test_fallback_data_copies_real_samples_with_distinct_traces(tiny: Dataset) -> None:
    assert len(tiny.x12) == 4 and len(tiny.bai2) == 4
    assert "FALLBACK" in tiny.origin
    first = tiny.x12[0].data
    # cob-contractural-adjustment.835 twice, each copy with its own TRN02.
    traces = re.findall(rb"TRN\*1\*([^*~]+)\*", first)
    assert traces == [b"00300000000000", b"00300000000100"]
    assert tiny.x12[0].units == 2 * x12_segments(
        (SAMPLES / "LinuxForHealth-x12__cob-contractural-adjustment.835").read_bytes()
    )


def test_every_row_is_measured_on_a_tiny_dataset(tiny: Dataset) -> None:
    report = run_parse_benchmark(tiny, runs=1, pyx12_seconds=0.5, processes=2)
    rows = {r.implementation.split(" ")[0] + " " + r.fmt + " " + r.role: r for r in report.rows}
    expected = [
        "remitflow 835 remitflow",
        "bare 835 ceiling",
        "remitflow 835 parallel",
        "remitflow BAI2 remitflow",
        "bare BAI2 ceiling",
    ]
    if HAVE_EDI_835_PARSER:
        expected.append("edi-835-parser 835 peer")
    if HAVE_PYX12:
        expected.append("pyx12 835 peer")
    for key in expected:
        row = rows[key]
        assert row.seconds is not None and row.seconds > 0, key
        assert row.rate is not None and row.rate > 0, key
        assert row.mb_per_s is not None and row.mb_per_s > 0, key
        assert row.units > 0 and row.nbytes > 0, key
    segments, nbytes = Dataset.total(tiny.x12)
    ours = rows["remitflow 835 remitflow"]
    assert (ours.units, ours.nbytes) == (segments, nbytes)
    # 4 files × 2 copies of cob (1 set), managed-care (1), medicare-part-a (1), secondary (1).
    assert ours.events == 8
    assert rows["remitflow 835 parallel"].events == 8
    assert rows["remitflow BAI2 remitflow"].events is not None
    assert rows["remitflow BAI2 remitflow"].events > 0

    table = format_report(report)
    for row in report.rows:
        assert f"| {row.implementation}" in table
    assert "goal ≥ 1,000,000 segments/s" in table
    assert "machine: " in table and "cores (nproc)" in table


def test_command_line_runs_the_parse_benchmark_on_fallback_data() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        status = bench_cli.main([*TINY_RUN, "--pyx12-seconds", "0.2", "--processes", "1"])
    text = out.getvalue()
    assert status == 0
    assert "== benchmark: parse ==" in text
    assert "| remitflow 835 " in text and "| bare str.split 835 " in text
    assert "needs ≥ 2 processes" in text  # the parallel row says why it is empty


def test_command_line_rejects_an_unknown_benchmark() -> None:
    assert {"parse", "reconcile"} <= set(bench_cli.discover())
    with redirect_stdout(io.StringIO()):
        assert bench_cli.main(["no-such-benchmark"]) == 2


def test_generated_data_is_used_when_the_generator_exists(tmp_path: Path) -> None:
    if not hasattr(importlib.import_module("sources.synthetic"), "generate_dataset"):
        pytest.skip("sources.synthetic.generate_dataset not written yet")
    ds = bench_parse.generated_dataset(tmp_path, hospitals=1, payers=3, days=1, seed=5)
    assert ds.origin.startswith("sources.synthetic.generate_dataset(")
    assert ds.x12 and ds.bai2
    assert all(f.units > 0 for f in ds.x12 + ds.bai2)
