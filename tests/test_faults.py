"""Faults injected for real (DESIGN.md §7): kill -9 at random moments, a Redis restart and a
Kafka broker restart in the middle of a run. Each test prints its figures.

The reference is the embedded mode on the same files (tests show `run --until-end` gives the
same outcomes uninterrupted). Outputs are at-least-once across crashes (recovery re-emits
what followed the last snapshot), so records are compared as sets; journals must reach the
ERP exactly once, which the ERP test server, the Redis ledger and the reference all agree on.

``REMITFLOW_KILLS`` (default 5) sets how many kills the crash test aims for.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from dataflows.embedded import reconcile_files
from dataflows.reconcile import FlowConfig
from remitflow.cli import main
from remitflow.config import load_config
from sinks.erp_ledger import IdempotencyLedger
from sources.detect import expand_paths
from sources.synthetic import generate_dataset
from tests.conftest import RecordingErp
from tests.test_continuous import read
from tests.test_ingest import read_topic
from tests.test_services_smoke import BOOTSTRAP, REDIS_URL, _servers_wanted

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not _servers_wanted(), reason="local servers not running"),
]

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = (("remittance", "remittances"), ("bank", "bank"), ("posting", "postings"))
OUTCOME_TOPICS = {"matched": "matched", "variance": "variances", "unmatched": "unmatched"}


class Deployment:
    """A dataset ingested under a fresh prefix, its embedded reference, and `run` processes."""

    def __init__(self, tmp: Path, erp_url: str, hospitals: int, payers: int, days: int) -> None:
        self.data = tmp / "data"
        generate_dataset(self.data, hospitals=hospitals, payers=payers, days=days, seed=21)
        self.config = str(self.data / "refdata.toml")
        refdata, settings = load_config(self.config)
        self.reference = tmp / "embedded"
        reconcile_files(
            expand_paths([self.data / f for _, f in FOLDERS]),
            self.reference,
            FlowConfig(refdata=refdata, settings=settings),
        )
        self.prefix = f"fault-{uuid.uuid4().hex[:10]}"
        self.env = {
            **os.environ,
            "REMITFLOW_TOPIC_PREFIX": self.prefix,
            "REMITFLOW_KAFKA_BOOTSTRAP": BOOTSTRAP,
            "REMITFLOW_REDIS_URL": REDIS_URL,
            "REMITFLOW_RECOVERY_DIR": str(tmp / "recovery"),
            "REMITFLOW_ERP_URL": erp_url,
        }

    def ingest(self, pytest_env: pytest.MonkeyPatch) -> None:
        for name in ("REMITFLOW_TOPIC_PREFIX", "REMITFLOW_KAFKA_BOOTSTRAP"):
            pytest_env.setenv(name, self.env[name])
        for kind, folder in FOLDERS:
            args = ["ingest", "--kind", kind, str(self.data / folder), "--config", self.config]
            assert main(args) == 0

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "remitflow", "run", "--config", self.config, *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def finish(self) -> None:
        """One uninterrupted `run --until-end` from wherever recovery left off."""
        run = self.spawn("--until-end", "--epoch-seconds", "0.2")
        _, err = run.communicate(timeout=180)
        assert run.returncode == 0, err.decode()[-3000:]

    def check(self, erp: RecordingErp) -> dict[str, int]:
        """Outcomes, conservation and exactly-once posting against the reference."""
        for stem, topic in OUTCOME_TOPICS.items():
            got = {_identity(r) for r in _topic(f"{self.prefix}.{topic}")}
            want = {_identity(r) for r in read(self.reference / f"{stem}.jsonl")}
            assert got == want, stem
        # Conservation: every input event has the reference's terminal outcomes, no other.
        audit = {_identity(a) for a in _topic(f"{self.prefix}.audit")}
        expected_audit = [_identity(a) for a in read(self.reference / "audit.jsonl")]
        assert audit == set(expected_audit)
        journals = read(self.reference / "erp_postings.jsonl")
        keys = {j["idempotency_key"] for j in journals}
        assert set(erp.accepted) == keys  # none lost, none foreign
        ledger = IdempotencyLedger(REDIS_URL, self.prefix)
        assert set(ledger.keys()) == keys
        assert all((ledger.status(k) or {}).get("status") == "posted" for k in keys)
        return {
            "items": len({a[1] for a in expected_audit}),
            "postings": len(keys),
            "resent": sum(n - 1 for n in erp.requests.values()),
        }

    def cleanup(self) -> None:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{self.prefix}:*"):
            client.delete(key)


def _topic(topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(v) for _, v in read_topic(topic)]


def _identity(record: dict[str, Any]) -> tuple[str, ...]:
    """A record without its wall-clock time, and its items without where they were read: a
    re-sent file holds the same events, and which copy a case quotes depends on which was
    read first (files in name order, topics in partition interleaving)."""
    record = {
        **record,
        **{
            side: [{k: v for k, v in item.items() if k != "source"} for item in record[side]]
            for side in ("remittances", "bank_transactions")
            if side in record
        },
    }
    return tuple(
        orjson.dumps(record.get(k), option=orjson.OPT_SORT_KEYS).decode()
        for k in sorted(record)
        if k != "emitted_at"
    )


@pytest.fixture
def deployment(
    tmp_path: Path, erp: tuple[RecordingErp, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    made = Deployment(tmp_path, erp[1], hospitals=4, payers=24, days=20)
    made.ingest(monkeypatch)
    yield made
    made.cleanup()


def _report(capsys: pytest.CaptureFixture[bytes], line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


def test_kill_9_at_random_moments_loses_nothing_and_posts_nothing_twice(
    deployment: Deployment,
    erp: tuple[RecordingErp, str],
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    wanted = int(os.environ.get("REMITFLOW_KILLS", "5"))
    rng = random.Random(int(os.environ.get("REMITFLOW_KILL_SEED", "7")))
    kills = attempts = 0
    while kills < wanted and attempts < 4 * wanted:
        attempts += 1
        run = deployment.spawn("--until-end", "--epoch-seconds", "0.2")
        time.sleep(rng.uniform(0.5, 3.5))  # startup, reading, deciding or posting
        if run.poll() is None:
            run.send_signal(signal.SIGKILL)
            kills += 1
        run.communicate(timeout=60)
        if run.returncode == 0:
            break  # it finished before the kill: the rest is the uninterrupted end
    assert kills >= min(wanted, 1)
    deployment.finish()
    figures = deployment.check(erp[0])
    _report(
        capsysbinary,
        f"kill -9: {kills} kills survived in {attempts} runs, {figures['items']} items and "
        f"{figures['postings']} postings checked, 0 lost, 0 duplicated "
        f"({figures['resent']} re-sends after a crash absorbed by the Idempotency-Key)",
    )


def _service(name: str, action: str) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / f"{name}.sh"), action],
        check=True,
        capture_output=True,
        timeout=180,
    )


def test_a_redis_restart_mid_run_is_waited_out_and_nothing_posts_unrecorded(
    deployment: Deployment,
    erp: tuple[RecordingErp, str],
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    state, _ = erp
    posted_at: list[float] = []
    handle = state.handle

    def timed(key: str, body: bytes) -> tuple[int, dict[str, str]]:
        status, headers = handle(key, body)
        if status == 201:
            posted_at.append(time.monotonic())
        return status, headers

    state.handle = timed  # type: ignore[method-assign]
    run = deployment.spawn("--until-end", "--epoch-seconds", "0.2")
    try:
        time.sleep(1.0)
        _service("redis", "stop")
        down = time.monotonic()
        time.sleep(4.0)
        up = time.monotonic()
        _service("redis", "start")
        _, err = run.communicate(timeout=180)
    finally:
        _service("redis", "start")  # whatever happened, later tests need it
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err.decode()[-3000:]
    waited = err.count(b"redis does not answer")
    assert waited > 0  # it did meet the outage (the test is not vacuous) ...
    assert not [t for t in posted_at if down + 0.5 < t < up]  # ... and posted nothing then
    figures = deployment.check(state)
    _report(
        capsysbinary,
        f"Redis restart: down {up - down:.1f} s, {waited} waits logged, {figures['items']} "
        f"items and {figures['postings']} postings checked, 0 lost, 0 duplicated",
    )


def test_a_broker_restart_mid_run_is_waited_out(
    deployment: Deployment,
    erp: tuple[RecordingErp, str],
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    """The broker goes away while `run --until-end` reads and writes: the consumer reconnects,
    the producer retries, and the run ends normally with the reference outcomes."""
    run = deployment.spawn("--until-end", "--epoch-seconds", "0.2")
    try:
        time.sleep(1.5)  # started and reading
        _service("kafka", "stop")
        stopped = time.monotonic()
        time.sleep(2.0)
        _service("kafka", "start")  # waits until the broker answers
        down = time.monotonic() - stopped
        _, err = run.communicate(timeout=180)
    finally:
        _service("kafka", "start")
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err.decode()[-3000:]
    letters = _topic(f"{deployment.prefix}.dead-letter")
    assert not [x for x in letters if "consumer error" in x["reason"]]  # an outage is no letter
    figures = deployment.check(erp[0])
    _report(
        capsysbinary,
        f"Kafka restart: down {down:.1f} s, {figures['items']} "
        f"items and {figures['postings']} postings checked, 0 lost, 0 duplicated",
    )
