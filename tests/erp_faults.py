"""A fault-injecting ERP on loopback: it fails the way real ERPs and networks do.

Requests, in the order they arrive, follow a script of modes; past its end every request gets
``after`` (``"ok"`` unless told otherwise). The modes:

- ``ok``: post the journal (``201``) or, for a key already posted, answer ``409`` (or replay
  ``201`` with ``Idempotent-Replayed: true`` when ``replay_status`` is 201);
- ``500``, ``503``: a server error, nothing posted; ``429``: too many requests, with
  ``Retry-After: <retry_after>`` (seconds or an HTTP date), nothing posted; ``400``: a refusal;
- ``slow``: post the journal, then answer only after ``slow_s`` (longer than the client's
  timeout, so the client never sees the answer: the posting counts, the acknowledgement is lost);
- ``drop``: close the connection without an answer, nothing posted;
- ``accept-then-drop``: post the journal, then reset the connection (RST) instead of answering.

Like a real idempotent ERP, a key is posted at most once whatever arrives; what the server
records lets a test count what would go wrong: keys never posted (lost), keys posted that should
not exist or journals whose events another posted journal already carries (duplicated), and a
key re-sent with a different body (a key reused for another journal).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

FAULTS = ("500", "503", "429", "400", "slow", "drop", "accept-then-drop")
MODES = ("ok", *FAULTS)


@dataclass
class FaultyErp:
    script: Sequence[str] = ()
    after: str = "ok"
    retry_after: str = "0"
    slow_s: float = 0.6
    replay_status: int = 409  # how a key already posted is answered: 409, or 201 replayed
    requests: int = 0
    attempts: Counter[str] = field(default_factory=Counter)  # per idempotency key
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> first body
    unacknowledged: set[str] = field(default_factory=set)  # posted, answer deliberately lost
    injected: Counter[str] = field(default_factory=Counter)  # faults, per mode
    mismatched: list[str] = field(default_factory=list)  # keys re-sent with another body
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        unknown = {*self.script, self.after} - set(MODES)
        if unknown:
            raise ValueError(f"unknown ERP fault modes: {sorted(unknown)}")

    def begin(self, key: str) -> str:
        """Count a request and pick its mode."""
        with self.lock:
            n = self.requests
            self.requests += 1
            self.attempts[key] += 1
            mode = self.script[n] if n < len(self.script) else self.after
            if mode != "ok":
                self.injected[mode] += 1
            return mode

    def take(self, key: str, body: bytes, *, answered: bool) -> bool:
        """Post the journal unless its key is posted already; True when this call posted it."""
        journal = orjson.loads(body)
        with self.lock:
            if key in self.accepted:
                if self.accepted[key] != journal:
                    self.mismatched.append(key)
                return False
            self.accepted[key] = journal
            if not answered:
                self.unacknowledged.add(key)
            return True

    @property
    def faults(self) -> int:
        return sum(self.injected.values())


@dataclass(frozen=True)
class Tally:
    injected: int
    checked: int
    lost: int
    duplicated: int

    def figure(self) -> str:
        return (
            f"ERP faults: {self.injected} injected, {self.checked} journals checked, "
            f"{self.lost} lost, {self.duplicated} duplicated"
        )


def _event_ids(journal: dict[str, Any]) -> list[str]:
    sides = ("remittances", "bank_transactions")
    return [item["event_id"] for side in sides for item in journal.get(side) or ()]


def tally(erp: FaultyErp, expected_keys: Iterable[str]) -> Tally:
    """Expected keys never posted are lost; a posted key nobody expected, or a journal carrying
    an event that an earlier posted journal carried already (cash posted twice under two keys),
    is a duplicate, and so is a key re-sent with another body."""
    expected = set(expected_keys)
    seen: set[str] = set()
    repeats = set()
    for key, journal in erp.accepted.items():  # in the order the ERP posted them
        events = set(_event_ids(journal))
        if events & seen:
            repeats.add(key)
        seen |= events
    duplicated = len((set(erp.accepted) - expected) | repeats) + len(erp.mismatched)
    return Tally(erp.faults, len(expected), len(expected - set(erp.accepted)), duplicated)


def _handler(erp: FaultyErp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key = self.headers.get("Idempotency-Key") or ""
            mode = erp.begin(key)
            if mode == "drop":  # HTTP/1.0: the server closes the connection after this
                return
            if mode in ("500", "503", "400"):
                self._answer(int(mode))
            elif mode == "429":
                self._answer(429, {"Retry-After": erp.retry_after})
            elif mode == "accept-then-drop":
                erp.take(key, body, answered=False)
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()  # linger 0: the peer gets a reset
            elif mode == "slow":
                posted = erp.take(key, body, answered=False)
                time.sleep(erp.slow_s)
                self._acknowledge(posted)
            else:
                self._acknowledge(erp.take(key, body, answered=True))

        def _acknowledge(self, posted: bool) -> None:
            if posted:
                self._answer(201, body=b'{"status": "posted"}')
            elif erp.replay_status == 409:
                self._answer(409)
            else:
                headers = {"Idempotent-Replayed": "true"}
                self._answer(erp.replay_status, headers, b'{"status": "posted"}')

        def _answer(
            self, status: int, headers: dict[str, str] | None = None, body: bytes = b"{}"
        ) -> None:
            try:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (a slow answer past its timeout)
                pass

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # resets and closed sockets are what this server is for


@contextmanager
def serve(erp: FaultyErp, port: int = 0) -> Iterator[str]:
    """Run the ERP on loopback (``port`` 0: any free one); yields its journals URL."""
    server = _QuietServer(("127.0.0.1", port), _handler(erp))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/journals"
    finally:
        server.shutdown()
        server.server_close()
