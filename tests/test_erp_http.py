"""The HTTP ERP adapter against a recording ERP test server on loopback."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from remitflow.cli import main
from sinks.erp_http import HttpErpAdapter, PostingFailed, RetryPolicy
from tests.conftest import SAMPLES, RecordingErp


@pytest.fixture(scope="module")
def journals(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("erp")
    assert (
        main(
            [
                "reconcile",
                "--remittances",
                str(SAMPLES / "LinuxForHealth-x12__managed-care.835"),
                str(SAMPLES / "LinuxForHealth-x12__medicare-part-a.835"),
                "--bank",
                str(SAMPLES / "synthetic__bai2_hcclaimpmt_ach.bai2"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    lines = (Path(out) / "erp_postings.jsonl").read_bytes().splitlines()
    return [orjson.loads(line) for line in lines]


def test_every_journal_posted_once_through_failures_and_replays(
    erp: tuple[RecordingErp, str], journals: list[dict[str, Any]]
) -> None:
    state, url = erp
    state.fail_first = 2  # two 503s per key before the ERP takes it
    waits: list[float] = []
    adapter = HttpErpAdapter(url, policy=RetryPolicy(max_attempts=5), sleep=waits.append)
    for journal in journals:
        assert adapter.post(journal).startswith("201")
    for journal in journals:  # replayed: the ERP answers 409, which is success
        assert adapter.post(journal).startswith("409")
    assert set(state.accepted) == {j["idempotency_key"] for j in journals}
    assert len(waits) == 2 * len(journals)
    for posted in state.accepted.values():
        lines = posted["lines"]
        assert sum(Decimal(x["debit"]) for x in lines) == sum(Decimal(x["credit"]) for x in lines)
    adapter.close()


def test_retry_after_is_honoured_and_the_budget_ends_in_posting_failed(
    erp: tuple[RecordingErp, str], journals: list[dict[str, Any]]
) -> None:
    state, url = erp
    state.fail_first, state.status, state.retry_after = 99, 429, "3"
    waits: list[float] = []
    adapter = HttpErpAdapter(
        url, policy=RetryPolicy(max_attempts=3, base_s=0.01, budget_s=60), sleep=waits.append
    )
    with pytest.raises(PostingFailed, match="after 3 attempt"):
        adapter.post(journals[0])
    assert waits == [3.0, 3.0]  # Retry-After wins over the (shorter) backoff
    assert state.accepted == {}


def test_a_refusal_is_not_retried(
    erp: tuple[RecordingErp, str], journals: list[dict[str, Any]]
) -> None:
    state, url = erp
    state.fail_first, state.status = 1, 400
    adapter = HttpErpAdapter(url, sleep=lambda _: None)
    with pytest.raises(PostingFailed, match="HTTP 400"):
        adapter.post(journals[0])
    assert state.requests[journals[0]["idempotency_key"]] == 1


def test_an_unreachable_erp_is_retried_then_fails() -> None:
    waits: list[float] = []
    adapter = HttpErpAdapter(
        "http://127.0.0.1:1/journals",
        policy=RetryPolicy(max_attempts=3, base_s=0.01),
        sleep=waits.append,
        timeout_s=1,
    )
    with pytest.raises(PostingFailed, match="transport error"):
        adapter.post({"idempotency_key": "k", "lines": []})
    assert len(waits) == 2
