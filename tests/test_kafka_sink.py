"""The dataflow's records to Kafka topics through our own sink: the same records as to files."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from bytewax.testing import run_main

from dataflows.embedded import reconcile_files
from dataflows.reconcile import FlowConfig, build_flow
from remitflow.config import load_config
from remitflow.identity import PhiHasher
from sinks.kafka import TOPIC_OF_STEM, DeliveryError, KafkaRecordSink, ensure_topics, record_key
from sources.base import ParseContext
from sources.detect import expand_paths
from sources.files import FilesSource
from sources.synthetic import generate_dataset
from tests.test_ingest import consume_all
from tests.test_services_smoke import BOOTSTRAP, _servers_wanted

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not _servers_wanted(), reason="local servers not running"),
]


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def view(records: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    return Counter(
        (r["record"], str(r.get("case_id") or r.get("event_id")), str(r.get("rule")))
        for r in records
    )


def test_the_kafka_sink_carries_the_same_records_as_the_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_dataset(data, hospitals=1, payers=4, days=4, seed=5)
    refdata, settings = load_config(data / "refdata.toml")
    config = FlowConfig(refdata=refdata, settings=settings)
    paths = expand_paths([data / "remittances", data / "bank", data / "postings"])
    files_out = tmp_path / "out"
    reconcile_files(paths, files_out, config)

    prefix = f"test-{uuid.uuid4().hex[:10]}"
    sink = KafkaRecordSink(BOOTSTRAP, prefix)
    ensure_topics(BOOTSTRAP, sink.topics(), partitions=3)
    ctx = ParseContext(refdata=refdata, phi=PhiHasher())
    run_main(build_flow("to-kafka", FilesSource(paths, ctx), sink, config))  # type: ignore[no-untyped-call]

    for stem, topic in TOPIC_OF_STEM.items():
        expected = (
            read(files_out / f"{stem}.jsonl") if (files_out / f"{stem}.jsonl").exists() else []
        )
        got = consume_all(f"{prefix}.{topic}", len(expected))
        records = [orjson.loads(value) for _, value in got]
        assert view(records) == view(expected), stem
        assert all(key == record_key(r) for (key, _), r in zip(got, records, strict=True))


def test_a_record_the_broker_refuses_stops_the_sink_loudly() -> None:
    # Topics never created (the broker does not create them): refused within the timeout.
    sink = KafkaRecordSink(
        BOOTSTRAP, f"missing-{uuid.uuid4().hex[:10]}", producer={"message.timeout.ms": 3000}
    )
    part = sink.build("out", 0, 1)
    with pytest.raises(DeliveryError):
        part.write_batch([("matched", {"record": "matched", "case_id": "c1"})])
