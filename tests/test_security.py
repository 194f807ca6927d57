"""Security settings pass through to the clients, and secrets are never printed.

Kafka SASL/mTLS options and Redis AUTH/TLS come from the environment or from files (mounted
secrets); a real password-protected redis-server on loopback checks AUTH end to end.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from remitflow.cli import main
from remitflow.refdata import example_reference_data_path
from remitflow.settings import Settings
from remitflow.stores import kafka_config, safe_url
from tests.conftest import SAMPLES
from tests.test_services_smoke import _servers_wanted

KAFKA_PASSWORD = "kafka-sasl-password-do-not-print"
REDIS_PASSWORD = "redis-auth-password-do-not-print"
CONFIG = str(example_reference_data_path())


def test_kafka_security_options_come_from_the_environment_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "sasl-password"
    secret.write_text(KAFKA_PASSWORD + "\n")
    monkeypatch.setenv("REMITFLOW_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("REMITFLOW_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("REMITFLOW_KAFKA_SASL_USERNAME", "remitflow")
    monkeypatch.setenv("REMITFLOW_KAFKA_SASL_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("REMITFLOW_KAFKA_SSL_CA_LOCATION", "/etc/ssl/certs/ca.pem")
    config = kafka_config("broker:9093", **{"group.id": "g"})
    assert config == {
        "bootstrap.servers": "broker:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "remitflow",
        "sasl.password": KAFKA_PASSWORD,
        "ssl.ca.location": "/etc/ssl/certs/ca.pem",
        "group.id": "g",
    }


def test_settings_never_show_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("token-one,token-two")
    settings = Settings.from_env(
        {"REMITFLOW_ERP_TOKEN": "erp-bearer-secret", "REMITFLOW_API_TOKENS_FILE": str(tokens)}
    )
    assert settings.api_tokens == ("token-one", "token-two")
    assert settings.erp_token == "erp-bearer-secret"
    shown = repr(settings)
    assert "erp-bearer-secret" not in shown and "token-one" not in shown


def test_redis_urls_are_shown_without_their_password() -> None:
    assert safe_url("rediss://app:s3cret@redis.internal:6380/2") == (
        "rediss://app:***@redis.internal:6380/2"
    )
    assert safe_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.mark.services
@pytest.mark.skipif(not _servers_wanted(), reason="local servers not running")
def test_a_kafka_security_mismatch_is_an_error_that_does_not_print_the_password(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """The local broker speaks PLAINTEXT: a client configured for SASL_SSL cannot talk to it."""
    monkeypatch.setenv("REMITFLOW_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("REMITFLOW_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("REMITFLOW_KAFKA_SASL_USERNAME", "remitflow")
    monkeypatch.setenv("REMITFLOW_KAFKA_SASL_PASSWORD", KAFKA_PASSWORD)
    era = str(SAMPLES / "LinuxForHealth-x12__managed-care.835")
    assert main(["ingest", "--kind", "remittance", era, "--config", CONFIG]) == 1
    captured = capsysbinary.readouterr()
    assert b"does not answer" in captured.err
    assert KAFKA_PASSWORD.encode() not in captured.err + captured.out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def protected_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server that demands a password, on loopback, for this test only."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            REDIS_PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(url, password=REDIS_PASSWORD).ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_auth_from_a_password_file_and_a_refusal_that_prints_no_password(
    protected_redis: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(REDIS_PASSWORD)
    monkeypatch.setenv("REMITFLOW_REDIS_URL", protected_redis)
    monkeypatch.setenv("REMITFLOW_REDIS_PASSWORD_FILE", str(secret))
    assert main(["refdata", "load", CONFIG]) == 0
    assert main(["refdata", "show"]) == 0
    capsysbinary.readouterr()

    monkeypatch.delenv("REMITFLOW_REDIS_PASSWORD_FILE")
    no_password = main(["refdata", "show"])
    wrong = protected_redis.replace("redis://", "redis://:not-the-password@")
    monkeypatch.setenv("REMITFLOW_REDIS_URL", wrong)
    assert (no_password, main(["refdata", "show"])) == (1, 1)
    captured = capsysbinary.readouterr()
    printed = captured.err + captured.out
    assert b"not-the-password" not in printed and REDIS_PASSWORD.encode() not in printed
    assert b":***@127.0.0.1" in printed
