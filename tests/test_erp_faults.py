"""ERP faults (issue #5): 5xx, 429 with Retry-After, answers past the timeout, dropped
connections and "accepted but the response was lost" — every journal posted exactly once,
retries visible in the metrics, PostingFailed (the dead-letter path) only past the budget.

The adapter tests talk to :mod:`tests.erp_faults` directly; the services test runs the whole
pipeline (ingest → ``remitflow run --until-end``) against it. Each prints its figure.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from email.utils import formatdate
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from dataflows.embedded import reconcile_files
from dataflows.reconcile import FlowConfig
from remitflow.cli import main
from remitflow.config import load_config
from sinks.erp_http import HttpErpAdapter, PostingFailed, RetryPolicy
from sinks.erp_ledger import IdempotencyLedger
from sources.detect import expand_paths
from sources.synthetic import generate_dataset
from tests.erp_faults import FaultyErp, serve, tally
from tests.test_ingest import read_topic
from tests.test_services_smoke import BOOTSTRAP, REDIS_URL, _servers_wanted

RESULTS = ("posted", "duplicate", "retry", "refused", "failed")
TIMEOUT_S = 0.2  # the client's; FaultyErp.slow_s (0.6 s) is well past it
# Every fault, never more than two in a row, so a journal always gets through in budget.
STORM = ["500", "ok", "429", "slow", "ok", "drop", "accept-then-drop", "503", "ok", "ok"]


def attempts() -> dict[str, float]:
    return {
        r: REGISTRY.get_sample_value("remitflow_erp_post_attempts_total", {"result": r}) or 0.0
        for r in RESULTS
    }


def moved(before: dict[str, float]) -> dict[str, int]:
    """The attempt counters that changed since ``before``, by how much."""
    return {r: int(n - before[r]) for r, n in attempts().items() if n != before[r]}


def queue_depth() -> float:
    return REGISTRY.get_sample_value("remitflow_retry_queue_depth") or 0.0


def journal(i: int) -> dict[str, Any]:
    return {
        "record": "erp_posting",
        "idempotency_key": f"key-{i:04d}",
        "case_id": f"case-{i:04d}",
        "remittances": [{"event_id": f"era-{i}"}],
        "bank_transactions": [{"event_id": f"bank-{i}"}],
        "lines": [
            {"account": "1010", "debit": f"{i}.25", "credit": "0.00"},
            {"account": "1200", "debit": "0.00", "credit": f"{i}.25"},
        ],
    }


def adapter(
    url: str,
    *,
    max_attempts: int = 6,
    budget_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> HttpErpAdapter:
    policy = RetryPolicy(
        max_attempts=max_attempts, base_s=0.01, cap_s=0.05, budget_s=budget_s, timeout_s=TIMEOUT_S
    )
    return HttpErpAdapter(url, policy=policy, sleep=sleep)


@pytest.mark.parametrize(
    ("mode", "seen_as", "posted"),
    [
        ("500", "HTTP 500", False),
        ("429", "HTTP 429", False),
        ("slow", "transport error: ReadTimeout", True),
        ("drop", "transport error: RemoteProtocolError", False),
        ("accept-then-drop", "transport error: ReadError", True),
    ],
)
def test_each_fault_reaches_the_client_as_the_failure_it_imitates(
    mode: str, seen_as: str, posted: bool
) -> None:
    """With one attempt allowed, the failure is the fault's own; posted or not, the client
    cannot tell (which is why the sink's dead letter leaves the ledger key pending)."""
    erp = FaultyErp(after=mode)
    with serve(erp) as url, pytest.raises(PostingFailed, match=f"1 attempt.*: {seen_as}$"):
        adapter(url, max_attempts=1).post(journal(0))
    assert bool(erp.accepted) is posted


@pytest.mark.parametrize("script", [["500"], ["503", "500", "503"]])
def test_server_errors_are_retried_and_the_journal_posted_once(script: list[str]) -> None:
    erp, before = FaultyErp(script), attempts()
    with serve(erp) as url:
        assert adapter(url).post(journal(1)).startswith("201")
    assert list(erp.accepted) == ["key-0001"]
    assert erp.attempts["key-0001"] == len(script) + 1
    assert moved(before) == {"retry": len(script), "posted": 1}


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("2", 2.0, 2.0),
        ("<30 s from now>", 28.0, 30.0),  # an HTTP date (whole seconds)
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, 0.05),  # a date past: only the backoff
        ("soon", 0.0, 0.05),  # unreadable: only the backoff
    ],
)
def test_429_waits_at_least_what_retry_after_asks(
    retry_after: str, low: float, high: float
) -> None:
    if retry_after == "<30 s from now>":
        retry_after = formatdate(time.time() + 30, usegmt=True)
    erp, waits = FaultyErp(["429"], retry_after=retry_after), list[float]()
    with serve(erp) as url:
        assert adapter(url, budget_s=60, sleep=waits.append).post(journal(2)).startswith("201")
    assert len(waits) == 1 and low <= waits[0] <= high
    assert list(erp.accepted) == ["key-0002"]


