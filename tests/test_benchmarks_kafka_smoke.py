"""The Kafka benchmark runs end to end on a tiny volume and fills every row (no timing asserts).

It runs against the local servers like the other services tests, in a Redis database of its own.
"""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from benchmarks import bench_kafka
from benchmarks.bench_kafka import copy_of
from tests.test_services_smoke import BOOTSTRAP, REDIS_URL, _servers_wanted

if not _servers_wanted():
    pytest.skip(
        "local servers not running (bash scripts/services.sh start)", allow_module_level=True
    )


def test_copies_of_a_month_are_new_payments_that_still_pair() -> None:
    rem = {"event_id": "e1", "trace_number": "12", "trace_normalized": "12", "amount": "5.00"}
    dep = {**rem, "event_id": "d1", "bank_reference": "B7", "customer_reference": None}
    assert copy_of(rem, 0) is rem  # the month itself is sent as parsed
    first, second = copy_of(rem, 1), copy_of(rem, 2)
    assert len({rem["event_id"], first["event_id"], second["event_id"]}) == 3
    assert first["trace_normalized"] == copy_of(dep, 1)["trace_normalized"] != "12"
    assert copy_of(dep, 1)["bank_reference"] == "B70001"
    assert copy_of(dep, 1)["customer_reference"] is None
    # A fixed-width suffix: copies of different traces never collide.
    other = {**rem, "trace_number": "1200", "trace_normalized": "1200"}
    assert copy_of(rem, 1)["trace_number"] != copy_of({**other}, 1)["trace_number"]


def test_every_row_is_measured_on_a_tiny_volume(tmp_path: Path) -> None:
    database = REDIS_URL.rsplit("/", 1)[0] + "/13"
    argv = [
        *("--hospitals", "2", "--days", "3", "--events", "3000", "--replay-events", "4000"),
        *("--processes", "2", "--rates", "1000", "--latency-seconds", "2"),
        *("--drain-seconds", "30", "--bootstrap", BOOTSTRAP, "--redis-url", database),
    ]
    out = io.StringIO()
    with redirect_stdout(out):
        assert bench_kafka.main(argv) == 0
    text = out.getvalue()
    rows = {
        cells[0]: cells
        for line in text.splitlines()
        if line.startswith("| remitflow") or line.startswith("| steady")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    for name, events in (
        ("remitflow Kafka→Kafka, 1 process(es)", "3,000"),
        ("remitflow Kafka→Kafka, 2 process(es)", "3,000"),
        ("remitflow replay of a month, 2 process(es)", "4,000"),
    ):
        cells = rows[name]
        assert cells[1] == events
        assert float(cells[3].replace(",", "")) > 0
    # Continuous semantics: most events decided by the end, never one audited twice.
    for processes in ("1", "2"):
        notes = rows[f"remitflow Kafka→Kafka, {processes} process(es)"][-1]
        audited = re.search(r"([\d,]+) audit records", notes)
        assert audited is not None, notes
        assert 1500 < int(audited[1].replace(",", "")) <= 3000
    latency = rows["steady 1,000 events/s"]
    decided = re.search(r"([\d,]+) pairs decided, ([\d,]+) not decided", latency[-1])
    assert decided is not None
    assert int(decided[1].replace(",", "")) > 0 and decided[2] == "0"
    assert float(latency[2]) > 0  # p50 in ms
    assert "goal ≥ 50,000 events/s per process" in text
