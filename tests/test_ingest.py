"""`remitflow ingest` against the real local broker (scripts/services.sh), loopback only."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from remitflow.cli import main
from remitflow.config import load_config
from remitflow.events import BankTransaction, Posting, Remittance, event_from_json
from remitflow.identity import PhiHasher
from remitflow.records import DeadLetter
from remitflow.refdata import example_reference_data_path
from sources.base import ParseContext
from sources.detect import expand_paths, parse_path
from sources.synthetic import generate_dataset
from tests.conftest import SAMPLES
from tests.test_services_smoke import BOOTSTRAP, _servers_wanted

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not _servers_wanted(), reason="local servers not running"),
]
TIMEOUT_S = 60.0
EVENTS = (Remittance, BankTransaction, Posting)
EXAMPLE_CONFIG = str(example_reference_data_path())


def read_topic(topic: str, timeout_s: float = TIMEOUT_S) -> list[tuple[bytes | None, bytes]]:
    """Everything ``topic`` holds now: each partition from its start to its high watermark.

    For topics whose writers have finished (their messages were acknowledged), this reads
    exactly what is there, without waiting out a timeout for a count that never comes.
    """
    consumer = Consumer(
        {"bootstrap.servers": BOOTSTRAP, "group.id": "unused", "enable.auto.commit": False}
    )
    got: list[tuple[bytes | None, bytes]] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got.append((msg.key(), msg.value() or b""))
            if (msg.offset() or 0) + 1 >= ends.get(msg.partition() or 0, 0):
                ends.pop(msg.partition(), None)
        assert not ends, f"{topic}: partitions {sorted(ends)} not read to their end in time"
    finally:
        consumer.close()
    return got


def consume_all(
    topic: str, expected: int, timeout_s: float = TIMEOUT_S
) -> list[tuple[bytes | None, bytes]]:
    """Every message of ``topic`` from the start, until ``expected`` arrived (bounded)."""
    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[tuple[bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            value = msg.value()
            assert value is not None
            got.append((msg.key(), value))
        # A little longer: more than expected would be a bug too.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error() and msg.value() is not None:
                got.append((msg.key(), msg.value() or b""))
    finally:
        consumer.close()
    return got


@pytest.fixture
def prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("REMITFLOW_TOPIC_PREFIX", name)
    monkeypatch.setenv("REMITFLOW_KAFKA_BOOTSTRAP", BOOTSTRAP)
    return name


def test_ingest_delivers_every_event_and_dead_letter(
    tmp_path: Path, prefix: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    data = tmp_path / "data"
    generate_dataset(data, hospitals=1, payers=3, days=3, seed=3)
    config = str(data / "refdata.toml")
    ctx = ParseContext(refdata=load_config(config)[0], phi=PhiHasher())
    expected_ids: dict[str, Counter[str]] = {}
    dead = 0
    for kind, folder, topic in (
        ("remittance", "remittances", "remittances"),
        ("bank", "bank", "bank-transactions"),
        ("posting", "postings", "postings"),
    ):
        assert main(["ingest", "--kind", kind, str(data / folder), "--config", config]) == 0
        report = orjson.loads(capsysbinary.readouterr().out)
        items = [i for p in expand_paths([data / folder]) for i in parse_path(p, ctx)]
        ids = Counter(i.event_id for i in items if isinstance(i, EVENTS))
        expected_ids[f"{prefix}.{topic}"] = ids
        dead += sum(1 for i in items if isinstance(i, DeadLetter))
        assert report["events"] == sum(ids.values()) and report["delivered"] >= report["events"]
    for topic, ids in expected_ids.items():
        messages = consume_all(topic, sum(ids.values()))
        events = [event_from_json(value) for _, value in messages]  # all pass the boundary
        assert Counter(e.event_id for e in events) == ids
        for (key, _), e in zip(messages, events, strict=True):
            # A journal's confirmations share a partition (their order is the ERP's).
            assert key == (e.idempotency_key if isinstance(e, Posting) else e.event_id).encode()
    letters = consume_all(f"{prefix}.dead-letter", dead)
    assert len(letters) == dead and all(orjson.loads(v)["stage"] == "parse" for _, v in letters)


def test_events_of_another_kind_are_dead_lettered(
    prefix: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    era = str(SAMPLES / "LinuxForHealth-x12__managed-care.835")
    code = main(["ingest", "--kind", "bank", era, "--config", EXAMPLE_CONFIG])
    assert code == 0
    report = orjson.loads(capsysbinary.readouterr().out)
    assert report.get("events", 0) == 0 and report["dead_letters"] == 1
    [(_, value)] = consume_all(f"{prefix}.dead-letter", 1)
    letter = orjson.loads(value)
    assert letter["stage"] == "validate" and "remittance event" in letter["reason"]


def test_an_unreachable_broker_is_an_error_not_a_log_line(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    monkeypatch.setenv("REMITFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    era = str(SAMPLES / "LinuxForHealth-x12__managed-care.835")
    code = main(["ingest", "--kind", "remittance", era, "--config", EXAMPLE_CONFIG])
    assert code == 1
    assert "does not answer" in capsysbinary.readouterr().err.decode()
