"""Shared fixtures: the real sample files and a parse helper."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from remitflow.identity import PhiHasher
from sources.base import ParseContext

SAMPLES = Path(__file__).parent / "fixtures" / "samples"


def sample_path(name: str) -> Path:
    path = SAMPLES / name
    if not path.exists():
        raise FileNotFoundError(f"sample {name} is not in {SAMPLES}")
    return path


def sample_bytes(name: str) -> bytes:
    return sample_path(name).read_bytes()


TEST_PHI_SECRET = "remitflow-tests-phi-secret-0123456789"


@pytest.fixture(autouse=True, scope="session")
def _phi_secret() -> Iterator[None]:
    """Commands that feed a deployment refuse to run without a PHI secret; tests have one,
    module-scoped fixtures included (tests/test_phi_secret.py unsets it to see the refusal)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REMITFLOW_PHI_SECRET", TEST_PHI_SECRET)
        # `remitflow run` serves /metrics: on loopback, on any free port (runs in parallel).
        patch.setenv("REMITFLOW_METRICS_PORT", "0")
        patch.setenv("REMITFLOW_METRICS_ADDR", "127.0.0.1")
        patch.delenv("REMITFLOW_PHI_SECRET_FILE", raising=False)
        yield


@pytest.fixture
def ctx() -> ParseContext:
    return ParseContext(file="test", phi=PhiHasher(b"test-secret"))


# -- an ERP on loopback that records what it is sent (tests of the HTTP adapter) ---------


class RecordingErp:
    """Accepts each idempotency key once (409 afterwards); can fail the first N tries."""

    def __init__(self, fail_first: int = 0, status: int = 503, retry_after: str = "0") -> None:
        self.fail_first = fail_first
        self.status = status
        self.retry_after = retry_after
        self.requests: Counter[str] = Counter()
        self.accepted: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def handle(self, key: str, body: bytes) -> tuple[int, dict[str, str]]:
        with self.lock:
            self.requests[key] += 1
            if self.requests[key] <= self.fail_first:
                return self.status, {"Retry-After": self.retry_after}
            if key in self.accepted:
                return 409, {}
            self.accepted[key] = orjson.loads(body)
            return 201, {}


@pytest.fixture
def erp() -> Iterator[tuple[RecordingErp, str]]:
    state = RecordingErp()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status, headers = state.handle(self.headers["Idempotency-Key"], body)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/journals"
    finally:
        server.shutdown()
        server.server_close()
