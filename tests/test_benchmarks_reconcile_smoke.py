"""The reconcile benchmark runs end to end on a tiny generated dataset and fills every row.

No timing asserts: the numbers belong to the machine. What is asserted is that every row ran,
and that every way of running the matching decided the same items in the same cases.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from benchmarks import __main__ as bench_cli
from benchmarks.bench_reconcile import (
    Corpus,
    MemorySource,
    ReconcileReport,
    format_report,
    load_corpus,
    measure_open_items,
    run_reconcile_benchmark,
)
from sources.synthetic import generate_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-reconcile-data")
    generate_dataset(out, hospitals=1, payers=3, days=3, seed=7)
    return out


@pytest.fixture(scope="module")
def corpus(data_dir: Path) -> Corpus:
    return load_corpus(data_dir, "tiny")


@pytest.fixture(scope="module")
def report(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> ReconcileReport:
    scratch = tmp_path_factory.mktemp("bench-reconcile-out")
    return run_reconcile_benchmark(
        corpus, runs=1, e2e_runs=1, workers=2, open_items=1_000, scratch=scratch
    )


def test_the_corpus_holds_every_kind_of_event(corpus: Corpus) -> None:
    assert corpus.formats["x12"] > 0 and corpus.formats["bai2"] > 0
    assert corpus.formats["postings"] == 1
    assert corpus.kinds["Remittance"] > 0 and corpus.kinds["BankTransaction"] > 0
    assert corpus.kinds["Posting"] > 0
    assert corpus.routed_events() == corpus.kinds["Remittance"] + corpus.kinds["BankTransaction"]
    assert sum(map(len, corpus.routed)) == corpus.routed_events()
    assert corpus.nbytes == sum(p.stat().st_size for p in corpus.paths)


def test_every_row_is_measured(report: ReconcileReport, corpus: Corpus) -> None:
    labels = [r.label for r in report.rows]
    assert labels == [
        "ceiling: plain Python loop",
        "plain Python loop + output records",
        "remitflow dataflow, in memory, 1 worker",
        "remitflow dataflow, in memory, 1 worker, every parsed item",
        "remitflow reconcile end to end (files → JSONL), 1 worker",
        "remitflow reconcile end to end (files → JSONL), 2 workers",
    ]
    for row in report.rows:
        assert row.seconds is not None and row.seconds > 0, (row.label, row.notes)
        assert row.events_per_s is not None and row.events_per_s > 0, row.label
        assert row.tally is not None and row.tally.items > 0 and row.tally.cases > 0, row.label
        expected = corpus.routed_events() if row.input == "routed" else corpus.events()
        assert row.events == expected, row.label
    for row in report.rows[-2:]:
        assert row.mb_per_s is not None and row.mb_per_s > 0, row.label
    assert report.rows[-1].gc_seconds is None  # collected in the workers, not measured here


def test_every_row_decides_what_the_ceiling_decides(
    report: ReconcileReport, corpus: Corpus
) -> None:
    ceiling = report.row("ceiling")
    assert ceiling is not None and ceiling.tally is not None
    # Conservation: every remittance and bank transaction ends in exactly one outcome.
    assert ceiling.tally.items == corpus.routed_events()
    for row in report.rows:
        assert row.tally is not None
        assert row.tally.counts == ceiling.tally.counts, row.label


def test_open_items_are_measured(report: ReconcileReport) -> None:
    memory = report.memory
    assert memory is not None
    assert memory.items == 1_000 and memory.keys > 0
    assert memory.bytes_per_item > 0 and memory.pickled_per_item > 0


def test_cloned_remittances_all_stay_open(corpus: Corpus) -> None:
    """Each clone has a trace of its own and no deposit: nothing may decide it."""
    memory = measure_open_items(corpus, 300)
    assert memory is not None and memory.items == 300


def test_the_report_prints_the_machine_the_goals_and_the_agreement(
    report: ReconcileReport,
) -> None:
    text = format_report(report)
    assert text.startswith("machine: ") and "cores (nproc)" in text
    for row in report.rows:
        assert f"| {row.label} " in text
    assert "goal ≥ 100,000 events/s per worker" in text
    assert "goal ≥ 50% of the plain-loop ceiling" in text
    assert "goal ≤ 2,048 bytes per open item" in text
    assert "every row decided the same" in text and "MISMATCH" not in text


def test_the_memory_source_resumes_after_what_it_emitted(corpus: Corpus) -> None:
    items = max(corpus.parsed, key=len)[:3]
    assert len(items) == 3
    source = MemorySource([items, (), corpus.parsed[1]])
    assert source.list_parts() == ["000000", "000002"]  # an empty file makes no partition
    part = source.build_part("input", "000000", 2)
    assert part.next_batch() == [items[2]]
    assert part.snapshot() == 3
    with pytest.raises(StopIteration):
        part.next_batch()


def test_a_folder_without_inputs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="remitflow generate"):
        load_corpus(tmp_path, "empty")


def test_command_line_runs_the_reconcile_benchmark(data_dir: Path) -> None:
    out = io.StringIO()
    args = ["--data", str(data_dir), "--runs", "1", "--workers", "1", "--open-items", "200"]
    with redirect_stdout(out):
        status = bench_cli.main(["reconcile", *args, "--profile"])
    text = out.getvalue()
    assert status == 0
    assert "== benchmark: reconcile ==" in text
    assert "| ceiling: plain Python loop " in text
    assert "end to end (files → JSONL), 1 worker " in text
    assert "2 workers" not in text  # --workers 1: no multi-process row
    assert "cProfile of the in-memory dataflow" in text and "garbage collection: " in text
