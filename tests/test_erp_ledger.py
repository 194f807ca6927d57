"""The ERP idempotency ledger on real Redis: each key posted once, each event's cash once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from sinks.erp_ledger import Claim, IdempotencyLedger
from tests.test_services_smoke import REDIS_URL, _servers_wanted

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not _servers_wanted(), reason="local servers not running"),
]


@pytest.fixture
def ledger() -> Iterator[IdempotencyLedger]:
    prefix = f"ledger-{uuid.uuid4().hex[:10]}"
    yield IdempotencyLedger(REDIS_URL, prefix)
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)


def test_a_key_is_claimed_once_then_posted_once(ledger: IdempotencyLedger) -> None:
    assert ledger.claim("k1", ["e1", "e2"]) == Claim("new")
    assert ledger.claim("k1", ["e2", "e1"]) == Claim("pending")  # a crash before the ack
    ledger.mark_posted("k1", "201")
    assert ledger.claim("k1", ["e1", "e2"]) == Claim("posted")
    status = ledger.status("k1")
    assert status is not None and (status["status"], status["response"]) == ("posted", "201")


def test_an_event_journaled_under_one_key_is_a_conflict_under_another(
    ledger: IdempotencyLedger,
) -> None:
    """A replay that groups events differently from the live run must not post their cash
    again under a new key."""
    assert ledger.claim("live", ["rem-1", "bank-1"]).state == "new"
    ledger.mark_posted("live", "201")
    assert ledger.claim("replay", ["rem-1", "rem-2", "bank-1"]) == Claim("conflict", "live")
    assert ledger.status("replay") is None  # the conflicting claim wrote nothing ...
    assert ledger.owner("rem-2") is None  # ... not even for its other events
    assert ledger.owner("bank-1") == "live"
    assert ledger.claim("other", ["rem-2"]).state == "new"


def test_concurrent_claimers_of_overlapping_events_cannot_both_win(
    ledger: IdempotencyLedger,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def claim(i: int) -> str:
        return ledger.claim(f"key-{i}", ["shared", f"own-{i}"]).state

    with ThreadPoolExecutor(max_workers=8) as pool:
        states = list(pool.map(claim, range(32)))
    assert states.count("new") == 1 and states.count("conflict") == 31
