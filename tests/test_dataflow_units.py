"""Pieces of the dataflow that the end-to-end tests do not reach."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

import dataflows.reconcile as reconcile
from matchers.base import Decision
from remitflow.refdata import ReferenceData
from sinks.journal import JournalImbalance
from state.key_state import Decided
from tests.factories import deposit, remittance


def test_a_journal_that_cannot_balance_becomes_a_post_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise JournalImbalance("debits 10.00 ≠ credits 9.99")

    monkeypatch.setattr(reconcile, "journal_record", broken)
    r, d = remittance(cents=1000), deposit(cents=1000)
    decided = Decided(
        Decision("matched", "trace_exact", 1.0, (r,), (d,)), date(2025, 6, 2), date(2025, 6, 2)
    )
    out = reconcile._Formatter(ReferenceData())(("k", decided))
    letters = [rec for stem, rec in out if stem == "dead_letter"]
    assert len(letters) == 1
    assert letters[0]["stage"] == "post" and "does not balance" in letters[0]["reason"]
    # The case itself is still reported; only its journal is withheld.
    assert any(stem == "matched" for stem, _ in out)
    assert not any(stem == "erp_postings" for stem, _ in out)
