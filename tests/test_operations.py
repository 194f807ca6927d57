"""What operators do to a deployment, on the real broker and Redis: load the configuration into
Redis and run without files, run a local cluster, stop it with SIGTERM, replay from a time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from dataflows.embedded import reconcile_files
from dataflows.reconcile import FlowConfig
from remitflow import step_metrics
from remitflow.cli import main
from remitflow.config import load_config
from remitflow.events import BankTransaction
from remitflow.identity import PhiHasher
from sources.base import ParseContext
from sources.detect import expand_paths, parse_path
from sources.synthetic import generate_dataset
from state.case_index import CaseIndex
from tests.test_continuous import read, view
from tests.test_ingest import consume_all, read_topic
from tests.test_services_smoke import BOOTSTRAP, REDIS_URL, _servers_wanted

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not _servers_wanted(), reason="local servers not running"),
]

FOLDERS = (("remittance", "remittances"), ("bank", "bank"), ("posting", "postings"))


@pytest.fixture
def deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, str, dict[str, str]]]:
    """A fresh topic prefix (so Redis keys too) and recovery folder; the data, reconciled
    embedded for comparison. Cleans its Redis keys afterwards."""
    data = tmp_path / "data"
    generate_dataset(data, hospitals=1, payers=3, days=4, seed=5)
    refdata, settings = load_config(data / "refdata.toml")
    reconcile_files(
        expand_paths([data / "remittances", data / "bank", data / "postings"]),
        tmp_path / "embedded",
        FlowConfig(refdata=refdata, settings=settings),
    )
    prefix = f"ops-{uuid.uuid4().hex[:10]}"
    env = {
        "REMITFLOW_TOPIC_PREFIX": prefix,
        "REMITFLOW_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "REMITFLOW_REDIS_URL": REDIS_URL,
        "REMITFLOW_RECOVERY_DIR": str(tmp_path / "recovery"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield data, prefix, env
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)


def _ingest(data: Path, folders: tuple[tuple[str, str], ...] = FOLDERS, *config: str) -> None:
    for kind, folder in folders:
        assert main(["ingest", "--kind", kind, str(data / folder), *config]) == 0


def _records(topic: str) -> list[dict[str, Any]]:
    """What the topic holds (the commands that wrote it have returned)."""
    return [orjson.loads(v) for _, v in read_topic(topic)]


def test_configuration_from_redis_and_a_two_process_cluster_give_the_embedded_outcomes(
    tmp_path: Path,
    deployment: tuple[Path, str, dict[str, str]],
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    data, prefix, _ = deployment
    assert main(["run", "--until-end"]) == 2  # no --config and nothing in Redis: a usage error
    assert main(["refdata", "load", str(data / "refdata.toml")]) == 0
    loaded = orjson.loads(capsysbinary.readouterr().out)
    assert loaded["version"] == 1 and loaded["entities"] >= 1
    assert main(["refdata", "show"]) == 0
    assert orjson.loads(capsysbinary.readouterr().out)["sha256"] == loaded["sha256"]

    _ingest(data)  # entities resolved with the configuration from Redis
    assert main(["run", "--until-end", "--processes", "2", "--epoch-seconds", "0.5"]) == 0
    embedded = tmp_path / "embedded"
    for stem, topic in (("matched", "matched"), ("unmatched", "unmatched")):
        expected = read(embedded / f"{stem}.jsonl")
        assert view(_records(f"{prefix}.{topic}")) == view(expected), stem

    # The case index answers by case id and by trace, as the outcome records say.
    cases = CaseIndex(REDIS_URL, prefix)
    matched = [r for r in read(embedded / "matched.jsonl") if r["record"] == "matched"]
    for record in matched:
        case = cases.get(record["case_id"])
        assert case is not None
        assert (case["rule"], case["entity"]) == (record["rule"], record["entity"])
        assert case["remittances"] == record["remittances"]
        for rem in record["remittances"]:
            if rem["trace_number"]:
                found = cases.by_trace(" " + rem["trace_number"].lower())
                assert record["case_id"] in {c["case_id"] for c in found}
    # Exceptions: unmatched items, variances and ERP confirmations that did not post cleanly
    # (the embedded mode files those under unmatched too).
    exceptions = {c["case_id"] for c in cases.exceptions()}
    worked = {
        r["case_id"] for stem in ("unmatched", "variance") for r in read(embedded / f"{stem}.jsonl")
    }
    assert exceptions == worked

    # Replays on one process and on two regenerate the same outcomes, and post nothing.
    journals = len(_records(f"{prefix}.erp-postings"))
    for processes in ("2", "1"):
        assert main(["replay", "--from-offset", "earliest", "--processes", processes]) == 0
    for stem, topic in (("matched", "matched"), ("unmatched", "unmatched")):
        expected = read(embedded / f"{stem}.jsonl")
        tripled = Counter({k: 3 * n for k, n in view(expected).items()})
        assert view(_records(f"{prefix}.{topic}")) == tripled, stem
    assert len(_records(f"{prefix}.erp-postings")) == journals
    capsysbinary.readouterr()


def _step_workers(port: int, step_id: str, workers: int, timeout_s: float = 30.0) -> set[str]:
    """The worker indexes ``/metrics`` shows items out of ``step_id`` for (waits for
    ``workers`` of them, or ``timeout_s``)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        seen = {
            s.labels["worker_index"]
            for family in text_string_to_metric_families(text)
            if family.name == "bytewax_item_out_count"
            for s in family.samples
            if s.labels.get("step_id") == step_id and s.value > 0
        }
        if len(seen) >= workers:
            return seen
        time.sleep(0.3)
    return seen


