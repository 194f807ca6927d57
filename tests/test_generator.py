"""`remitflow generate`: determinism, well-formed files, and a truth that matches the data.

The 835 balancing and BAI2 control totals are recomputed here from the text with a reader
written for this test (not the writer's numbers, not the project parsers), and the truth is
checked against what the project parsers read from the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remitflow.calendar import (
    add_business_days,
    business_days,
    business_days_between,
    is_business_day,
)
from remitflow.events import BankTransaction, Posting, Remittance
from remitflow.identity import idempotency_key, normalize_trace
from remitflow.records import DeadLetter, ParseIssue
from remitflow.refdata import example_reference_data_path, load_reference_data
from sources import bai2, postings, x12
from sources.base import ParseContext
from sources.synthetic import generate_dataset
from sources.synthetic.network import aba_is_valid, build_network, npi_is_valid, refdata_to_toml
from sources.synthetic.scenarios import (
    ALL_SCENARIOS,
    FEE_MAX_RATE,
    MISMATCH_MIN_AMOUNT,
    MISMATCH_MIN_RATE,
)
from sources.synthetic.x12_writer import LAYOUTS

D = Decimal
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("default")
    summary = generate_dataset(out)
    assert summary.warnings == []
    return out


@pytest.fixture(scope="module")
def truth(dataset: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (dataset / "truth.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def manifest(dataset: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((dataset / "manifest.json").read_text())
    return manifest


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(dataset: Path, tmp_path: Path) -> None:
    generate_dataset(tmp_path)
    assert _digest(tmp_path) == _digest(dataset)


def test_another_seed_gives_other_data(dataset: Path, tmp_path: Path) -> None:
    generate_dataset(tmp_path, seed=8)
    ours, theirs = _digest(dataset), _digest(tmp_path)
    common = set(ours) & set(theirs)
    assert ours["truth.jsonl"] != theirs["truth.jsonl"]
    assert ours["refdata.toml"] != theirs["refdata.toml"]
    assert sum(ours[f] == theirs[f] for f in common if f.endswith(".835")) == 0


def test_files_do_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    """No set or hash order leaks into the files (str hashing is salted per process)."""
    script = (
        "import sys; from pathlib import Path; from sources.synthetic import generate_dataset; "
        "generate_dataset(Path(sys.argv[1]), hospitals=2, payers=5, days=6, seed=3)"
    )
    digests = []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env, cwd=ROOT)
        digests.append(_digest(out))
    assert digests[0] == digests[1]


def test_regenerating_into_the_same_directory_replaces_the_old_files(tmp_path: Path) -> None:
    generate_dataset(tmp_path, hospitals=1, payers=3, days=5, seed=1)
    generate_dataset(tmp_path, hospitals=1, payers=3, days=3, seed=2)
    truth_files = {json.loads(line)["file"] for line in (tmp_path / "truth.jsonl").open()}
    on_disk = {
        str(p.relative_to(tmp_path))
        for sub in ("remittances", "bank", "postings")
        for p in (tmp_path / sub).iterdir()
    }
    assert on_disk == truth_files


# --- independent X12 reading ----------------------------------------------------------------


def _segments(text: str) -> tuple[list[list[str]], str]:
    """Segments as element lists; every layout the generator writes ends segments with '~'."""
    body = text.lstrip()
    element = body[3] if body.startswith("ISA") else body[2]
    segs = [s.strip("\r\n") for s in body.split("~")]
    return [s.split(element) for s in segs if s], element


def _transaction_sets(segs: list[list[str]]) -> list[list[list[str]]]:
    sets: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for seg in segs:
        if seg[0] == "ST":
            current = [seg]
        elif current is not None:
            current.append(seg)
            if seg[0] == "SE":
                sets.append(current)
                current = None
    return sets


def _balances(tx: list[list[str]]) -> tuple[bool, bool, bool, bool]:
    """(services, claims, transaction, patient responsibility) balance of one ST..SE."""
    bpr = D(next(s for s in tx if s[0] == "BPR")[2])
    services_ok = claims_ok = patient_ok = True
    paid_total = plb_total = D(0)
    claim: dict[str, Any] | None = None
    service: dict[str, Any] | None = None

    def close() -> None:
        nonlocal services_ok, claims_ok, patient_ok
        if service is not None:
            services_ok &= service["charge"] - service["adj"] == service["paid"]
        if claim is not None:
            claims_ok &= claim["charge"] - claim["adj"] == claim["paid"]
            patient_ok &= claim["patient"] == claim["pr"]

    for seg in tx:
        tag = seg[0]
        if tag == "CLP":
            close()
            service = None
            patient = D(seg[5]) if len(seg) > 5 and seg[5] else D(0)
            claim = {"charge": D(seg[3]), "paid": D(seg[4]), "adj": D(0), "pr": D(0)}
            claim["patient"] = patient
            paid_total += claim["paid"]
        elif tag == "SVC":
            if service is not None:
                services_ok &= service["charge"] - service["adj"] == service["paid"]
            service = {"charge": D(seg[2]), "paid": D(seg[3]), "adj": D(0)}
        elif tag == "CAS":
            assert claim is not None
            for i in range(2, len(seg), 3):
                if seg[i]:
                    amount = D(seg[i + 1])
                    claim["adj"] += amount
                    if seg[1] == "PR":
                        claim["pr"] += amount
                    if service is not None:
                        service["adj"] += amount
        elif tag == "PLB":
            plb_total += sum((D(seg[i]) for i in range(4, len(seg), 2)), D(0))
    close()
    return services_ok, claims_ok, bpr == paid_total - plb_total, patient_ok


def _case_scenarios(truth: list[dict[str, Any]]) -> dict[str, set[str]]:
    scenarios: dict[str, set[str]] = defaultdict(set)
    for t in truth:
        scenarios[t["case"]].add(t["scenario"])
    return scenarios


def test_every_835_balances_at_all_three_levels(dataset: Path, truth: list[dict[str, Any]]) -> None:
    expected = {(t["file"], t["key"]): t for t in truth if t["kind"] == "remittance"}
    case_scenarios = _case_scenarios(truth)
    checked = unbalanced = 0
    for path in sorted((dataset / "remittances").glob("*.835")):
        name = f"remittances/{path.name}"
        segs, _ = _segments(path.read_bytes().decode("ascii"))
        for tx in _transaction_sets(segs):
            t = expected[(name, tx[0][2])]
            if t["outcome"] == "dead_letter":
                continue
            svc, clm, trn, patient = _balances(tx)
            assert patient, (name, tx[0][2])
            if "unbalanced_835" in case_scenarios[t["case"]]:
                assert not trn, (name, tx[0][2])
                unbalanced += 1
            else:
                assert (svc, clm, trn) == (True, True, True), (name, tx[0][2])
                checked += 1
    assert checked > 3000 and unbalanced > 10


def test_835_envelopes_counts_and_fixed_width_isa(dataset: Path, manifest: dict[str, Any]) -> None:
    for name, info in manifest["files"].items():
        if info["kind"] != "x12-835":
            continue
        text = (dataset / name).read_bytes().decode("ascii")
        layout = LAYOUTS[info["layout"]]
        segs, element = _segments(text)
        assert element == layout.element
        if not layout.envelope:
            assert segs[0][0] == "ST"
        else:
            isa = text[: text.index("~") + 1].replace("\n", "")
            assert len(isa) == 106 and isa.endswith(layout.component + "~")
        sets = _transaction_sets(segs)
        assert len(sets) == info["transactions"]
        for tx in sets:
            assert tx[-1] == ["SE", str(len(tx)), tx[0][2]]
        groups = [s for s in segs if s[0] == "GE"]
        interchanges = [s for s in segs if s[0] == "IEA"]
        assert sum(int(ge[1]) for ge in groups) == (len(sets) if layout.envelope else 0)
        assert all(iea[1] == "1" for iea in interchanges)
        if layout.line_break == "\r\n":
            assert text.count("~\r\n") == len(segs)


def test_835_files_hold_no_real_looking_patient_names(dataset: Path) -> None:
    fake = {"TESTPATIENT", "SYNTHETIC", "FAKENAME", "SAMPLEDATA", "DEMOPERSON", "NOTREAL"}
    for path in (dataset / "remittances").glob("*.835"):
        segs, _ = _segments(path.read_bytes().decode("ascii"))
        for seg in segs:
            if seg[0] == "NM1" and seg[1] == "QC":
                assert seg[3] in fake


# --- independent BAI2 reading ---------------------------------------------------------------


def _bai2_totals_ok(text: str) -> tuple[bool, bool]:
    """(control totals right, record counts right), recomputed from the records."""
    totals_ok = counts_ok = True
    records = [line for line in text.splitlines() if line]
    account_total = group_total = file_total = 0
    account_records = group_records = 0
    group_accounts = 0
    for rec in records:
        code = rec[:2]
        fields = rec.rstrip("/").split(",")
        if code == "01":
            file_total = 0
        elif code == "02":
            group_total = group_accounts = 0
            group_records = 1
        elif code == "03":
            account_records = 1
            amounts = fields[4::4]
            account_total = sum(int(a) for a in amounts if a)
            group_accounts += 1
        elif code == "16":
            account_records += 1
            try:
                account_total += int(fields[2])
            except ValueError:
                totals_ok = False  # a garbled amount, on purpose
        elif code == "88":
            account_records += 1
        elif code == "49":
            account_records += 1
            totals_ok &= int(fields[1]) == account_total
            counts_ok &= int(fields[2]) == account_records
            group_total += int(fields[1])
            group_records += account_records
        elif code == "98":
            group_records += 1
            totals_ok &= int(fields[1]) == group_total
            counts_ok &= int(fields[2]) == group_accounts and int(fields[3]) == group_records
            file_total += group_total
        elif code == "99":
            totals_ok &= int(fields[1]) == file_total
            groups = sum(1 for r in records if r.startswith("02,"))
            counts_ok &= int(fields[2]) == groups and int(fields[3]) == len(records)
    return totals_ok, counts_ok


def test_bai2_control_totals_and_record_counts(dataset: Path, truth: list[dict[str, Any]]) -> None:
    corrupt_files = {t["file"] for t in truth if t["outcome"] == "dead_letter"}
    ctx = ParseContext()
    files = sorted((dataset / "bank").glob("*.bai2"))
    assert files
    for path in files:
        name = f"bank/{path.name}"
        totals_ok, counts_ok = _bai2_totals_ok(path.read_bytes().decode("ascii"))
        assert counts_ok, name
        assert totals_ok == (name not in corrupt_files), name
        issues = [i for i in bai2.parse(path.open("rb"), ctx) if isinstance(i, ParseIssue)]
        if name not in corrupt_files:
            assert issues == [], (name, issues[:2])


# --- scenario mix and truth -----------------------------------------------------------------


def test_every_scenario_outcome_rule_and_layout_is_present(
    truth: list[dict[str, Any]], manifest: dict[str, Any]
) -> None:
    scenarios = Counter(t["scenario"] for t in truth)
    for s in (*ALL_SCENARIOS, "erp_posted", "erp_rejected", "erp_orphan", "erp_duplicate"):
        assert scenarios[s] >= 1, s
    assert set(Counter(t["outcome"] for t in truth)) == {
        "matched",
        "variance",
        "unmatched",
        "duplicate",
        "not_payer_cash",
        "dead_letter",
        "posted",
        "posting_rejected",
        "orphan_posting",
        "duplicate_posting",
    }
    rules = {t["rule"] for t in truth}
    assert rules >= {
        "trace_exact",
        "trace_normalized",
        "consolidated",
        "check_number",
        "payer_amount_date",
        "non_payment",
        "fee",
        "amount_mismatch",
        "remit_unbalanced",
        "ambiguous",
        "no_counterpart",
        "end_of_input",
    }
    layouts = {f.get("layout") for f in manifest["files"].values()} - {None}
    assert layouts == set(LAYOUTS)
    # Most cases are clean trace matches, and the defaults stay in the 5–20k events band.
    assert scenarios["clean"] > len(truth) * 0.3
    assert 5_000 <= len(truth) <= 20_000


def _parsed(dataset: Path) -> dict[tuple[str, str], Remittance | BankTransaction | Posting]:
    ctx = ParseContext(refdata=load_reference_data(dataset / "refdata.toml"))
    events: dict[tuple[str, str], Remittance | BankTransaction | Posting] = {}
    for folder, pattern, module in (
        ("remittances", "*.835", x12),
        ("bank", "*.bai2", bai2),
        ("postings", "*.jsonl", postings),
    ):
        for path in sorted((dataset / folder).glob(pattern)):
            name = f"{folder}/{path.name}"
            for item in module.parse(path.open("rb"), ctx.named(name)):
                if isinstance(item, Remittance):
                    key = item.envelope.transaction_control_number
                elif isinstance(item, BankTransaction):
                    key = item.bank_reference
                elif isinstance(item, Posting):
                    key = item.posting_id
                else:
                    if isinstance(item, DeadLetter):
                        events[(name, f"dead@{item.source.offset}")] = item  # type: ignore[assignment]
                    continue
                assert key is not None and (name, key) not in events
                events[(name, key)] = item
    return events


@pytest.fixture(scope="module")
def parsed(dataset: Path) -> dict[tuple[str, str], Remittance | BankTransaction | Posting]:
    return _parsed(dataset)


def test_truth_covers_every_item_exactly_once(
    truth: list[dict[str, Any]],
    parsed: dict[tuple[str, str], Remittance | BankTransaction | Posting],
) -> None:
    keys = [(t["file"], t["key"]) for t in truth]
    assert len(keys) == len(set(keys))
    events = {k: e for k, e in parsed.items() if not k[1].startswith("dead@")}
    dead = [k for k in parsed if k[1].startswith("dead@")]
    corrupt = [t for t in truth if t["outcome"] == "dead_letter"]
    assert len(dead) == len(corrupt) > 0
    assert all(t["event_id"] is None for t in corrupt)
    truth_by_key = {(t["file"], t["key"]): t for t in truth if t["outcome"] != "dead_letter"}
    assert set(truth_by_key) == set(events)
    for key, event in events.items():
        t = truth_by_key[key]
        assert t["event_id"] == event.event_id
        assert t["kind"] == event.kind
        if not isinstance(event, Posting):
            assert t["entity"] == event.entity
    # Re-sent files and re-reported days repeat ids: each repeat is a duplicate of one original.
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in truth:
        if t["event_id"]:
            by_id[t["event_id"]].append(t)
    for group in by_id.values():
        outcomes = sorted(t["outcome"] for t in group)
        assert outcomes.count("duplicate") == len(group) - 1, group
        assert len({t["case"] for t in group}) == 1


def _fed_days_apart(a: date, b: date) -> int:
    return abs(business_days_between(min(a, b), max(a, b)))


def test_truth_agrees_with_what_the_files_say(
    truth: list[dict[str, Any]],
    parsed: dict[tuple[str, str], Remittance | BankTransaction | Posting],
    dataset: Path,
) -> None:
    refdata = load_reference_data(dataset / "refdata.toml")
    names = refdata.payer_names()
    cases: dict[str, list[Any]] = defaultdict(list)
    rules: dict[str, str] = {}
    for t in truth:
        if t["outcome"] in ("matched", "variance", "unmatched"):
            cases[t["case"]].append(parsed[(t["file"], t["key"])])
            rules[t["case"]] = t["rule"]
    seen: Counter[str] = Counter()
    for case, items in cases.items():
        rule = rules[case]
        rems = [e for e in items if isinstance(e, Remittance)]
        deps = [e for e in items if isinstance(e, BankTransaction)]
        seen[rule] += 1
        rem_total = sum((r.amount for r in rems), D(0))
        dep_total = sum((d.amount for d in deps), D(0))
        for r in rems:
            for d in deps:
                assert r.effective_date is not None
                assert _fed_days_apart(r.effective_date, d.as_of_date) <= 3, case
        if rule == "trace_exact":
            (r,), (d,) = rems, deps
            assert (d.trace_number, d.payer_id, d.amount) == (r.trace_number, r.payer_id, r.amount)
        elif rule == "trace_normalized":
            (r,), (d,) = rems, deps
            assert d.trace_number != r.trace_number and d.trace_normalized == r.trace_normalized
            assert d.amount == r.amount
        elif rule == "consolidated":
            assert len(rems) + len(deps) >= 3 and rem_total == dep_total
            assert {d.trace_number for d in deps} == {r.trace_number for r in rems}
        elif rule == "check_number":
            (r,), (d,) = rems, deps
            assert r.method == "CHK" and d.type_code == "115"
            assert d.customer_reference == r.trace_number and d.amount == r.amount
        elif rule == "payer_amount_date":
            (r,), (d,) = rems, deps
            assert d.trace_number is None and d.amount == r.amount
            payer = refdata.payer_for_id(r.payer_id)
            assert payer is not None and d.company_name in names[payer.id]
        elif rule == "non_payment":
            (r,) = rems
            assert (r.handling_code, r.method, r.amount) == ("H", "NON", D(0)) and not deps
        elif rule == "fee":
            (r,), (d,) = rems, deps
            assert d.trace_number == r.trace_number
            assert 0 < r.amount - d.amount <= r.amount * FEE_MAX_RATE
        elif rule == "amount_mismatch":
            (r,), (d,) = rems, deps
            diff = abs(r.amount - d.amount)
            assert diff >= MISMATCH_MIN_AMOUNT and diff >= r.amount * MISMATCH_MIN_RATE
        elif rule == "remit_unbalanced":
            (r,), (d,) = rems, deps
            assert not r.balanced and d.amount == r.amount and d.trace_number == r.trace_number
        elif rule == "ambiguous":
            assert len(rems) == len(deps) == 2
            assert len({e.amount for e in items}) == 1
            assert all(d.trace_number is None for d in deps)
        else:
            assert rule in ("no_counterpart", "end_of_input") and len(items) == 1
    # No accidental second candidate: (payer, amount) is unique outside ambiguous groups.
    owners: dict[tuple[str | None, D], set[str]] = defaultdict(set)
    for case, items in cases.items():
        for e in items:
            if isinstance(e, Remittance) and e.amount:
                owners[(refdata.payer_for_id(e.payer_id).id, e.amount)].add(case)  # type: ignore[union-attr]
    assert all(len(c) == 1 for c in owners.values())
    assert seen["trace_exact"] > 1000


def test_trace_numbers_are_unique_after_normalisation(
    parsed: dict[tuple[str, str], Remittance | BankTransaction | Posting],
) -> None:
    by_trace: dict[str, set[str]] = defaultdict(set)
    for e in parsed.values():
        if isinstance(e, Remittance):
            by_trace[normalize_trace(e.trace_number)].add(e.event_id)
    consolidated = [ids for ids in by_trace.values() if len(ids) > 1]
    assert 0 < len(consolidated) < len(by_trace) / 10


def test_postings_confirm_cases_by_the_dataflow_idempotency_key(
    truth: list[dict[str, Any]],
    parsed: dict[tuple[str, str], Remittance | BankTransaction | Posting],
) -> None:
    case_ids: dict[str, set[str]] = defaultdict(set)
    case_entity: dict[str, str] = {}
    for t in truth:
        if t["kind"] != "posting" and t["event_id"] and t["outcome"] != "duplicate":
            case_ids[t["case"]].add(t["event_id"])
            case_entity[t["case"]] = t["entity"]
    keys = {idempotency_key(case_entity[c], ids): c for c, ids in case_ids.items()}
    postings_by_key: dict[str, list[str]] = defaultdict(list)
    for t in truth:
        if t["kind"] != "posting":
            continue
        posting = parsed[(t["file"], t["key"])]
        assert isinstance(posting, Posting) and posting.posted_at.tzinfo is not None
        postings_by_key[posting.idempotency_key].append(t["outcome"])
        if t["outcome"] == "orphan_posting":
            assert posting.idempotency_key not in keys
        else:
            assert keys[posting.idempotency_key] == t["case"]
            assert posting.status == (
                "rejected" if t["outcome"] == "posting_rejected" else "posted"
            )
    duplicated = [o for o in postings_by_key.values() if "duplicate_posting" in o]
    assert duplicated == [["posted", "duplicate_posting"]]


# --- network and reference data -------------------------------------------------------------


def test_network_identifiers_are_valid() -> None:
    network = build_network(hospitals=30, payers=40, seed=3)
    assert all(npi_is_valid(n) for h in network.hospitals for n in h.npis)
    assert all(aba_is_valid(a.bank.routing) for h in network.hospitals for a in h.accounts)
    assert all(aba_is_valid(p.dfi_routing) for p in network.payers)
    assert len({p.ein for p in network.payers}) == 40
    for p in network.payers:
        assert p.trn03 == "1" + p.ein and len(p.trn03) == 10
        assert all(len(a) <= 16 for a in p.aliases) and len(p.aliases) <= 3
        assert p.company_name in (*p.aliases, p.name)
    assert npi_is_valid("1234567893") and not npi_is_valid("1234567890")
    npis = [n for h in network.hospitals for n in h.npis]
    assert len(set(npis)) == len(npis)
    assert len({h.tin for h in network.hospitals}) == 30
    # A hospital is the same whatever the size of the network around it (but for its banks).
    for small, large in zip(
        build_network(hospitals=3, seed=3).hospitals, network.hospitals[:3], strict=True
    ):
        assert (small.name, small.npis, small.tin) == (large.name, large.npis, large.tin)
        assert [a.number for a in small.accounts] == [a.number for a in large.accounts]


def test_refdata_round_trips(dataset: Path) -> None:
    network = build_network()
    loaded = load_reference_data(dataset / "refdata.toml")
    assert loaded.model_dump() == network.to_reference_data().model_dump()
    assert loaded.entity_for_payee(network.hospitals[0].npi, None) == "H001"
    assert loaded.payer_for_id(network.payers[0].trn03) is not None


def test_shipped_example_refdata_is_the_default_network() -> None:
    shipped = example_reference_data_path().read_text(encoding="utf-8")
    assert shipped == refdata_to_toml(build_network().to_reference_data())


# --- calendar -------------------------------------------------------------------------------


def test_business_days_follow_the_federal_reserve() -> None:
    assert not is_business_day(date(2025, 6, 19))  # Juneteenth
    assert not is_business_day(date(2025, 10, 13))  # Columbus Day: Fed closed, NYSE open
    assert is_business_day(date(2025, 4, 18))  # Good Friday: NYSE closed, Fed open
    assert is_business_day(date(2021, 12, 24))  # Christmas on a Saturday: Fed open Friday
    assert not is_business_day(date(2022, 12, 26))  # Christmas on a Sunday: closed Monday
    assert add_business_days(date(2025, 6, 18), 1) == date(2025, 6, 20)
    assert add_business_days(date(2025, 6, 20), -1) == date(2025, 6, 18)
    assert add_business_days(date(2025, 6, 21), 0) == date(2025, 6, 23)
    assert business_days(date(2025, 6, 16), 5)[-1] == date(2025, 6, 23)


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)), st.integers(-30, 30))
def test_business_day_arithmetic_is_consistent(day: date, n: int) -> None:
    moved = add_business_days(day, n)
    assert is_business_day(moved)
    if n:
        assert business_days_between(day, moved) == n


# --- scale ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_generation_scales_past_100k_events(tmp_path: Path) -> None:
    summary = generate_dataset(tmp_path, hospitals=40, days=22)
    assert summary.total_events >= 100_000
    assert summary.warnings == []
    assert summary.seconds < 60
