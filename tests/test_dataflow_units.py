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


def test_an_item_after_the_final_tick_is_still_decided() -> None:
    from matchers.base import MatchSettings
    from state.key_state import Tick

    logic = reconcile.MatchLogic(MatchSettings(), False, None)
    out, _ = logic.on_batch([Tick(date(2025, 6, 30), final=True), remittance("late", cents=500)])
    assert [(d.decision.outcome, d.decision.reason) for d in out if isinstance(d, Decided)] == [
        ("unmatched", "no_counterpart")
    ]


def test_items_left_open_at_end_of_input_are_decided() -> None:
    from matchers.base import MatchSettings

    logic = reconcile.MatchLogic(MatchSettings(), False, None)
    out, _ = logic.on_batch([remittance("r", cents=500)])
    assert list(out) == []
    out, _ = logic.on_eof()
    assert [(d.decision.outcome, d.decision.reason) for d in out if isinstance(d, Decided)] == [
        ("unmatched", "end_of_input")
    ]
