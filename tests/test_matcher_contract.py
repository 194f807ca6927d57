"""The contract every matcher of the cascade must honour (see :mod:`matchers.base`).

One suite, run against every matcher in :data:`matchers.cascade.ALL` and against the cascade
itself (``run`` over ``ALL``, which must keep the same promises across rules), in
the manner of river's ``utils/estimator_checks.py``: ``yield_checks`` lists the checks, and the
test is parametrised over (matcher, check). A new matcher added to ``ALL`` is checked without
touching this file.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from matchers import cascade
from matchers.base import Candidates, Decision, Matcher, MatchSettings
from matchers.variance import AMOUNT_MISMATCH, FEE, is_fee
from tests.factories import candidate_sets, ids, match_settings

Check = Callable[[Matcher, Candidates, st.DataObject], None]
VARIANCE_RULES = frozenset({FEE, AMOUNT_MISMATCH})


@dataclass
class Cascade:
    """``cascade.run`` over some matchers, seen as one matcher."""

    rule: str
    matchers: tuple[Matcher, ...]

    def decide(self, candidates: Candidates) -> Sequence[Decision]:
        return cascade.run(self.matchers, candidates)


SUBJECTS: list[Matcher] = [*cascade.ALL, Cascade("cascade", cascade.ALL)]


def _name(matcher: Matcher) -> str:
    return matcher.rule if isinstance(matcher, Cascade) else type(matcher).__name__


def _signature(decisions: Sequence[Decision]) -> set[tuple[str, str, frozenset[str]]]:
    return {(d.outcome, d.rule, ids(d.items)) for d in decisions}


# -- the checks ----------------------------------------------------------------------------------


def check_does_not_mutate(matcher: Matcher, cands: Candidates, data: st.DataObject) -> None:
    """(1) Candidates and their items are the same after deciding (deep compare)."""
    before = copy.deepcopy(cands)
    matcher.decide(cands)
    assert cands == before  # field by field, down to each item's ``ref`` dict


def check_order_independent(matcher: Matcher, cands: Candidates, data: st.DataObject) -> None:
    """(2) The same candidates in any order give the same decisions."""
    shuffled = Candidates(
        tuple(data.draw(st.permutations(cands.remittances), label="remittances")),
        tuple(data.draw(st.permutations(cands.deposits), label="deposits")),
        cands.settings,
    )
    assert _signature(matcher.decide(shuffled)) == _signature(matcher.decide(cands))


def check_items_from_candidates_and_disjoint(
    matcher: Matcher, cands: Candidates, data: st.DataObject
) -> None:
    """(3) Every decided item is a candidate of its side; no item is in two decisions."""
    rem_ids, dep_ids = ids(cands.remittances), ids(cands.deposits)
    seen: set[str] = set()
    for d in matcher.decide(cands):
        assert ids(d.remittances) <= rem_ids
        assert ids(d.deposits) <= dep_ids
        assert all(r.is_remittance for r in d.remittances)
        assert not any(x.is_remittance for x in d.deposits)
        assert len(ids(d.items)) == len(d.items), f"{d.rule} repeats an item"
        assert not seen & ids(d.items), f"{d.rule} decides an item twice"
        seen |= ids(d.items)


def check_amounts_add_up(matcher: Matcher, cands: Candidates, data: st.DataObject) -> None:
    """(4) Cash is matched only when the sides add up, except in a fee/amount variance."""
    for d in matcher.decide(cands):
        if d.outcome == "unmatched":
            continue
        assert d.remittances, f"{d.rule}: a case needs a remittance"
        bank = sum(x.cents for x in d.deposits)
        remitted = sum(x.cents for x in d.remittances)
        if not d.deposits:
            assert d.rule == "non_payment"
            assert not any(r.expects_cash for r in d.remittances)
            continue
        assert all(r.expects_cash for r in d.remittances), "zero-pay ERA matched to cash"
        if d.rule in VARIANCE_RULES:
            assert d.outcome == "variance"
            assert d.variance_cents == bank - remitted != 0
            assert (d.rule == FEE) == is_fee(remitted, bank, cands.settings)
        else:
            assert bank == remitted, f"{d.rule} matched {remitted} to {bank}"


def check_rule_and_confidence(matcher: Matcher, cands: Candidates, data: st.DataObject) -> None:
    """(6) Every decision names its rule; confidence is None exactly when unmatched."""
    for d in matcher.decide(cands):
        assert isinstance(d.rule, str) and d.rule
        if d.outcome == "unmatched":
            assert d.confidence is None
            assert d.reason, "an unmatched decision says why"
        else:
            assert d.confidence is not None and 0 < d.confidence <= 1
        if d.outcome == "variance":
            assert d.reason and d.variance_cents is not None


def yield_checks(matcher: Matcher) -> Iterator[Check]:
    """The checks a matcher must pass (all of them, for now, for every matcher)."""
    yield check_does_not_mutate
    yield check_order_independent
    yield check_items_from_candidates_and_disjoint
    yield check_amounts_add_up
    yield check_rule_and_confidence


@pytest.mark.parametrize(
    ("matcher", "check"),
    [
        pytest.param(m, c, id=f"{_name(m)}-{c.__name__.removeprefix('check_')}")
        for m in SUBJECTS
        for c in yield_checks(m)
    ],
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cands=candidate_sets(), data=st.data())
def test_matcher_contract(
    matcher: Matcher, check: Check, cands: Candidates, data: st.DataObject
) -> None:
    check(matcher, cands, data)


@pytest.mark.parametrize("matcher", SUBJECTS, ids=_name)
@settings(max_examples=10, deadline=None)
@given(s=match_settings)
def test_no_decision_from_empty_candidates(matcher: Matcher, s: MatchSettings) -> None:
    """(5) Nothing in, nothing out."""
    assert list(matcher.decide(Candidates((), (), s))) == []


@pytest.mark.parametrize("matcher", cascade.ALL, ids=_name)
def test_candidate_sets_make_every_matcher_decide(matcher: Matcher) -> None:
    """The suite is not vacuous: the generated candidate sets trigger every rule."""
    found = find(
        candidate_sets(),
        lambda c: bool(matcher.decide(c)),
        settings=settings(max_examples=2_000, phases=[Phase.generate], database=None),
    )
    assert matcher.decide(found)
