"""`remitflow generate`: realistic synthetic 835 / BAI2 / ERP-confirmation datasets with truth.

The dataset is planned first (:mod:`sources.synthetic.scenarios`: every item with its intended
outcome), then written one file at a time, and each file is read back with the project's own
parser so that ``truth.jsonl`` carries the event ids the engine will see, not ids recomputed
here. Nothing depends on the clock or on global random state: the same parameters give
byte-identical files.

Output layout::

    OUT/remittances/*.835          X12 835 files, one per payer and production day (+ re-sends)
    OUT/bank/*.bai2                BAI2 previous-day reports, one per bank and day (+ re-reports)
    OUT/postings/erp-confirmations.jsonl
    OUT/refdata.toml               the network as reference data
    OUT/truth.jsonl                one line per input item: intended outcome, rule and case
    OUT/manifest.json              parameters, counts and the files with their layouts
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import orjson

import remitflow
from remitflow.events import BankTransaction, Posting, Remittance
from remitflow.records import DeadLetter
from sources import bai2, postings, x12
from sources.base import ParseContext, Parsed
from sources.synthetic.bai2_writer import write_bai2
from sources.synthetic.network import Network, build_network
from sources.synthetic.scenarios import (
    DEFAULT_ERAS_PER_PAYER_DAY,
    FEE_MAX_RATE,
    MISMATCH_MIN_AMOUNT,
    MISMATCH_MIN_RATE,
    NO_COUNTERPART_MIN_AGE,
    Expect,
    Plan,
    PlannedPosting,
    plan_dataset,
    plan_postings,
)
from sources.synthetic.x12_writer import LAYOUTS, PYX12_EXEMPT_LAYOUTS, write_835

__all__ = ["DEFAULT_START", "GenerationSummary", "generate_dataset"]

# A Monday; the default 20 business days include Juneteenth (a Fed holiday on a Thursday).
DEFAULT_START = date(2025, 6, 2)
POSTINGS_FILE = "postings/erp-confirmations.jsonl"
_GENERATED = (("remittances", "*.835"), ("bank", "*.bai2"), ("postings", "*.jsonl"))


@dataclass(frozen=True, slots=True)
class GenerationSummary:
    """What was generated: printed as JSON by ``remitflow generate``."""

    out: str
    parameters: dict[str, Any]
    files: dict[str, int]
    events: dict[str, int]
    scenarios: dict[str, int]
    outcomes: dict[str, int]
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Ids:
    """Event ids a parser produced for one file, by natural key, and the dead letters."""

    by_key: dict[str, str] = field(default_factory=dict)
    entity: dict[str, str | None] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)


def generate_dataset(
    out: Path,
    *,
    hospitals: int = 4,
    payers: int = 24,
    days: int = 20,
    seed: int = 7,
    eras_per_payer_day: float = DEFAULT_ERAS_PER_PAYER_DAY,
    start: date = DEFAULT_START,
) -> GenerationSummary:
    """Write a dataset under ``out`` and return its summary.

    ``eras_per_payer_day`` is the mean number of ERAs a payer sends each hospital per business
    day (scaled per payer and hospital by their volume); with the defaults that is about 3,400
    remittances and 9,500 events in all. Files of the kinds it writes that a previous run left
    in ``out``'s ``remittances``, ``bank`` and ``postings`` folders are replaced.
    """
    if eras_per_payer_day <= 0:
        raise ValueError("eras_per_payer_day must be positive")
    started = time.perf_counter()
    out = Path(out)
    network = build_network(hospitals, payers, seed)
    plan = plan_dataset(network, start, days, seed, eras_per_payer_day)
    _prepare(out)
    ctx = ParseContext(refdata=network.to_reference_data())
    warnings: list[str] = []
    event_ids: dict[tuple[str, str], str] = {}
    with _TruthWriter(out / "truth.jsonl") as truth:
        _write_remittances(out, plan, ctx, truth, event_ids, warnings)
        _write_bank_files(out, plan, ctx, truth, event_ids, warnings)
        planned_postings = plan_postings(plan, event_ids, seed)
        _write_postings(out, planned_postings, ctx, truth, warnings)
    network.write_refdata_toml(out / "refdata.toml")
    summary = GenerationSummary(
        out=str(out),
        parameters={
            "hospitals": hospitals,
            "payers": payers,
            "days": days,
            "seed": seed,
            "eras_per_payer_day": eras_per_payer_day,
            "start": start.isoformat(),
        },
        files={
            "remittances": len(plan.remittance_files),
            "bank": len(plan.bank_files),
            "postings": 1,
        },
        events=dict(sorted(truth.kinds.items())),
        scenarios=dict(sorted(truth.scenarios.items())),
        outcomes=dict(sorted(truth.outcomes.items())),
        seconds=0.0,
        warnings=_summarise(warnings),
    )
    _write_manifest(out, plan, network, summary, planned_postings)
    return GenerationSummary(
        **{**summary.to_dict(), "seconds": round(time.perf_counter() - started, 3)}
    )


def _prepare(out: Path) -> None:
    """Create the layout; remove files a previous run left there (only the kinds we write)."""
    out.mkdir(parents=True, exist_ok=True)
    for sub, pattern in _GENERATED:
        folder = out / sub
        folder.mkdir(exist_ok=True)
        for old in folder.glob(pattern):
            old.unlink()


class _TruthWriter:
    """``truth.jsonl``, written as items are resolved (never all held), with running counts."""

    def __init__(self, path: Path) -> None:
        self._fh: BinaryIO = path.open("wb")
        self.kinds: Counter[str] = Counter()
        self.scenarios: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()

    def __enter__(self) -> _TruthWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def add(self, kind: str, eid: str | None, file: str, key: str, e: Expect) -> None:
        line = {
            "kind": kind,
            "event_id": eid,
            "file": file,
            "key": key,
            "scenario": e.scenario,
            "outcome": e.outcome,
            "rule": e.rule,
            "case": e.case,
            "entity": e.entity,
        }
        self._fh.write(orjson.dumps(line) + b"\n")
        self.kinds[kind] += 1
        self.scenarios[e.scenario] += 1
        self.outcomes[e.outcome] += 1


def _write_remittances(
    out: Path,
    plan: Plan,
    ctx: ParseContext,
    truth: _TruthWriter,
    event_ids: dict[tuple[str, str], str],
    warnings: list[str],
) -> None:
    # Claim detail is the bulk of the plan: drop it once the last file holding a set is written.
    pending = Counter(id(r.advice) for f in plan.remittance_files for r in f.items)
    for rfile in plan.remittance_files:
        path = out / rfile.name
        with path.open("w", encoding="ascii", newline="") as fh:
            write_835(fh, rfile.interchanges, LAYOUTS[rfile.layout])
        ids = _read_back(path, rfile.name, ctx, x12.parse, _remittance_key)
        for r in rfile.items:
            eid = _resolve(ids, r.key, _is_set(r.key), r.expect, rfile.name, warnings)
            if eid is not None:
                event_ids[(rfile.name, r.key)] = eid
            truth.add("remittance", eid, rfile.name, r.key, r.expect)
            pending[id(r.advice)] -= 1
            if not pending[id(r.advice)]:
                r.advice.claims = []


def _write_bank_files(
    out: Path,
    plan: Plan,
    ctx: ParseContext,
    truth: _TruthWriter,
    event_ids: dict[tuple[str, str], str],
    warnings: list[str],
) -> None:
    for bfile in plan.bank_files:
        path = out / bfile.name
        with path.open("w", encoding="ascii", newline="") as fh:
            write_bai2(fh, bfile.report)
        ids = _read_back(path, bfile.name, ctx, bai2.parse, _bank_key)
        for d in bfile.items:
            eid = _resolve(ids, d.key, _is_record(d.key), d.expect, bfile.name, warnings)
            if eid is not None:
                event_ids[(bfile.name, d.key)] = eid
            truth.add("bank_transaction", eid, bfile.name, d.key, d.expect)


def _write_postings(
    out: Path,
    planned: list[PlannedPosting],
    ctx: ParseContext,
    truth: _TruthWriter,
    warnings: list[str],
) -> None:
    path = out / POSTINGS_FILE
    with path.open("wb") as fh:
        for p in planned:
            fh.write(orjson.dumps(p.record()) + b"\n")
    ids = _read_back(path, POSTINGS_FILE, ctx, postings.parse, _posting_key)
    for p in planned:
        eid = _resolve(ids, p.posting_id, lambda _: False, p.expect, POSTINGS_FILE, warnings)
        truth.add("posting", eid, POSTINGS_FILE, p.posting_id, p.expect)


def _remittance_key(event: Remittance | BankTransaction | Posting) -> str | None:
    return event.envelope.transaction_control_number if isinstance(event, Remittance) else None


def _bank_key(event: Remittance | BankTransaction | Posting) -> str | None:
    return event.bank_reference if isinstance(event, BankTransaction) else None


def _posting_key(event: Remittance | BankTransaction | Posting) -> str | None:
    return event.posting_id if isinstance(event, Posting) else None


def _read_back(
    path: Path,
    name: str,
    ctx: ParseContext,
    parse: Callable[[BinaryIO, ParseContext], Iterator[Parsed]],
    key_of: Callable[[Remittance | BankTransaction | Posting], str | None],
) -> _Ids:
    ids = _Ids()
    with path.open("rb") as fh:
        for item in parse(fh, ctx.named(name)):
            if isinstance(item, DeadLetter):
                ids.dead.append(item)
            elif isinstance(item, Remittance | BankTransaction | Posting):
                key = key_of(item)
                if key is not None:
                    ids.by_key[key] = item.event_id
                    ids.entity[key] = item.entity
    return ids


def _is_set(control: str) -> Callable[[DeadLetter], bool]:
    """Whether a dead letter is the 835 transaction set with this ST control number."""
    record = f"ST {control}"
    return lambda dl: dl.source.record == record


def _is_record(bank_reference: str) -> Callable[[DeadLetter], bool]:
    """Whether a dead letter is the BAI2 16 record with this bank reference."""
    needle = f",{bank_reference},".encode("ascii")
    return lambda dl: needle in dl.original()


def _resolve(
    ids: _Ids,
    key: str,
    is_this: Callable[[DeadLetter], bool],
    expect: Expect,
    file: str,
    warnings: list[str],
) -> str | None:
    """The event id of a planned item, checking that the parser did what the plan intends."""
    eid = ids.by_key.get(key)
    if expect.outcome == "dead_letter":
        found = any(is_this(dl) for dl in ids.dead)
        if eid is not None or not found:
            warnings.append(f"corrupt item was not dead-lettered by the parser ({file})")
        return None
    if eid is None:
        warnings.append(f"parser produced no event for a planned item ({file})")
    elif ids.entity.get(key) not in (None, expect.entity) and not file.startswith("postings/"):
        warnings.append(f"parser resolved another entity than planned ({file})")
    return eid


def _summarise(warnings: list[str]) -> list[str]:
    """One line per kind of warning with how many files/items it concerned."""
    kinds = Counter(w.split(" (")[0] for w in warnings)
    return [f"{kind}: {n}" for kind, n in sorted(kinds.items())]


def _write_manifest(
    out: Path,
    plan: Plan,
    network: Network,
    summary: GenerationSummary,
    planned_postings: list[PlannedPosting],
) -> None:
    files: dict[str, dict[str, Any]] = {}
    for r in plan.remittance_files:
        files[r.name] = {
            "kind": "x12-835",
            "layout": r.layout,
            "pyx12_exempt": r.layout in PYX12_EXEMPT_LAYOUTS
            or any(i.expect.outcome == "dead_letter" for i in r.items),
            "transactions": len(r.items),
            "resend_of": r.resend_of,
        }
    for b in plan.bank_files:
        files[b.name] = {
            "kind": "bai2",
            "bank": b.bank.code,
            "as_of": b.as_of.isoformat(),
            "transactions": len(b.items),
            "rereport_of": b.rereport_of,
        }
    files[POSTINGS_FILE] = {"kind": "postings", "lines": len(planned_postings)}
    manifest = {
        "generator": "remitflow generate",
        "version": remitflow.__version__,
        "parameters": summary.parameters,
        "period": {
            "first_business_day": plan.days[0].isoformat(),
            "last_business_day": plan.days[-1].isoformat(),
            "business_days": len(plan.days),
            "calendar": "US Federal Reserve (holidays XFED)",
        },
        "network": {
            "hospitals": [h.id for h in network.hospitals],
            "payers": [p.id for p in network.payers],
            "banks": [b.code for b in network.banks],
        },
        "thresholds": {
            "vendor_fee_max_rate": str(FEE_MAX_RATE),
            "amount_mismatch_min_rate": str(MISMATCH_MIN_RATE),
            "amount_mismatch_min_amount": str(MISMATCH_MIN_AMOUNT),
            "no_counterpart_min_age_business_days": NO_COUNTERPART_MIN_AGE,
        },
        "counts": {
            "files": summary.files,
            "events": summary.events,
            "scenarios": summary.scenarios,
            "outcomes": summary.outcomes,
        },
        "warnings": summary.warnings,
        "files": files,
    }
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
