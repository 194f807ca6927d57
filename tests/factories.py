"""Builders of matching-state items and Hypothesis strategies of candidate sets.

The builders give every field a sensible default so that a test spells out only what it is
about (``remittance(cents=10_000, trace="0012524965")``). The strategies are building blocks,
not tests: small pools of amounts, traces and days make collisions (equal amounts, one trace on
several items, dates at the edge of the window) likely, which is where matchers go wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from datetime import date, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from hypothesis import strategies as st

from matchers.base import Candidates, MatchSettings
from remitflow.calendar import add_business_days
from remitflow.events import PAYER_CASH_CATEGORIES
from remitflow.identity import normalize_trace
from state.items import OpenItem, money_text

MONDAY = date(2024, 3, 4)  # no Fed holiday within the two weeks around it
LATE_AFTER = MatchSettings().late_after_business_days
AETNA_TRN03 = "1673696652"  # aetna's TRN03 in the example reference data


class _Derive(Enum):
    """Default of ``trace_key``: derive it from ``trace`` as the router does."""

    FROM_TRACE = "from-trace"


FROM_TRACE = _Derive.FROM_TRACE


def _key(trace: str | None, trace_key: str | _Derive | None) -> str | None:
    if trace_key is FROM_TRACE:
        return normalize_trace(trace) or None
    return trace_key


def remittance(
    event_id: str = "r1",
    cents: int = 100_000,
    *,
    day: date = MONDAY,
    trace: str | None = "12524965",
    trace_key: str | _Derive | None = FROM_TRACE,
    payer: str = "aetna",
    payer_id: str | None = AETNA_TRN03,
    entity: str | None = "H001",
    expects_cash: bool = True,
    balanced: bool = True,
) -> OpenItem:
    """An open ERA; an unbalanced one is off by a dollar."""
    return OpenItem(
        event_id=event_id,
        kind="remittance",
        entity=entity,
        payer=payer,
        cents=cents,
        day=day,
        trace=trace,
        trace_key=_key(trace, trace_key),
        payer_id=payer_id,
        deadline=add_business_days(day, LATE_AFTER),
        ref={
            "event_id": event_id,
            "trace_number": trace,
            "payer_id": payer_id,
            "amount": money_text(cents),
            "source": {"system": "x12-835", "file": "era.835", "record": "0001", "offset": 0},
        },
        expects_cash=expects_cash,
        balanced=balanced,
        balance_diff_cents=0 if balanced else 100,
        claims_paid_cents=cents if balanced else cents + 100,
    )


def deposit(
    event_id: str = "d1",
    cents: int = 100_000,
    *,
    day: date = MONDAY,
    trace: str | None = None,
    trace_key: str | _Derive | None = FROM_TRACE,
    payer: str = "aetna",
    payer_id: str | None = None,
    entity: str | None = "H001",
    category: str = "claim_payment",
    account: str = "764508371122",
) -> OpenItem:
    """An open bank credit; ``trace`` is the addenda trace (or a lockbox check number)."""
    return OpenItem(
        event_id=event_id,
        kind="bank_transaction",
        entity=entity,
        payer=payer,
        cents=cents,
        day=day,
        trace=trace,
        trace_key=_key(trace, trace_key),
        payer_id=payer_id,
        deadline=add_business_days(day, LATE_AFTER),
        ref={
            "event_id": event_id,
            "bank_reference": f"BR{event_id}",
            "account": account,
            "amount": money_text(cents),
            "value_date": day.isoformat(),
            "source": {"system": "bai2", "file": "bank.bai2", "record": "16", "offset": 0},
        },
        account=account,
        category=category,
    )


def candidates(*items: OpenItem, settings: MatchSettings | None = None) -> Candidates:
    """Items split by side, in the order given."""
    return Candidates(
        tuple(i for i in items if i.is_remittance),
        tuple(i for i in items if not i.is_remittance),
        settings or MatchSettings(),
    )


def ids(items: Any) -> frozenset[str]:
    return frozenset(i.event_id for i in items)


# -- Hypothesis building blocks ----------------------------------------------------------------

# Amounts that collide often (several ERAs of one payer for the same amount are common).
COMMON_CENTS = (5_000, 10_000, 10_050, 12_345, 25_000, 100_000)
TRACES = ("12524965", "1QG11111111", "99887", "555", "EFT2024A")


def _spell(trace: str, how: int) -> str:
    """``trace`` as another system may write it (all normalise to the same key)."""
    return (trace, "00" + trace, trace.lower(), f" {trace[:2]} {trace[2:]}")[how]


amounts = st.one_of(st.sampled_from(COMMON_CENTS), st.integers(min_value=1, max_value=2_000_000))
days = st.integers(min_value=-3, max_value=12).map(lambda n: MONDAY + timedelta(days=n))
spelled_traces = st.builds(_spell, st.sampled_from(TRACES), st.sampled_from((0, 0, 1, 2, 3)))
traces = st.one_of(st.none(), st.none(), spelled_traces)  # loose items: mostly no trace
payers = st.sampled_from(("aetna", "aetna", "aetna", "?"))
deposit_categories = st.sampled_from(sorted(PAYER_CASH_CATEGORIES))
balance_flags = st.sampled_from((True, True, True, False))
cash_flags = st.sampled_from((True, True, True, False))


@st.composite
def remittances(draw: st.DrawFn) -> OpenItem:
    """An ERA with any mix of trace, amount, day, cash expectation and balance."""
    return remittance(
        "r",
        draw(amounts),
        day=draw(days),
        trace=draw(traces),
        payer=draw(payers),
        expects_cash=draw(cash_flags),
        balanced=draw(balance_flags),
    )


@st.composite
def deposits(draw: st.DrawFn) -> OpenItem:
    """A payer-cash credit, with or without an addenda trace."""
    return deposit(
        "d",
        draw(amounts),
        day=draw(days),
        trace=draw(traces),
        payer=draw(payers),
        category=draw(deposit_categories),
    )


def _split(draw: st.DrawFn, total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` positive amounts (``total >= parts``)."""
    if parts == 1:
        return [total]
    cuts = draw(
        st.lists(
            st.integers(min_value=1, max_value=total - 1),
            min_size=parts - 1,
            max_size=parts - 1,
            unique=True,
        )
    )
    bounds = [0, *sorted(cuts), total]
    return [b - a for a, b in itertools.pairwise(bounds)]


