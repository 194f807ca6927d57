"""Embedded mode: the reconciliation dataflow over files, to end of input, no servers."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from bytewax.dataflow import Dataflow

from dataflows.reconcile import FlowConfig, build_flow
from dataflows.runner import execute
from remitflow.identity import PhiHasher
from sinks.jsonl import STEMS, JsonlDirectorySink
from sources.base import ParseContext
from sources.files import FilesSource

OUTPUT_FILES = ("matched", "variance", "unmatched", "erp_postings", "dead_letter")


@dataclass
class Summary:
    """What a run did: counts per outcome and rule, match rate, throughput."""

    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)
    records: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0
    parse_issues: int = 0
    elapsed_s: float = 0.0

    @property
    def match_rate(self) -> float | None:
        """Share of payer cash and cash-bearing ERAs that ended matched."""
        cash = sum(
            n
            for (kind, outcome), n in self.by_kind.items()
            if kind in ("remittance", "bank_transaction")
            and outcome in ("matched", "variance", "unmatched")
        )
        matched = sum(
            n
            for (kind, outcome), n in self.by_kind.items()
            if kind in ("remittance", "bank_transaction") and outcome == "matched"
        )
        return matched / cash if cash else None

    def as_dict(self) -> dict[str, Any]:
        events = self.inputs + self.dead_letters
        return {
            "inputs": self.inputs,
            "dead_letters": self.dead_letters,
            "parse_issues": self.parse_issues,
            "outcomes": dict(sorted(self.outcomes.items())),
            "rules": dict(sorted(self.rules.items())),
            "records": dict(sorted(self.records.items())),
            "match_rate": round(self.match_rate, 4) if self.match_rate is not None else None,
            "elapsed_s": round(self.elapsed_s, 3),
            "items_per_s": round(events / self.elapsed_s) if self.elapsed_s else None,
        }


def _flow(paths: Sequence[Path], out: Path, config: FlowConfig, secret: bytes | None) -> Dataflow:
    ctx = ParseContext(refdata=config.refdata, phi=PhiHasher(secret))
    return build_flow("reconcile", FilesSource(paths, ctx), JsonlDirectorySink(out), config)


def reconcile_files(
    paths: Sequence[Path],
    out: Path,
    config: FlowConfig,
    *,
    workers: int = 1,
    phi_secret: bytes | None = None,
    recovery_dir: Path | None = None,
    epoch_interval: timedelta | None = None,
) -> Summary:
    """Run the dataflow over ``paths`` and write ``out/*.jsonl``; return the summary.

    With ``recovery_dir``, Bytewax snapshots every key's state each epoch (the folder is
    initialised when empty), as the continuous mode does.
    """
    out.mkdir(parents=True, exist_ok=True)
    for stem in STEMS:  # only our own files: never anything else the folder holds
        (out / f"{stem}.jsonl").unlink(missing_ok=True)
    started = time.perf_counter()
    execute(
        _flow,
        (paths, out, config, phi_secret),
        workers=workers,
        recovery_dir=recovery_dir,
        epoch_interval=epoch_interval,
    )
    elapsed = time.perf_counter() - started
    for stem in OUTPUT_FILES:
        (out / f"{stem}.jsonl").touch()
    return summarize(out, elapsed)


def summarize(out: Path, elapsed: float = 0.0) -> Summary:
    s = Summary(elapsed_s=elapsed)
    audit = out / "audit.jsonl"
    if audit.exists():
        with audit.open("rb") as fh:
            for line in fh:
                row = orjson.loads(line)
                s.inputs += 1
                s.outcomes[row["outcome"]] += 1
                s.by_kind[(row["kind"], row["outcome"])] += 1
                if row["rule"]:
                    s.rules[f"{row['outcome']}/{row['rule']}"] += 1
    for stem in (*OUTPUT_FILES, "parse_issues"):
        path = out / f"{stem}.jsonl"
        if path.exists():
            with path.open("rb") as fh:
                for line in fh:
                    s.records[orjson.loads(line)["record"]] += 1
    s.dead_letters = s.records.get("dead_letter", 0)
    s.parse_issues = s.records.pop("parse_issue", 0)
    return s