def test_an_answer_slower_than_the_timeout_is_retried_and_the_409_counts_as_posted() -> None:
    erp, before = FaultyErp(["slow"]), attempts()
    with serve(erp) as url:
        started = time.monotonic()
        assert adapter(url).post(journal(3)) == "409 already posted under this key"
        assert time.monotonic() - started < erp.slow_s  # the client did not wait for it
    assert list(erp.accepted) == ["key-0003"] and erp.unacknowledged == {"key-0003"}
    assert moved(before) == {"retry": 1, "duplicate": 1}


def test_a_connection_dropped_before_posting_is_retried() -> None:
    erp, before = FaultyErp(["drop", "drop"]), attempts()
    with serve(erp) as url:
        assert adapter(url).post(journal(4)).startswith("201")
    assert list(erp.accepted) == ["key-0004"] and not erp.unacknowledged
    assert moved(before) == {"retry": 2, "posted": 1}


@pytest.mark.parametrize("replay_status", [409, 201])
def test_accepted_but_response_lost_is_one_posting_not_two(replay_status: int) -> None:
    """The ERP posts, then resets the connection; the retry under the same key is answered
    409 (or the first 201 replayed): posted, and the ERP holds one journal."""
    erp, before = FaultyErp(["accept-then-drop"], replay_status=replay_status), attempts()
    with serve(erp) as url:
        assert adapter(url).post(journal(5)).startswith(str(replay_status))
    assert list(erp.accepted) == ["key-0005"] and erp.unacknowledged == {"key-0005"}
    assert erp.attempts["key-0005"] == 2 and not erp.mismatched
    assert moved(before) == {"retry": 1, "duplicate": 1}


def test_an_erp_not_listening_yet_is_retried_until_it_is() -> None:
    with socket.socket() as probe:  # a port nothing listens on (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    erp, before = FaultyErp(), attempts()
    with ExitStack() as stack:

        def start_erp(_: float) -> None:  # the ERP comes up while the adapter waits
            stack.enter_context(serve(erp, port))

        url = f"http://127.0.0.1:{port}/journals"
        assert adapter(url, sleep=start_erp).post(journal(6)).startswith("201")
    assert list(erp.accepted) == ["key-0006"]
    assert moved(before) == {"retry": 1, "posted": 1}


def test_the_retry_queue_depth_counts_journals_waiting_to_retry() -> None:
    erp, depths, idle = FaultyErp(["500", "429"]), list[float](), queue_depth()
    with serve(erp) as url:
        assert adapter(url, sleep=lambda _: depths.append(queue_depth())).post(journal(7))
    assert depths == [idle + 1, idle + 1]
    assert queue_depth() == idle


def test_past_the_attempt_budget_posting_fails_and_nothing_is_posted() -> None:
    erp, before = FaultyErp(after="503"), attempts()
    with serve(erp) as url, pytest.raises(PostingFailed, match="after 4 attempt"):
        adapter(url, max_attempts=4).post(journal(8))
    assert erp.accepted == {} and erp.attempts["key-0008"] == 4
    assert moved(before) == {"retry": 3, "failed": 1}


def test_a_retry_after_past_the_budget_fails_at_once() -> None:
    erp, waits, before = FaultyErp(after="429", retry_after="120"), list[float](), attempts()
    with serve(erp) as url, pytest.raises(PostingFailed, match="pass the 30 s budget"):
        adapter(url, budget_s=30, sleep=waits.append).post(journal(9))
    assert waits == [] and erp.attempts["key-0009"] == 1
    assert moved(before) == {"failed": 1}


def test_a_refusal_is_counted_and_not_retried() -> None:
    erp, before = FaultyErp(["400"]), attempts()
    with serve(erp) as url, pytest.raises(PostingFailed, match="HTTP 400"):
        adapter(url).post(journal(10))
    assert erp.attempts["key-0010"] == 1 and moved(before) == {"refused": 1}


def test_a_time_budget_bounds_an_erp_too_slow_to_answer_and_a_replay_posts_once() -> None:
    """Every answer is too slow: the first attempt posted, but the adapter cannot know, and
    gives up within its budget (the sink dead-letters; the ledger key stays pending). When the
    ERP recovers, the replay under the same key is answered 409: one posting in all."""
    erp, before = FaultyErp(after="slow"), attempts()
    with serve(erp) as url:
        started = time.monotonic()
        with pytest.raises(PostingFailed, match="transport error: ReadTimeout"):
            adapter(url, max_attempts=100, budget_s=1.0).post(journal(11))
        assert time.monotonic() - started < 1.0 + TIMEOUT_S
        assert moved(before)["failed"] == 1
        erp.after = "ok"
        assert adapter(url).post(journal(11)) == "409 already posted under this key"
    assert list(erp.accepted) == ["key-0011"]


