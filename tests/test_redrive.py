"""`remitflow redrive` on the real broker and Redis: dead letters whose cause is fixed go round
again, each once; what still fails stays put."""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from confluent_kafka import Producer

from remitflow.cli import main
from remitflow.settings import Topics
from sinks.erp_ledger import IdempotencyLedger
from sinks.kafka import ensure_topics
from sources.synthetic import generate_dataset
from tests.conftest import RecordingErp
from tests.test_ingest import read_topic
from tests.test_services_smoke import BOOTSTRAP, REDIS_URL, _servers_wanted

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not _servers_wanted(), reason="local servers not running"),
]


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    data = tmp_path / "data"
    generate_dataset(data, hospitals=1, payers=3, days=4, seed=31)
    prefix = f"redrive-{uuid.uuid4().hex[:10]}"
    for name, value in (
        ("REMITFLOW_TOPIC_PREFIX", prefix),
        ("REMITFLOW_KAFKA_BOOTSTRAP", BOOTSTRAP),
        ("REMITFLOW_REDIS_URL", REDIS_URL),
        ("REMITFLOW_RECOVERY_DIR", str(tmp_path / "recovery")),
    ):
        monkeypatch.setenv(name, value)
    assert main(["refdata", "load", str(data / "refdata.toml")]) == 0
    yield data, prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)


def _json(out: bytes) -> dict[str, int]:
    result: dict[str, int] = orjson.loads(out.splitlines()[-1])
    return result


def test_events_ingested_under_the_wrong_kind_are_redriven_once_and_poison_stays(
    deployment: tuple[Path, str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    data, prefix = deployment
    assert main(["ingest", "--kind", "bank", str(data / "remittances")]) == 0  # wrong kind
    wrong = _json(capsysbinary.readouterr().out)["dead_letters"]
    ensure_topics(BOOTSTRAP, Topics(prefix).inputs, partitions=4)
    producer = Producer({"bootstrap.servers": BOOTSTRAP})
    producer.produce(f"{prefix}.remittances", b"{not json")
    assert producer.flush(30) == 0
    assert main(["run", "--until-end"]) == 0  # the poison is dead-lettered by the flow
    capsysbinary.readouterr()

    assert main(["redrive", "--dry-run"]) == 0
    dry = _json(capsysbinary.readouterr().out)
    assert read_topic(f"{prefix}.remittances") == [(None, b"{not json")]  # nothing sent
    assert main(["redrive"]) == 0
    counts = _json(capsysbinary.readouterr().out)
    assert counts == dry | {"dry_run": False}
    stages = Counter(orjson.loads(v)["stage"] for _, v in read_topic(f"{prefix}.dead-letter"))
    assert stages["validate"] + stages["parse"] == wrong + 1  # ingest's, and the poison
    assert counts["validate"] == stages["validate"] - 1 > 0  # all but the poison ...
    # ... which stays put, with the corrupt files' fragments (their cause is not fixed)
    assert counts["still_failing"] == 1 + stages["parse"] and "parse" not in counts
    remittances = read_topic(f"{prefix}.remittances")
    assert len(remittances) == 1 + counts["validate"]  # the poison, and every event once
    redriven = [orjson.loads(v) for _, v in remittances if v != b"{not json"]
    assert len(redriven) == counts["validate"]
    assert {e["kind"] for e in redriven} == {"remittance"}

    assert main(["redrive"]) == 0  # each dead letter once: nothing new to do
    again = _json(capsysbinary.readouterr().out)
    assert again == {"dry_run": False}


def test_journals_the_erp_refused_are_posted_once_when_it_is_back(
    deployment: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    erp: tuple[RecordingErp, str],
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    data, prefix = deployment
    state, url = erp
    state.fail_first = 1_000_000
    monkeypatch.setenv("REMITFLOW_ERP_URL", url)
    monkeypatch.setenv("REMITFLOW_ERP_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("REMITFLOW_ERP_BUDGET_S", "1")
    for kind, folder in (("remittance", "remittances"), ("bank", "bank"), ("posting", "postings")):
        assert main(["ingest", "--kind", kind, str(data / folder)]) == 0
    assert main(["run", "--until-end"]) == 0
    letters = [orjson.loads(v) for _, v in read_topic(f"{prefix}.dead-letter")]
    refused = {
        orjson.loads(base64.b64decode(x["payload"]))["idempotency_key"]
        for x in letters
        if x["stage"] == "post"
    }
    assert refused and not state.accepted

    state.fail_first = 0  # the ERP is back
    capsysbinary.readouterr()
    assert main(["redrive", "--stage", "post"]) == 0
    counts = _json(capsysbinary.readouterr().out)
    assert counts["post"] == len(refused) and counts.get("skipped", 0) > 0
    assert set(state.accepted) == refused
    ledger = IdempotencyLedger(REDIS_URL, prefix)
    assert all((ledger.status(k) or {}).get("status") == "posted" for k in refused)
    assert main(["redrive", "--stage", "post"]) == 0
    assert _json(capsysbinary.readouterr().out) == {"dry_run": False}
