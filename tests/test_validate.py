"""TR3 validation through pyx12 (optional extra)."""

from __future__ import annotations

import orjson
import pytest

from remitflow.cli import main
from tests.conftest import SAMPLES

pytest.importorskip("pyx12")
pytestmark = pytest.mark.validate

from sources.x12.validate import validate_835  # noqa: E402


def test_conforming_sample_is_valid() -> None:
    report = validate_835(SAMPLES / "edi-835-parser__emedny_sample.txt")
    assert report.valid and report.errors == []


def test_invalid_date_is_reported() -> None:
    report = validate_835(SAMPLES / "LinuxForHealth-x12__managed-care.835")
    assert not report.valid
    assert any("BPR16" in e and "invalid date" in e for e in report.errors)


def test_cli_exit_status_follows_validity(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["validate", str(SAMPLES / "pyx12__835_mult_loops.txt")]) == 0
    assert main(["validate", str(SAMPLES / "LinuxForHealth-x12__managed-care.835")]) == 1
    lines = [orjson.loads(x) for x in capsysbinary.readouterr().out.splitlines()]
    assert [line["valid"] for line in lines] == [True, False]
