"""`remitflow reconcile` and `remitflow demo` as an operator runs them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from remitflow.cli import main
from tests.conftest import SAMPLES


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def test_samples_reassociate_the_two_synthetic_deposits(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    code = main(
        [
            "reconcile",
            "--remittances",
            str(SAMPLES / "LinuxForHealth-x12__managed-care.835"),
            str(SAMPLES / "LinuxForHealth-x12__medicare-part-a.835"),
            "--bank",
            str(SAMPLES / "synthetic__bai2_hcclaimpmt_ach.bai2"),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    summary = orjson.loads(capsysbinary.readouterr().out)
    matched = read(tmp_path / "matched.jsonl")
    pairs = {
        (m["remittances"][0]["trace_number"], m["bank_transactions"][0]["amount"], m["rule"])
        for m in matched
    }
    assert pairs == {("7170066655", "945.00", "trace_exact"), ("12345", "150000.00", "trace_exact")}
    # The ACH credit without addenda has no ERA here; the check paid is not payer cash.
    (unmatched,) = read(tmp_path / "unmatched.jsonl")
    assert unmatched["kind"] == "bank_transaction" and unmatched["reason"] == "end_of_input"
    assert summary["outcomes"] == {"matched": 4, "not_payer_cash": 1, "unmatched": 1}
    journals = read(tmp_path / "erp_postings.jsonl")
    assert len(journals) == 2
    for name in ("matched", "variance", "unmatched", "erp_postings", "dead_letter"):
        assert (tmp_path / f"{name}.jsonl").exists()


def test_camt053_deposit_reassociates_too(tmp_path: Path) -> None:
    code = main(
        [
            "reconcile",
            "--remittances",
            str(SAMPLES / "LinuxForHealth-x12__managed-care.835"),
            "--bank",
            str(SAMPLES / "synthetic__camt053_us_ach_hcclaimpmt.xml"),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    (case,) = read(tmp_path / "matched.jsonl")
    assert case["bank_transactions"][0]["amount"] == "945.00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--remittances", "/nonexistent.835", "--bank", "/nonexistent.bai2"], "no such file"),
        (["--workers", "0"], "--workers"),
        (["--config", "/nonexistent.toml"], "cannot read configuration"),
    ],
)
def test_unusable_arguments_exit_2_with_one_line(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], args: list[str], message: str
) -> None:
    base = [
        "reconcile",
        "--remittances",
        str(SAMPLES / "LinuxForHealth-x12__managed-care.835"),
        "--bank",
        str(SAMPLES / "synthetic__bai2_hcclaimpmt_ach.bai2"),
        "--out",
        str(tmp_path / "out"),
    ]
    code = main(base + args)
    err = capsysbinary.readouterr().err.decode()
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_bad_matching_setting_is_a_usage_error(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    config = tmp_path / "remitflow.toml"
    config.write_text("[matching]\nwindow_business_days = 'three'\n")
    code = main(
        [
            "reconcile",
            "--remittances",
            str(SAMPLES / "LinuxForHealth-x12__managed-care.835"),
            "--bank",
            str(SAMPLES / "synthetic__bai2_hcclaimpmt_ach.bai2"),
            "--out",
            str(tmp_path / "out"),
            "--config",
            str(config),
        ]
    )
    assert code == 2
    assert "window_business_days must be a number" in capsysbinary.readouterr().err.decode()


def test_bad_data_never_changes_the_exit_status(tmp_path: Path) -> None:
    junk = tmp_path / "junk.835"
    junk.write_bytes(b"ISA*garbage~ST*835*1~BPR*I*x~SE*2*1~")
    code = main(
        [
            "reconcile",
            "--remittances",
            str(junk),
            "--bank",
            str(SAMPLES / "moov-io-bai2__sample4-continuations-newline-delimited.txt"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    assert read(tmp_path / "out" / "dead_letter.jsonl")


def test_demo_runs_the_main_job(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    report = orjson.loads(capsysbinary.readouterr().out)
    assert report["outcomes"]["matched"] > 1000
    assert report["match_rate"] > 0.8
    assert (tmp_path / "output" / "erp_postings.jsonl").stat().st_size > 0
