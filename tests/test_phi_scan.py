"""No patient data leaves the parsers, whatever path the data takes (DESIGN.md: PHI).

The generated 835s carry fake patient names, member ids and patient control numbers. The
whole pipeline runs on them at DEBUG — embedded reconcile, ingest, the Kafka run posting to an
HTTP ERP, a replay, a redrive — and every log line (Python and the native clients' stderr),
the metrics exposition, every output record and file, every dead-letter reason, everything
stored in Redis and every journal the ERP received is scanned for them. The one sanctioned
place is a dead letter's ``payload`` (the original bytes, so it can be fixed and redriven):
the README says who may read that topic.
"""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path

import orjson
import pytest
import redis
from prometheus_client import REGISTRY, generate_latest

from remitflow import logs
from remitflow.cli import main
from remitflow.settings import Topics
from sources.synthetic import generate_dataset
from tests.conftest import RecordingErp
from tests.test_ingest import read_topic
from tests.test_services_smoke import BOOTSTRAP, REDIS_URL, _servers_wanted

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not _servers_wanted(), reason="local servers not running"),
]

_NM1_PATIENT = re.compile(rb"NM1\*(?:QC|IL)\*1\*([^*~\n]*)\*([^*~\n]*)\*[^~\n]*?\*MI\*([^*~\n]+)")
_CLP01 = re.compile(rb"(?:^|~|\n)CLP\*([^*~\n]+)")


def phi_of(folder: Path) -> set[str]:
    """Patient names, member ids and control numbers in the 835 files, as written there."""
    found: set[str] = set()
    for path in folder.glob("*.835"):
        raw = path.read_bytes()
        for last, first, member in _NM1_PATIENT.findall(raw):
            found.update(v.decode() for v in (member,) if len(v) >= 6)
            found.add(f"{last.decode()}*{first.decode()}")
            found.add(f"{first.decode()} {last.decode()}")
        found.update(m.decode() for m in _CLP01.findall(raw) if len(m) >= 6)
    return found


def test_no_phi_in_logs_metrics_records_stores_or_the_erp(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    erp: tuple[RecordingErp, str],
) -> None:
    data = tmp_path / "data"
    generate_dataset(data, hospitals=1, payers=4, days=5, seed=17)
    phi = phi_of(data / "remittances")
    assert len(phi) > 100  # names, member ids and control numbers were found to look for

    state, url = erp
    prefix = f"phi-{uuid.uuid4().hex[:10]}"
    for name, value in (
        ("REMITFLOW_LOG_LEVEL", "DEBUG"),
        ("REMITFLOW_TOPIC_PREFIX", prefix),
        ("REMITFLOW_KAFKA_BOOTSTRAP", BOOTSTRAP),
        ("REMITFLOW_REDIS_URL", REDIS_URL),
        ("REMITFLOW_RECOVERY_DIR", str(tmp_path / "recovery")),
        ("REMITFLOW_ERP_URL", url),
    ):
        monkeypatch.setenv(name, value)
    logs.configure("DEBUG")
    config = str(data / "refdata.toml")
    out = tmp_path / "embedded"
    folders = ("remittances", "bank", "postings")
    reconcile = ["reconcile", "--out", str(out), "--config", config]
    reconcile += ["--remittances", str(data / "remittances"), "--bank", str(data / "bank")]
    assert main([*reconcile, "--postings", str(data / "postings")]) == 0
    for kind, folder in zip(("remittance", "bank", "posting"), folders, strict=True):
        assert main(["ingest", "--kind", kind, str(data / folder), "--config", config]) == 0
    assert main(["run", "--until-end", "--config", config]) == 0
    assert main(["replay", "--from-offset", "earliest", "--config", config]) == 0
    assert main(["redrive", "--dry-run", "--config", config]) == 0

    scanned: dict[str, list[str]] = {}
    captured = capfd.readouterr()
    scanned["logs and console"] = [captured.out, captured.err]
    assert '"level": "debug"' in captured.err or '"level":"debug"' in captured.err
    scanned["metrics exposition"] = [generate_latest(REGISTRY).decode()]
    scanned["embedded outputs"] = [
        _without_payloads(line) for f in out.glob("*.jsonl") for line in f.read_bytes().splitlines()
    ]
    topics = Topics(prefix)
    names = [
        topics.name(n)
        for n in (
            "matched",
            "variances",
            "unmatched",
            "erp-postings",
            "dead-letter",
            "parse-issues",
            "audit",
        )
    ]
    scanned["output topics"] = [_without_payloads(v) for t in names for _, v in read_topic(t)]
    letters = [orjson.loads(v) for _, v in read_topic(topics.dead_letter)]
    assert letters  # the dataset's corrupt files: their payloads are the sanctioned PHI
    scanned["dead-letter reasons"] = [x["reason"] for x in letters]
    # The scan does find PHI where it really is: in the sanctioned payloads.
    payloads = b"".join(base64.b64decode(x["payload"]) for x in letters).decode("latin-1")
    assert any(p in payloads for p in phi)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    stored: list[str] = []
    for key in client.scan_iter(match=f"{prefix}:*"):
        kind = str(client.type(key))
        if kind == "hash":
            stored.append(f"{key!r} {client.hgetall(key)}")
        elif kind == "set":
            stored.append(f"{key!r} {client.smembers(key)}")
        else:
            stored.append(f"{key!r} {client.get(key)!r}")
    scanned["Redis (ledger, cases, configuration)"] = stored
    scanned["journals the ERP received"] = [
        orjson.dumps(j).decode() for j in state.accepted.values()
    ]

    hits = {
        where: sorted({p for p in phi for text in texts if p in text})
        for where, texts in scanned.items()
    }
    lines = sum(len(texts) for texts in scanned.values())
    with capfd.disabled():
        print(
            f"\nPHI scan: {len(phi)} PHI strings x {lines} texts in {len(scanned)} places, "
            f"{sum(len(h) for h in hits.values())} hits"
        )
    assert hits == {where: [] for where in scanned}
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)


def _without_payloads(raw: bytes) -> str:
    record = orjson.loads(raw)
    if isinstance(record, dict) and record.get("record") == "dead_letter":
        record["payload"] = "<sanctioned: original bytes>"
    return orjson.dumps(record).decode()