SHAPES = ((1, 1), (1, 1), (1, 1), (2, 1), (3, 1), (1, 2), (1, 3))  # (ERAs, deposits)
BANK_DIFFERENCES = (0, 0, 0, 0, 0, -1, -900, -1_000, -1_001, 1, 5_000)


@st.composite
def payments(draw: st.DrawFn, *, exact: bool = False) -> list[OpenItem]:
    """One payment: N ERAs and M deposits with one trace and equal totals (N:1, 1:N or 1:1).

    The deposits may carry the trace as written, spelled otherwise or not at all (no addenda),
    and may be lockbox deposits. Unless ``exact``, the bank side may come up short (a fee) or
    differ otherwise, and ERAs may be unbalanced.
    """
    total = draw(st.integers(min_value=1_000, max_value=500_000))
    n_rems, n_deps = draw(st.sampled_from(SHAPES))
    trace = draw(st.sampled_from(TRACES))
    day = draw(days)
    # The addenda spells the trace as the ERA does, or otherwise, or is missing.
    dep_trace = draw(
        st.sampled_from((trace, trace, _spell(trace, 1), _spell(trace, 2), None, None))
    )
    category = draw(st.sampled_from(("claim_payment", "claim_payment", "ach_credit", "lockbox")))
    bank_total = total if exact else max(total + draw(st.sampled_from(BANK_DIFFERENCES)), n_deps)
    rems = [
        remittance("r", c, day=day, trace=trace, balanced=exact or draw(balance_flags))
        for c in _split(draw, total, n_rems)
    ]
    deps = [
        deposit(
            "d",
            c,
            day=day + timedelta(days=draw(st.integers(0, 2))),
            trace=dep_trace,
            category=category,
        )
        for c in _split(draw, bank_total, n_deps)
    ]
    return [*rems, *deps]


def with_unique_ids(items: list[OpenItem]) -> list[OpenItem]:
    """Fresh unique ids, whose order is unrelated to the items' (ties in dates go by id)."""
    out: list[OpenItem] = []
    for n, item in enumerate(items):
        eid = f"{item.event_id}-{hashlib.blake2b(str(n).encode(), digest_size=4).hexdigest()}"
        out.append(dataclasses.replace(item, event_id=eid, ref={**item.ref, "event_id": eid}))
    return out


match_settings = st.builds(
    MatchSettings,
    window_business_days=st.integers(min_value=1, max_value=5),
    fee_tolerance_abs_cents=st.sampled_from((0, 100, 1_000)),
    fee_tolerance_pct=st.sampled_from((Decimal(0), Decimal("0.01"), Decimal("0.05"))),
    max_subset_size=st.integers(min_value=2, max_value=4),
)


@st.composite
def candidate_sets(draw: st.DrawFn, max_loose: int = 5) -> Candidates:
    """A few payments mixed with loose ERAs and deposits, under varied settings."""
    items = [item for group in draw(st.lists(payments(), max_size=3)) for item in group]
    items += draw(st.lists(st.one_of(remittances(), deposits()), max_size=max_loose))
    return candidates(
        *with_unique_ids(items),
        settings=draw(st.one_of(st.just(MatchSettings()), match_settings)),
    )
