"""End to end on generated data: accuracy against truth.jsonl, conservation, journals, order.

The generator plans every item with its intended case and rule; these tests run the real
embedded dataflow (`reconcile_files`) and compare what it decided.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataflows.embedded import Summary, reconcile_files
from dataflows.reconcile import FlowConfig
from remitflow.config import load_config
from sources.detect import expand_paths
from sources.synthetic import generate_dataset

SEEDS = (7, 11, 23)


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


@cache
def dataset(seed: int, root: Path) -> Path:
    out = root / f"data-{seed}"
    generate_dataset(out, hospitals=3, payers=10, days=12, seed=seed)
    return out


def inputs(data: Path) -> list[Path]:
    return expand_paths([data / "remittances", data / "bank", data / "postings"])


def run(data: Path, out: Path, paths: list[Path] | None = None, workers: int = 1) -> Summary:
    refdata, settings = load_config(data / "refdata.toml")
    return reconcile_files(
        paths if paths is not None else inputs(data),
        out,
        FlowConfig(refdata=refdata, settings=settings),
        workers=workers,
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("accuracy")


def case_pairs(records: list[dict[str, Any]]) -> set[tuple[str, str]]:
    pairs = set()
    for r in records:
        for rem in r.get("remittances", []):
            for dep in r.get("bank_transactions", []):
                pairs.add((rem["event_id"], dep["event_id"]))
    return pairs


def truth_pairs(truth: list[dict[str, Any]]) -> set[tuple[str, str]]:
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in truth:
        if t["outcome"] in ("matched", "variance") and t["event_id"]:
            by_case[t["case"]].append(t)
    pairs: set[tuple[str, str]] = set()
    for items in by_case.values():
        rems = [i["event_id"] for i in items if i["kind"] == "remittance"]
        deps = [i["event_id"] for i in items if i["kind"] == "bank_transaction"]
        pairs.update((r, d) for r in rems for d in deps)
    return pairs


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_conservation_and_journals(seed: int, root: Path) -> None:
    data = dataset(seed, root)
    out = root / f"out-{seed}"
    summary = run(data, out)
    truth = read(data / "truth.jsonl")
    decided = read(out / "matched.jsonl") + read(out / "variance.jsonl")
    cases = [r for r in decided if r["record"] in ("matched", "variance")]

    # Pair precision and recall against the intended cases.
    predicted, expected = case_pairs(cases), truth_pairs(truth)
    hits = len(predicted & expected)
    precision = hits / len(predicted)
    recall = hits / len(expected)
    assert precision >= 0.999, (precision, sorted(predicted - expected)[:5])
    assert recall >= 0.99, (recall, sorted(expected - predicted)[:5])

    # Never guess: no item of an ambiguous group ends up in a matched or variance case.
    ambiguous = {t["event_id"] for t in truth if t["rule"] == "ambiguous"}
    in_cases = {i["event_id"] for r in cases for i in r["remittances"] + r["bank_transactions"]}
    assert ambiguous and not (ambiguous & in_cases)

    # Conservation: every input event in exactly one terminal outcome. A re-sent item has the
    # same id as its original (that is how it is recognised), so ids are counted, not set.
    audit = read(out / "audit.jsonl")
    assert Counter(a["event_id"] for a in audit) == Counter(
        t["event_id"] for t in truth if t["event_id"]
    )
    assert sum(1 for a in audit if a["outcome"] != "duplicate") == len(
        {a["event_id"] for a in audit}
    )
    dead_truth = sum(1 for t in truth if t["outcome"] == "dead_letter")
    assert summary.dead_letters == dead_truth
    assert summary.inputs + summary.dead_letters == len(truth)

    # Outcomes (not only pairs) agree with the plan.
    planned = Counter((t["event_id"], t["outcome"], t["rule"]) for t in truth if t["event_id"])
    got = Counter((a["event_id"], a["outcome"], a["rule"]) for a in audit)
    agree = sum((planned & got).values())
    assert agree / len(audit) >= 0.99, sorted((got - planned).items())[:5]

    # One balanced journal per case, each idempotency key once.
    journals = read(out / "erp_postings.jsonl")
    assert journals
    keys = Counter(j["idempotency_key"] for j in journals)
    assert max(keys.values()) == 1
    for j in journals:
        debit = sum(Decimal(line["debit"]) for line in j["lines"])
        credit = sum(Decimal(line["credit"]) for line in j["lines"])
        assert debit == credit and debit > 0


def outcome_view(out: Path) -> set[tuple[str, str, str, str]]:
    view = set()
    for stem in ("matched", "variance", "unmatched", "erp_postings"):
        for r in read(out / f"{stem}.jsonl"):
            view.add((stem, r["record"], str(r.get("case_id")), str(r.get("rule"))))
    return view


def test_outcomes_do_not_depend_on_file_order(root: Path) -> None:
    data = dataset(SEEDS[0], root)
    baseline = root / "order-baseline"
    run(data, baseline)
    shuffled = inputs(data)
    random.Random(5).shuffle(shuffled)
    reversed_ = list(reversed(inputs(data)))
    for name, paths in (("shuffled", shuffled), ("reversed", reversed_)):
        out = root / f"order-{name}"
        run(data, out, paths)
        assert outcome_view(out) == outcome_view(baseline), name


def test_two_worker_processes_decide_the_same(root: Path) -> None:
    data = dataset(SEEDS[1], root)
    one, two = root / "workers-1", root / "workers-2"
    run(data, one)
    run(data, two, workers=2)
    assert outcome_view(two) == outcome_view(one)


def test_replayed_files_change_nothing(root: Path) -> None:
    """The same files twice (a re-sent batch): every second copy is a duplicate, no new case."""
    data = dataset(SEEDS[2], root)
    once, twice = root / "replay-once", root / "replay-twice"
    run(data, once)
    copy = root / "replay-copy"
    copy.mkdir(exist_ok=True)
    paths = inputs(data)
    copies = []
    for p in paths:
        target = copy / f"again-{p.name}"
        target.write_bytes(p.read_bytes())
        copies.append(target)
    run(data, twice, paths + copies)
    assert outcome_view(twice) == outcome_view(once)
    audit = read(twice / "audit.jsonl")
    extra = Counter(a["outcome"] for a in audit) - Counter(
        a["outcome"] for a in read(once / "audit.jsonl")
    )
    assert set(extra) == {"duplicate"}


def test_recovery_snapshots_leave_outcomes_unchanged(root: Path) -> None:
    """Every key's state is snapshotted (pickled) at every epoch; the outcomes are the same."""
    from datetime import timedelta

    data = dataset(SEEDS[0], root)
    plain, recovered = root / "recovery-off", root / "recovery-on"
    run(data, plain)
    refdata, settings = load_config(data / "refdata.toml")
    reconcile_files(
        inputs(data),
        recovered,
        FlowConfig(refdata=refdata, settings=settings),
        recovery_dir=root / "recovery-db",
        epoch_interval=timedelta(milliseconds=5),
    )
    assert outcome_view(recovered) == outcome_view(plain)
    assert any((root / "recovery-db").glob("*.sqlite3"))
