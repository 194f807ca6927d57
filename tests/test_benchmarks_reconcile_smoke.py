"""The reconcile benchmark runs end to end on a tiny generated dataset and fills every row.

No timing asserts: the numbers belong to the machine. What is asserted is that every row ran,
and that every way of running remitflow's matching decided the same items in the same cases
(the naive peer has rules of its own: it must only account for every item).
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from datetime import timedelta
from decimal import Decimal
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
    run_in_memory,
    run_peer,
    run_reconcile_benchmark,
    table_rows,
)
from dataflows.runner import recovery_config
from remitflow.events import BankTransaction, Remittance
from remitflow.identity import normalize_trace
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
        "remitflow dataflow, in memory, 1 worker, recovery on (epoch 10 s)",
        "remitflow dataflow, in memory, 1 worker, recovery on (epoch 5 s)",
        "remitflow dataflow, in memory, 1 worker, every parsed item",
        "naive peer: Bytewax stateful_map on the trace key, 1 worker",
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
    for row in report.rows:
        if row.role == "recovery":
            assert "MB in the store after the run" in row.notes[-1], row.label


def test_the_new_rows_have_their_ratios(report: ReconcileReport) -> None:
    cells = table_rows(report)
    header = cells[0]
    by_label = {c[0]: dict(zip(header, c, strict=True)) for c in cells[1:]}
    for label in (
        "remitflow dataflow, in memory, 1 worker, recovery on (epoch 10 s)",
        "remitflow dataflow, in memory, 1 worker, recovery on (epoch 5 s)",
        "naive peer: Bytewax stateful_map on the trace key, 1 worker",
    ):
        assert by_label[label]["÷ ceiling"].endswith("×"), label
        assert float(by_label[label]["÷ ceiling"].rstrip("×")) > 0, label
    peer = by_label["naive peer: Bytewax stateful_map on the trace key, 1 worker"]
    assert float(peer["remitflow ×"].rstrip("×")) > 0
    assert by_label["ceiling: plain Python loop"]["remitflow ×"] == "—"


def test_every_row_decides_what_the_ceiling_decides(
    report: ReconcileReport, corpus: Corpus
) -> None:
    ceiling = report.row("ceiling")
    assert ceiling is not None and ceiling.tally is not None
    # Conservation: every remittance and bank transaction ends in exactly one outcome.
    assert ceiling.tally.items == corpus.routed_events()
    assert ceiling.tally.rules["trace_exact"] > 0  # what the peer's matches are compared with
    for row in report.rows:
        assert row.tally is not None
        if row.role == "peer":  # its own rules: it only has to account for every item
            assert row.tally.items == corpus.routed_events()
            assert sum(row.tally.outcomes.values()) == row.tally.items
            assert row.tally.outcomes["matched"] > 0
            assert (
                f"trace_exact rule matched {ceiling.tally.rules['trace_exact']:,}"
                in (row.notes[-1])
            )
        else:
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
    assert "every row but the naive peer decided the same" in text and "MISMATCH" not in text


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


def test_a_run_with_recovery_resumes_after_what_its_sources_emitted(
    corpus: Corpus, tmp_path: Path
) -> None:
    """The store holds each partition's position: a second run on it reads nothing again."""
    store = tmp_path / "recovery"
    epoch = timedelta(seconds=10)
    first = run_in_memory(
        corpus.routed, corpus.config, recovery=recovery_config(store, 1), epoch=epoch
    )
    assert first.tally.items == corpus.routed_events()
    again = run_in_memory(
        corpus.routed, corpus.config, recovery=recovery_config(store, 1), epoch=epoch
    )
    assert again.tally.items == 0 and sum(again.records.values()) == 0


def test_the_naive_peer_pairs_by_trace_and_flushes_what_is_left(corpus: Corpus) -> None:
    routed = [e for items in corpus.routed for e in items]
    bank = next(e for e in routed if isinstance(e, BankTransaction))
    by_trace = {normalize_trace(e.trace_number): e for e in routed if isinstance(e, Remittance)}
    a, b, c = list(by_trace.values())[:3]  # three traces of their own

    def deposit(n: int, rem: Remittance, amount: Decimal) -> BankTransaction:
        trace = "00" + rem.trace_number.lower()  # the key is the normalized trace
        update = {"event_id": f"dep-{n}", "trace_number": trace, "amount": amount}
        return bank.model_copy(update=update)

    traceless = bank.model_copy(update={"event_id": "dep-none", "trace_number": None})
    per_file: list[list[Remittance | BankTransaction]] = [
        [deposit(1, a, a.amount), a, b],  # the deposit first: it waits for its remittance
        [deposit(2, b, b.amount + Decimal("0.01")), c, traceless],
    ]
    tally = run_peer(per_file).tally
    assert tally.outcomes == {"matched": 2, "variance": 2, "unmatched": 2}  # c and the traceless
    assert tally.items == 6 and tally.cases == 4


def test_a_folder_without_inputs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="remitflow generate"):
        load_corpus(tmp_path, "empty")


def test_command_line_runs_the_reconcile_benchmark(data_dir: Path) -> None:
    out = io.StringIO()
    args = ["--data", str(data_dir), "--runs", "1", "--workers", "1", "--open-items", "200"]
    args += ["--epoch-seconds", "0"]
    with redirect_stdout(out):
        status = bench_cli.main(["reconcile", *args, "--profile"])
    text = out.getvalue()
    assert status == 0
    assert "== benchmark: reconcile ==" in text
    assert "| ceiling: plain Python loop " in text
    assert "end to end (files → JSONL), 1 worker " in text
    assert "recovery on (epoch 10 s) " in text and "epoch 5 s" not in text  # --epoch-seconds 0
    assert "| naive peer: Bytewax stateful_map on the trace key" in text
    assert "2 workers" not in text  # --workers 1: no multi-process row
    assert "cProfile of the in-memory dataflow" in text and "garbage collection: " in text
