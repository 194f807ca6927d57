"""Continuous mode on the real broker: ingest → dataflow on Kafka → output topics.

The outcomes read back from the output topics must equal the embedded mode's on the same
files; poison messages on the input topics become dead letters and the flow goes on.
"""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main
from confluent_kafka import Producer

from dataflows.embedded import reconcile_files
from dataflows.kafka_input import kafka_parsed
from dataflows.reconcile import FlowConfig, reconcile_stream
from remitflow.cli import main
from remitflow.config import load_config
from remitflow.settings import Topics
from sinks.erp_ledger import IdempotencyLedger
from sinks.kafka import KafkaRecordSink, ensure_topics
from sources.detect import expand_paths
from sources.synthetic import generate_dataset
from tests.conftest import RecordingErp
from tests.test_ingest import read_topic
from tests.test_services_smoke import BOOTSTRAP, REDIS_URL, _servers_wanted

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not _servers_wanted(), reason="local servers not running"),
]

POISON = [
    b"{not json",
    b'{"kind": "remittance", "event_id": "x"}',  # wrong schema
    b'{"kind": "wire_transfer", "event_id": "y"}',  # unknown kind
]


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def view(records: list[dict[str, Any]]) -> Counter[tuple[str, str, str, str]]:
    return Counter(
        (
            r["record"],
            str(r.get("case_id")),
            str(r.get("rule")),
            str((r.get("variance") or {}).get("amount")),
        )
        for r in records
    )


def test_kafka_outcomes_equal_the_embedded_outcomes_and_poison_is_dead_lettered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    data = tmp_path / "data"
    generate_dataset(data, hospitals=1, payers=4, days=5, seed=9)
    refdata, settings = load_config(data / "refdata.toml")
    config = FlowConfig(refdata=refdata, settings=settings)
    embedded = tmp_path / "embedded"
    reconcile_files(
        expand_paths([data / "remittances", data / "bank", data / "postings"]), embedded, config
    )

    inputs = Topics(f"in-{uuid.uuid4().hex[:10]}")
    outputs = f"out-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("REMITFLOW_TOPIC_PREFIX", inputs.prefix)
    monkeypatch.setenv("REMITFLOW_KAFKA_BOOTSTRAP", BOOTSTRAP)
    config_path = str(data / "refdata.toml")
    for kind, folder in (("remittance", "remittances"), ("bank", "bank"), ("posting", "postings")):
        assert main(["ingest", "--kind", kind, str(data / folder), "--config", config_path]) == 0
    capsysbinary.readouterr()
    producer = Producer({"bootstrap.servers": BOOTSTRAP})
    for i, poison in enumerate(POISON):
        producer.produce(inputs.inputs[i % 3], poison)
    assert producer.flush(30) == 0

    sink = KafkaRecordSink(BOOTSTRAP, outputs)
    ensure_topics(BOOTSTRAP, sink.topics(), partitions=3)
    flow = Dataflow("continuous-test")
    parsed = kafka_parsed(flow, bootstrap=BOOTSTRAP, topics=list(inputs.inputs), tail=False)
    reconcile_stream(parsed, sink, config)
    run_main(flow)  # type: ignore[no-untyped-call]

    for stem, topic in (
        ("matched", "matched"),
        ("variance", "variances"),
        ("unmatched", "unmatched"),
        ("erp_postings", "erp-postings"),
    ):
        expected = read(embedded / f"{stem}.jsonl")
        assert expected or stem == "variance", stem  # the comparison is not of empty files
        got = [orjson.loads(v) for _, v in read_topic(f"{outputs}.{topic}")]
        assert view(got) == view(expected), stem
    letters = [orjson.loads(v) for _, v in read_topic(f"{outputs}.dead-letter")]
    assert len(letters) == len(POISON)
    assert {letter["stage"] for letter in letters} == {"validate"}
    assert sorted(letter["reason"].split(":")[0] for letter in letters) == [
        "not JSON",
        "not a canonical event",
        "not a canonical event",
    ]


def test_run_resume_and_replay_never_post_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """`remitflow run --until-end` gives the embedded outcomes; a second run, resumed from its
    recovery store, emits nothing again; a replay from the start posts no journal twice."""
    data = tmp_path / "data"
    generate_dataset(data, hospitals=1, payers=3, days=4, seed=4)
    refdata, settings = load_config(data / "refdata.toml")
    embedded = tmp_path / "embedded"
    reconcile_files(
        expand_paths([data / "remittances", data / "bank", data / "postings"]),
        embedded,
        FlowConfig(refdata=refdata, settings=settings),
    )
    prefix = f"run-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("REMITFLOW_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("REMITFLOW_KAFKA_BOOTSTRAP", BOOTSTRAP)
    monkeypatch.setenv("REMITFLOW_RECOVERY_DIR", str(tmp_path / "recovery"))
    config_path = str(data / "refdata.toml")
    for kind, folder in (("remittance", "remittances"), ("bank", "bank"), ("posting", "postings")):
        assert main(["ingest", "--kind", kind, str(data / folder), "--config", config_path]) == 0
    run = ["run", "--until-end", "--config", config_path, "--epoch-seconds", "0.2"]
    assert main(run) == 0
    expected = read(embedded / "matched.jsonl")
    first = read_topic(f"{prefix}.matched")
    assert view([orjson.loads(v) for _, v in first]) == view(expected)
    assert main(run) == 0
    again = read_topic(f"{prefix}.matched")
    assert len(again) == len(expected)  # resumed: nothing matched twice
    journals = read(embedded / "erp_postings.jsonl")
    posted = read_topic(f"{prefix}.erp-postings")
    assert len(posted) == len(journals) > 0

    # An operator replays from the start twice, with a fresh recovery store each time: the
    # same outcomes again (every rule decides at the end), and no journal posted again.
    # (Partitions interleave on the way back, so compare multisets, not positions.)
    for times in (2, 3):
        assert main(["replay", "--from-offset", "earliest", "--config", config_path]) == 0
        regenerated = view([orjson.loads(v) for _, v in read_topic(f"{prefix}.matched")])
        assert regenerated == Counter({k: times * n for k, n in view(expected).items()})
    posted_again = read_topic(f"{prefix}.erp-postings")
    assert len(posted_again) == len(journals)
    ledger = IdempotencyLedger(REDIS_URL, prefix)
    keys = {j["idempotency_key"] for j in journals}
    assert set(ledger.keys()) == keys
    assert all((ledger.status(k) or {}).get("status") == "posted" for k in keys)
    # Each event's cash is journaled under exactly one key.
    for journal in journals:
        for side in ("remittances", "bank_transactions"):
            for item in journal[side]:
                assert ledger.owner(item["event_id"]) == journal["idempotency_key"]
    capsysbinary.readouterr()


