"""The HMAC secret for patient control numbers: required by every command that feeds a
deployment, read from the environment or a file, never printed; only the demo runs without."""

from __future__ import annotations

from pathlib import Path

import pytest

from remitflow.cli import main
from remitflow.identity import PhiHasher, PhiSecretMissing, phi_secret
from tests.conftest import SAMPLES

ERA = str(SAMPLES / "LinuxForHealth-x12__managed-care.835")


@pytest.fixture
def no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REMITFLOW_PHI_SECRET", raising=False)
    monkeypatch.delenv("REMITFLOW_PHI_SECRET_FILE", raising=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["parse", ERA],
        ["ingest", "--kind", "remittance", ERA, "--config", "remitflow/data/refdata.example.toml"],
        ["reconcile", "--remittances", ERA, "--bank", ERA, "--out", "{out}"],
    ],
    ids=["parse", "ingest", "reconcile"],
)
def test_production_commands_refuse_to_start_without_a_secret(
    argv: list[str],
    no_secret: None,
    tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    argv = [a.replace("{out}", str(tmp_path / "out")) for a in argv]
    assert main(argv) == 2
    captured = capsysbinary.readouterr()
    assert b"REMITFLOW_PHI_SECRET" in captured.err and not captured.out


def test_the_secret_comes_from_a_file_and_changes_every_hash(
    no_secret: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "phi-secret"
    secret.write_bytes(b"a-random-secret-from-a-mounted-file\n")
    monkeypatch.setenv("REMITFLOW_PHI_SECRET_FILE", str(secret))
    assert phi_secret(required=True) == b"a-random-secret-from-a-mounted-file"
    assert PhiHasher(phi_secret())("PCN123") != PhiHasher(b"another-secret-of-16+")("PCN123")


def test_a_short_or_unreadable_secret_is_refused_without_echoing_it(
    no_secret: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMITFLOW_PHI_SECRET", "hunter2")
    with pytest.raises(PhiSecretMissing) as short:
        phi_secret(required=True)
    assert "hunter2" not in str(short.value)
    monkeypatch.delenv("REMITFLOW_PHI_SECRET")
    monkeypatch.setenv("REMITFLOW_PHI_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(PhiSecretMissing, match="cannot read"):
        phi_secret(required=True)


def test_the_demo_alone_runs_with_the_development_secret(no_secret: None) -> None:
    assert phi_secret(required=False).startswith(b"remitflow-development-secret")
    with pytest.raises(PhiSecretMissing):
        phi_secret(required=True)