def test_a_storm_of_every_fault_posts_each_journal_exactly_once() -> None:
    journals = [journal(i) for i in range(100, 140)]
    erp, before = FaultyErp(STORM * 9, retry_after="0"), attempts()
    with serve(erp) as url:
        erp_adapter = adapter(url)
        for j in journals:
            erp_adapter.post(j)
        counts = moved(before)
        for j in journals:  # replayed: nothing posted again
            assert erp_adapter.post(j) == "409 already posted under this key"
    figure = tally(erp, (j["idempotency_key"] for j in journals))
    print(figure.figure())
    assert set(erp.injected) == {"500", "503", "429", "slow", "drop", "accept-then-drop"}
    assert (figure.lost, figure.duplicated) == (0, 0)
    assert erp.accepted == {j["idempotency_key"]: j for j in journals}
    # One retry per fault; the lost acknowledgements come back as 409s, the rest as 201s.
    acks_lost = len(erp.unacknowledged)
    assert acks_lost > 0
    assert counts == {
        "retry": erp.faults,
        "duplicate": acks_lost,
        "posted": len(journals) - acks_lost,
    }


# -- the whole pipeline, on the real broker and Redis ------------------------------------


@pytest.fixture
def storm_erp() -> Iterator[tuple[FaultyErp, str]]:
    erp = FaultyErp(STORM * 6, retry_after="1")
    with serve(erp) as url:
        yield erp, url


@pytest.mark.services
@pytest.mark.skipif(not _servers_wanted(), reason="local servers not running")
def test_remitflow_run_posts_every_journal_once_through_an_erp_storm(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
    storm_erp: tuple[FaultyErp, str],
) -> None:
    erp, url = storm_erp
    data = tmp_path / "data"
    generate_dataset(data, hospitals=1, payers=3, days=4, seed=4)
    prefix = f"storm-{uuid.uuid4().hex[:10]}"
    for name, value in (
        ("REMITFLOW_TOPIC_PREFIX", prefix),
        ("REMITFLOW_KAFKA_BOOTSTRAP", BOOTSTRAP),
        ("REMITFLOW_REDIS_URL", REDIS_URL),
        ("REMITFLOW_RECOVERY_DIR", str(tmp_path / "recovery")),
        ("REMITFLOW_ERP_URL", url),
        ("REMITFLOW_ERP_MAX_ATTEMPTS", "8"),
        ("REMITFLOW_ERP_BUDGET_S", "20"),
        ("REMITFLOW_ERP_TIMEOUT_S", str(TIMEOUT_S)),
    ):
        monkeypatch.setenv(name, value)
    config_path = str(data / "refdata.toml")
    for kind, folder in (("remittance", "remittances"), ("bank", "bank"), ("posting", "postings")):
        assert main(["ingest", "--kind", kind, str(data / folder), "--config", config_path]) == 0
    before, idle = attempts(), queue_depth()
    assert main(["run", "--until-end", "--config", config_path]) == 0
    counts = moved(before)
    capsysbinary.readouterr()  # the commands' own output

    embedded = tmp_path / "embedded"
    refdata, settings = load_config(config_path)
    reconcile_files(
        expand_paths([data / "remittances", data / "bank", data / "postings"]),
        embedded,
        FlowConfig(refdata=refdata, settings=settings),
    )
    lines = (embedded / "erp_postings.jsonl").read_bytes().splitlines()
    expected = {orjson.loads(line)["idempotency_key"] for line in lines}
    figure = tally(erp, expected)
    print(f"{figure.figure()} (remitflow run, {len(erp.unacknowledged)} acknowledgements lost)")
    assert len(expected) > 10 and erp.faults > len(expected)  # a storm, not a drizzle
    assert set(erp.injected) == {"500", "503", "429", "slow", "drop", "accept-then-drop"}
    assert set(erp.accepted) == expected and not erp.mismatched
    assert (figure.lost, figure.duplicated) == (0, 0)
    letters = [orjson.loads(v) for _, v in read_topic(f"{prefix}.dead-letter")]
    assert [x for x in letters if x["stage"] == "post"] == []  # the budget was never spent
    ledger = IdempotencyLedger(REDIS_URL, prefix)
    assert set(ledger.keys()) == expected
    assert all((ledger.status(k) or {}).get("status") == "posted" for k in expected)
    acks_lost = len(erp.unacknowledged)
    assert counts == {
        "retry": erp.faults,
        "duplicate": acks_lost,
        "posted": len(expected) - acks_lost,
    }
    assert queue_depth() == idle
