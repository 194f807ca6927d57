"""`remitflow parse` and format detection, as an operator uses them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from remitflow.cli import main
from remitflow.settings import Settings
from sources.detect import detect_format, expand_paths
from tests.conftest import SAMPLES, sample_bytes


def run_cli(
    args: list[str], capsysbinary: pytest.CaptureFixture[bytes]
) -> tuple[int, list[Any], str]:
    code = main(args)
    captured = capsysbinary.readouterr()
    lines = [orjson.loads(line) for line in captured.out.splitlines() if line.strip()]
    return code, lines, captured.err.decode()


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("LinuxForHealth-x12__managed-care.835", "x12"),
        ("edi-835-parser__blue_cross_nc_sample.txt", "x12"),
        ("TigerShark__835-example-2.txt", "x12"),
        ("bai2__svb_us_example.bai2", "bai2"),
        ("moov-io-bai2__sample3.txt", "bai2"),
        ("camt053__statement_ac04.xml", "camt053"),
        ("synthetic__camt053_us_ach_hcclaimpmt.xml", "camt053"),
    ],
)
def test_formats_are_detected_from_content(name: str, fmt: str) -> None:
    assert detect_format(sample_bytes(name)) == fmt


def test_unknown_content_is_not_guessed() -> None:
    assert detect_format(b"%PDF-1.7 ...") is None
    assert detect_format(b"<html><body>hi</body></html>") is None


def test_parse_prints_events_issues_and_dead_letters(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    code, lines, _ = run_cli(
        ["parse", str(SAMPLES / "LinuxForHealth-x12__managed-care.835")], capsysbinary
    )
    assert code == 0
    kinds = [line.get("kind") or line.get("record") for line in lines]
    assert kinds == ["parse_issue", "remittance"]
    rem = lines[1]
    assert rem["amount"] == "945.00"  # money as a decimal string
    assert rem["trace_number"] == "7170066655"
    assert rem["source"]["file"] == "LinuxForHealth-x12__managed-care.835"


def test_parse_of_a_folder_reads_every_file_and_dead_letters_the_unknown(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    (tmp_path / "a.835").write_bytes(sample_bytes("LinuxForHealth-x12__medicare-part-a.835"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_bytes(b"just some notes\n")
    (tmp_path / ".hidden").write_bytes(b"ignored")
    code, lines, _ = run_cli(["parse", str(tmp_path)], capsysbinary)
    assert code == 0
    assert [line.get("kind") or line.get("record") for line in lines] == [
        "remittance",
        "dead_letter",
    ]
    assert "unrecognised format" in lines[1]["reason"]


def test_summary_counts(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    code, lines, _ = run_cli(
        ["parse", "--summary", str(SAMPLES / "TigerShark__835-example-2.txt")], capsysbinary
    )
    assert code == 0
    assert lines == [{"files": 1, "parse_issue": 4, "remittance": 2}]


def test_missing_path_is_a_usage_error(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    code, lines, err = run_cli(["parse", "/nonexistent/file.835"], capsysbinary)
    assert code == 2 and lines == []
    assert "no such file or folder" in err and err[-1] == "\n" and err.count("\n") == 1


def test_unreadable_config_is_a_usage_error(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    bad = tmp_path / "refdata.toml"
    bad.write_text("entities = [ not toml")
    code, _, err = run_cli(
        ["parse", "--config", str(bad), str(SAMPLES / "LinuxForHealth-x12__managed-care.835")],
        capsysbinary,
    )
    assert code == 2
    assert "not valid TOML" in err


def test_expand_paths_is_sorted_and_skips_hidden(tmp_path: Path) -> None:
    for name in ("b.835", "a.835", ".x.835"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in expand_paths([tmp_path])] == ["a.835", "b.835"]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("REMITFLOW_TOPIC_PARTITIONS", "four", "is not a whole number"),
        ("REMITFLOW_METRICS_PORT", "70000", "must be between 0 and 65535"),
        ("REMITFLOW_ERP_BUDGET_S", "nan", "must be between"),
    ],
)
def test_an_unusable_environment_variable_is_a_usage_error_naming_it(
    variable: str,
    value: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["run", "--until-end"]) == 2
    err = capsysbinary.readouterr().err.decode()
    assert variable in err and message in err


def test_settings_read_the_erp_retry_budget() -> None:
    settings = Settings.from_env(
        {"REMITFLOW_ERP_MAX_ATTEMPTS": "3", "REMITFLOW_ERP_BUDGET_S": "2.5"}
    )
    assert (settings.erp_max_attempts, settings.erp_budget_s) == (3, 2.5)
    assert Settings.from_env({}).erp_budget_s == Settings().erp_budget_s