def _spawn_run(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "remitflow", "run", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("processes", [1, 2])
def test_sigterm_stops_a_tailing_run_cleanly_and_the_next_run_resumes(
    tmp_path: Path,
    deployment: tuple[Path, str, dict[str, str]],
    processes: int,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    data, prefix, env = deployment
    config = str(data / "refdata.toml")
    _ingest(data, FOLDERS, "--config", config)
    port = step_metrics.free_port()
    run = _spawn_run(
        {**env, "REMITFLOW_METRICS_PORT": str(port)},
        *("--config", config, "--processes", str(processes), "--epoch-seconds", "0.5"),
    )
    try:
        # Tailing, certain pairs are decided on arrival: wait for the first of them.
        assert consume_all(f"{prefix}.audit", 1, timeout_s=60), "the run produced nothing"
        # Its /metrics carries Bytewax's step counters of every worker process.
        assert _step_workers(port, "remitflow.kafka_in", processes) == {
            str(i) for i in range(processes)
        }
        time.sleep(1.0)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err.decode()[-2000:]
    assert b"stopped; the next run resumes from recovery" in err

    # Resumed from the last snapshot and read to the end with every rule: each event is
    # decided exactly once across both runs, and no journal went out twice.
    assert main(["run", "--until-end", "--config", config, "--epoch-seconds", "0.5"]) == 0
    expected_audit = read(tmp_path / "embedded" / "audit.jsonl")
    audit = _records(f"{prefix}.audit")
    # (A re-sent event is audited twice, once as a duplicate, in the embedded mode too.)
    per_event = Counter(a["event_id"] for a in audit if a["kind"] != "posting")
    assert per_event == Counter(a["event_id"] for a in expected_audit if a["kind"] != "posting")
    journals = _records(f"{prefix}.erp-postings")
    keys = Counter(j["idempotency_key"] for j in journals)
    assert keys and set(keys.values()) == {1}
    capsysbinary.readouterr()


def test_replay_from_time_reads_only_what_came_after(
    deployment: tuple[Path, str, dict[str, str]], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    data, prefix, _ = deployment
    config = str(data / "refdata.toml")
    _ingest(data, FOLDERS[:1] + FOLDERS[2:], "--config", config)  # before the incident ...
    time.sleep(0.05)
    incident = datetime.now(UTC)
    time.sleep(0.05)
    _ingest(data, FOLDERS[1:2], "--config", config)  # ... bank transactions after it
    assert main(["replay", "--from-time", incident.isoformat(), "--config", config]) == 0
    capsysbinary.readouterr()

    refdata, _ = load_config(config)
    ctx = ParseContext(refdata=refdata, phi=PhiHasher())
    bank_ids = {
        e.event_id
        for path in expand_paths([data / "bank"])
        for e in parse_path(path, ctx)
        if isinstance(e, BankTransaction)
    }
    audit = _records(f"{prefix}.audit")
    assert {a["event_id"] for a in audit} == bank_ids  # no remittance was read
    assert main(["replay", "--from-time", "2026-11-20T00:00:00"]) == 2  # no zone: refused


def test_sigterm_during_run_until_end_decides_nothing_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """A stop is not the end of the input: a stopped `run --until-end` must not decide its
    open items as if nothing more would come; the resumed run gives the embedded outcomes."""
    data = tmp_path / "data"
    generate_dataset(data, hospitals=2, payers=8, days=10, seed=12)
    refdata, settings = load_config(data / "refdata.toml")
    embedded = tmp_path / "embedded"
    reconcile_files(
        expand_paths([data / "remittances", data / "bank", data / "postings"]),
        embedded,
        FlowConfig(refdata=refdata, settings=settings),
    )
    prefix = f"stop-{uuid.uuid4().hex[:10]}"
    env = {
        "REMITFLOW_TOPIC_PREFIX": prefix,
        "REMITFLOW_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "REMITFLOW_REDIS_URL": REDIS_URL,
        "REMITFLOW_RECOVERY_DIR": str(tmp_path / "recovery"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = str(data / "refdata.toml")
    _ingest(data, FOLDERS, "--config", config)
    run = _spawn_run(env, "--until-end", "--config", config, "--epoch-seconds", "0.2")
    try:
        time.sleep(1.5)  # started, and reading (about 3k events take a few seconds)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err.decode()[-2000:]
    stopped_early = b"stopped" in err
    assert main(["run", "--until-end", "--config", config, "--epoch-seconds", "0.2"]) == 0
    for stem, topic in (("matched", "matched"), ("unmatched", "unmatched")):
        expected = read(embedded / f"{stem}.jsonl")
        assert view(_records(f"{prefix}.{topic}")) == view(expected), (stem, stopped_early)
    capsysbinary.readouterr()
    with capsysbinary.disabled():
        print(f"\nSIGTERM during run --until-end: stopped before the end: {stopped_early}")
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)


def test_unusable_servers_and_offsets_are_one_line_errors(
    deployment: tuple[Path, str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    data, _, _ = deployment
    config = str(data / "refdata.toml")
    _ingest(data, FOLDERS, "--config", config)
    assert main(["replay", "--from-offset", "999999", "--config", config]) == 2
    assert b"holds offsets" in capsysbinary.readouterr().err
    monkeypatch.setenv("REMITFLOW_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens
    assert main(["run", "--until-end", "--config", config]) == 1
    err = capsysbinary.readouterr().err.decode()
    assert "ConnectionError" in err and "Traceback" not in err