def test_journals_go_to_an_http_erp_once_whatever_is_replayed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
    erp: tuple[RecordingErp, str],
) -> None:
    state, url = erp
    state.fail_first = 1  # every key meets one 503 first
    data = tmp_path / "data"
    generate_dataset(data, hospitals=1, payers=3, days=4, seed=6)
    prefix = f"http-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("REMITFLOW_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("REMITFLOW_KAFKA_BOOTSTRAP", BOOTSTRAP)
    monkeypatch.setenv("REMITFLOW_RECOVERY_DIR", str(tmp_path / "recovery"))
    monkeypatch.setenv("REMITFLOW_ERP_URL", url)
    config_path = str(data / "refdata.toml")
    for kind, folder in (("remittance", "remittances"), ("bank", "bank"), ("posting", "postings")):
        assert main(["ingest", "--kind", kind, str(data / folder), "--config", config_path]) == 0
    assert main(["run", "--until-end", "--config", config_path]) == 0
    accepted = dict(state.accepted)
    # Every case with cash posted exactly once (the embedded journals are the reference) ...
    embedded = tmp_path / "embedded"
    refdata, settings = load_config(config_path)
    reconcile_files(
        expand_paths([data / "remittances", data / "bank", data / "postings"]),
        embedded,
        FlowConfig(refdata=refdata, settings=settings),
    )
    assert set(accepted) == {j["idempotency_key"] for j in read(embedded / "erp_postings.jsonl")}
    for journal in accepted.values():  # ... and balanced
        lines = journal["lines"]
        assert sum(Decimal(x["debit"]) for x in lines) == sum(Decimal(x["credit"]) for x in lines)
    assert all(n == 2 for n in state.requests.values())  # one 503, then accepted
    assert main(["replay", "--from-offset", "earliest", "--config", config_path]) == 0
    assert state.accepted == accepted  # nothing posted twice
    assert all(n == 2 for n in state.requests.values())  # the ledger sent nothing again
    assert read_topic(f"{prefix}.erp-postings") == []  # HTTP replaced it
    capsysbinary.readouterr()


def test_an_erp_down_past_the_budget_dead_letters_journals_and_a_replay_posts_them_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
    erp: tuple[RecordingErp, str],
) -> None:
    state, url = erp
    state.fail_first = 1_000_000  # down for the whole first run
    data = tmp_path / "data"
    generate_dataset(data, hospitals=1, payers=2, days=3, seed=8)
    prefix = f"down-{uuid.uuid4().hex[:10]}"
    for name, value in (
        ("REMITFLOW_TOPIC_PREFIX", prefix),
        ("REMITFLOW_KAFKA_BOOTSTRAP", BOOTSTRAP),
        ("REMITFLOW_REDIS_URL", REDIS_URL),
        ("REMITFLOW_RECOVERY_DIR", str(tmp_path / "recovery")),
        ("REMITFLOW_ERP_URL", url),
        ("REMITFLOW_ERP_MAX_ATTEMPTS", "2"),
        ("REMITFLOW_ERP_BUDGET_S", "1"),
    ):
        monkeypatch.setenv(name, value)
    config_path = str(data / "refdata.toml")
    for kind, folder in (("remittance", "remittances"), ("bank", "bank"), ("posting", "postings")):
        assert main(["ingest", "--kind", kind, str(data / folder), "--config", config_path]) == 0
    assert main(["run", "--until-end", "--config", config_path]) == 0  # the flow kept running
    assert not state.accepted
    letters = [orjson.loads(v) for _, v in read_topic(f"{prefix}.dead-letter")]
    posts = [letter for letter in letters if letter["stage"] == "post"]
    journals = [orjson.loads(base64.b64decode(letter["payload"])) for letter in posts]
    assert journals and {j["record"] for j in journals} == {"erp_posting"}
    assert all(state.requests[j["idempotency_key"]] == 2 for j in journals)  # the budget held

    state.fail_first = 0  # the ERP is back: the operator replays; claimed keys are sent again
    assert main(["replay", "--from-offset", "earliest", "--config", config_path]) == 0
    assert set(state.accepted) == {j["idempotency_key"] for j in journals}
    ledger = IdempotencyLedger(REDIS_URL, prefix)
    assert all((ledger.status(k) or {}).get("status") == "posted" for k in state.accepted)
    capsysbinary.readouterr()
