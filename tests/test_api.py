"""The case status API (`remitflow serve`) over a real deployment: the pipeline runs on a small
generated dataset (ingest → run --until-end on the local Kafka and Redis), then FastAPI's
TestClient asks what an auditor, an operator and a tool would ask, and every answer is checked
against the outcome records the run wrote to the topics.

Each module-scoped deployment has its own topic prefix (so its own Redis keys), removed after.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from confluent_kafka.admin import AdminClient
from fastapi.testclient import TestClient

from remitflow.api import create_app
from remitflow.calendar import add_business_days, business_days_between
from remitflow.cli import main
from remitflow.outcomes import ErpPosting, validate_record
from remitflow.settings import Settings
from remitflow.status import render_status, status_report
from sinks.erp_ledger import IdempotencyLedger
from sinks.records import case_id
from sources.synthetic import generate_dataset
from tests.test_ingest import read_topic
from tests.test_phi_scan import phi_of
from tests.test_services_smoke import BOOTSTRAP, REDIS_URL, _servers_wanted

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not _servers_wanted(), reason="local servers not running"),
]

ALICE, PLAIN = "tok-alice-3f9c1e", "tok-plain-77b2d0"
TOKENS = (f"alice:{ALICE}", PLAIN)
AS_ALICE = {"Authorization": f"Bearer {ALICE}"}
AS_PLAIN = {"Authorization": f"Bearer {PLAIN}"}
INPUTS = (("remittance", "remittances"), ("bank", "bank"), ("posting", "postings"))
OUTPUTS = ("matched", "variances", "unmatched", "erp-postings", "audit")


@dataclass
class Deployment:
    prefix: str
    settings: Settings
    data: Path
    records: dict[str, list[dict[str, Any]]]  # topic short name → records the run wrote

    def topic(self, short: str) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _, v in read_topic(f"{self.prefix}.{short}")]


def run_pipeline(tmp: Path, *, seed: int) -> Iterator[Deployment]:
    """Generate, load the configuration, ingest and run to the end under a fresh prefix; the
    deployment's Redis keys and topics are removed afterwards."""
    data = tmp / "data"
    generate_dataset(data, hospitals=1, payers=3, days=4, seed=seed)
    prefix = f"api-{uuid.uuid4().hex[:10]}"
    env = {
        "REMITFLOW_TOPIC_PREFIX": prefix,
        "REMITFLOW_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "REMITFLOW_REDIS_URL": REDIS_URL,
        "REMITFLOW_RECOVERY_DIR": str(tmp / "recovery"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        try:
            assert main(["refdata", "load", str(data / "refdata.toml")]) == 0
            for kind, folder in INPUTS:
                assert main(["ingest", "--kind", kind, str(data / folder)]) == 0
            assert main(["run", "--until-end", "--epoch-seconds", "0.5"]) == 0
            settings = replace(Settings.from_env(), api_tokens=TOKENS)
            deployment = Deployment(prefix, settings, data, {})
            deployment.records = {short: deployment.topic(short) for short in OUTPUTS}
            yield deployment
        finally:
            _remove(prefix)


def _remove(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}:*", count=500):
        client.delete(key)
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{prefix}.")]
    if topics:
        for future in admin.delete_topics(topics).values():
            future.result(timeout=30)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Read-only: nothing in this deployment is resolved."""
    yield from run_pipeline(tmp_path_factory.mktemp("api-read"), seed=8)


@pytest.fixture(scope="module")
def client(deployment: Deployment) -> Iterator[TestClient]:
    with TestClient(create_app(deployment.settings)) as made:
        yield made


# -- what the outcome records say ---------------------------------------------------------


def cases_of(records: list[dict[str, Any]], *kinds: str) -> dict[str, dict[str, Any]]:
    return {r["case_id"]: r for r in records if r["record"] in kinds}


def record_date(record: dict[str, Any]) -> date:
    """A case's date as the API documents it, worked out from its record: the earliest
    deposit's value date; for an unmatched remittance its decision date less its age then;
    for an ERP exception the ERP's date."""
    if record["record"] in ("posting_rejected", "duplicate_posting", "orphan_posting"):
        return datetime.fromisoformat(record["posting"]["posted_at"]).date()
    deposits = [date.fromisoformat(d["value_date"]) for d in record["bank_transactions"]]
    if deposits:
        return min(deposits)
    decided = datetime.fromisoformat(record["decided_at"]).date()
    age = record.get("age_business_days") or 0
    return add_business_days(decided, -age) if age else decided


def ledger_status(prefix: str, key: str) -> object:
    entry = IdempotencyLedger(REDIS_URL, prefix).status(key)
    return entry["status"] if entry else None


def all_pages(client: TestClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = client.get(path, params=query, headers=AS_ALICE)
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body.get("next_cursor")
        if not cursor:
            return items
    raise AssertionError("pagination never ended")


# -- authentication -----------------------------------------------------------------------


ENDPOINTS = (
    ("get", "/cases/case-00000000000000000000000000000000", None),
    ("get", "/cases?trace=123", None),
    ("get", "/exceptions", None),
    (
        "post",
        "/resolutions/confirm-pair",
        {"remittance_case_id": "a", "deposit_case_id": "b", "reason": "x"},
    ),
    ("post", "/resolutions/non-payer-cash", {"case_id": "a", "reason": "x"}),
)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {ALICE}x"},
        {"Authorization": f"Basic {ALICE}"},
        {"Authorization": ALICE},
    ],
    ids=["none", "wrong", "longer", "basic", "no-scheme"],
)
def test_no_token_no_data(client: TestClient, headers: dict[str, str]) -> None:
    for method, path, body in ENDPOINTS:
        answer = client.request(method, path, headers=headers, json=body)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "case_id" not in answer.text
    # What carries no data needs no token: the schema, and health.
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}


def test_an_api_without_configured_tokens_refuses_everyone(deployment: Deployment) -> None:
    with TestClient(create_app(replace(deployment.settings, api_tokens=()))) as bare:
        for method, path, body in ENDPOINTS:
            assert bare.request(method, path, headers=AS_ALICE, json=body).status_code == 401
        assert bare.get("/ui/exceptions", follow_redirects=False).status_code == 303
        assert bare.post("/ui/login", data={"token": ALICE}).status_code == 401


def test_tokens_are_never_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG"):
        client.get("/exceptions", headers=AS_ALICE)
        client.get(f"/exceptions?token={ALICE}")  # a careless client: refused, not logged
        client.post("/ui/login", data={"token": PLAIN}, follow_redirects=False)
    # The server's lines (the test's own HTTP client, httpx, logs the URLs it requested).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "httpx")
    assert "GET /exceptions 200" in logged and "GET /exceptions 401" in logged
    assert ALICE not in logged and PLAIN not in logged


def test_openapi_describes_the_endpoints_and_the_bearer_scheme(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) >= {
        "/cases/{case_id}",
        "/cases",
        "/exceptions",
        "/resolutions/confirm-pair",
        "/resolutions/non-payer-cash",
    }
    assert not any(path.startswith("/ui") for path in schema["paths"])
    schemes = schema["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    params = {p["name"] for p in schema["paths"]["/exceptions"]["get"]["parameters"]}
    assert params >= {"entity", "payer", "reason", "min_age", "limit", "cursor"}
    assert "lineage" in schema["components"]["schemas"]["CaseView"]["properties"]


SERVE = """
import sys
from dataclasses import replace
from remitflow import logs
from remitflow.api import ServeError, serve
from remitflow.settings import Settings
logs.configure()
try:
    serve(replace(Settings.from_env(), api_tokens=tuple(sys.argv[1:])))
except ServeError as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""


def _serve(deployment: Deployment, *tokens: str, port: int = 0) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "REMITFLOW_TOPIC_PREFIX": deployment.prefix,
        "REMITFLOW_REDIS_URL": REDIS_URL,
        "REMITFLOW_API_PORT": str(port),
    }
    return subprocess.Popen(
        [sys.executable, "-c", SERVE, *tokens], env=env, stderr=subprocess.PIPE, text=True
    )


def test_serve_listens_answers_and_stops_cleanly_on_sigterm(deployment: Deployment) -> None:
    server = _serve(deployment, *TOKENS)
    try:
        assert server.stderr is not None
        line = ""
        while "serving the case API" not in line:  # port 0: the log line says which port
            line = server.stderr.readline()
            assert line, "serve ended before it listened"
        port = int(orjson.loads(line)["msg"].rsplit(":", 1)[1])
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        assert httpx.get(f"{base}/exceptions", timeout=5).status_code == 401
        page = httpx.get(f"{base}/exceptions", headers=AS_ALICE, timeout=5)
        assert page.status_code == 200 and page.json()["total"] > 0
        busy = _serve(deployment, *TOKENS, port=port)  # a second server on the same port
        _, err = busy.communicate(timeout=30)
        assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in err
        server.send_signal(signal.SIGTERM)
        _, rest = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, rest
    assert ALICE not in line + rest  # the token is in no log line
    bare = _serve(deployment)
    _, err = bare.communicate(timeout=30)
    assert bare.returncode == 2 and "REMITFLOW_API_TOKENS is empty" in err


# -- cases and their lineage --------------------------------------------------------------


def test_a_case_shows_its_lineage_as_the_records_say(
    client: TestClient, deployment: Deployment
) -> None:
    decided = cases_of(
        deployment.records["matched"] + deployment.records["variances"], "matched", "variance"
    )
    journals = {j["case_id"]: j for j in deployment.records["erp-postings"]}
    confirmations: dict[str, list[dict[str, Any]]] = {}
    for r in deployment.records["matched"] + deployment.records["unmatched"]:
        if "posting" in r:
            confirmations.setdefault(r["case_id"], []).append(r)
    assert decided and journals and confirmations
    for cid, record in decided.items():
        answer = client.get(f"/cases/{cid}", headers=AS_PLAIN)
        assert answer.status_code == 200, answer.text
        case = answer.json()
        assert (case["outcome"], case["rule"], case["entity"]) == (
            record["record"],
            record["rule"],
            record["entity"],
        )
        assert case["remittances"] == record["remittances"]
        assert case["bank_transactions"] == record["bank_transactions"]
        assert case["payer_ids"] == sorted({r["payer_id"] for r in record["remittances"]})
        if record["record"] == "variance":
            assert case["variance_amount"] == record["variance"]["amount"]
            assert case["reason"] == record["variance"]["reason"]
        # Lineage: where each item was read → the decision → the journal → the ERP.
        steps = case["lineage"]
        reads = [s for s in steps if s["step"] == "read"]
        assert [(s["event_id"], s["source"]) for s in reads] == [
            (i["event_id"], i["source"])
            for i in (*record["remittances"], *record["bank_transactions"])
        ]
        decision = next(s for s in steps if s["step"] == "decided")
        assert (decision["rule"], decision["outcome"]) == (record["rule"], record["record"])
        journal = journals.get(cid)
        if journal is None:  # a zero-pay ERA moves no cash
            assert "journal" not in case
            continue
        key = journal["idempotency_key"]
        assert case["journal"]["idempotency_key"] == key
        assert case["journal"]["journal_date"] == journal["journal_date"]
        assert (
            case["journal"]["ledger"]["status"] == ledger_status(deployment.prefix, key) == "posted"
        )
        assert [s["idempotency_key"] for s in steps if s["step"] == "journal"] == [key]
        # The ERP's confirmations, in the ERP's order: the latest decides the status.
        erp = [s for s in steps if s["step"] == "erp"]
        confirmed = sorted(
            confirmations.get(cid, []),
            key=lambda r: (r["posting"]["posted_at"], r["posting"]["event_id"]),
        )
        assert [(s["posting_id"], s["outcome"]) for s in erp] == [
            (r["posting"]["posting_id"], r["record"]) for r in confirmed
        ]
        assert case["status"] == (confirmed[-1]["record"] if confirmed else record["record"])
    assert client.get("/cases/case-nothing", headers=AS_ALICE).status_code == 404


def test_cases_by_trace_and_by_bank_reference(client: TestClient, deployment: Deployment) -> None:
    records = [
        r
        for topic in ("matched", "variances", "unmatched")
        for r in deployment.records[topic]
        if r["record"] in ("matched", "variance", "unmatched")
    ]
    traces: dict[str, set[str]] = {}
    references: dict[str, set[str]] = {}
    for record in records:
        for r in record["remittances"]:
            if r["trace_number"]:
                traces.setdefault(r["trace_number"], set()).add(record["case_id"])
        for d in record["bank_transactions"]:
            if d["bank_reference"]:
                references.setdefault(d["bank_reference"], set()).add(record["case_id"])
    assert traces and references
    for trace, expected in traces.items():
        found = {c["case_id"] for c in all_pages(client, "/cases", trace=trace)}
        assert expected <= found, trace
        # However the trace is written: leading zeros, case, spaces.
        assert expected <= {
            c["case_id"] for c in all_pages(client, "/cases", trace=f" 00{trace.lower()} ")
        }
    for reference, expected in references.items():
        assert {
            c["case_id"] for c in all_pages(client, "/cases", bank_reference=reference)
        } == expected
    assert all_pages(client, "/cases", trace="NO-SUCH-TRACE-9") == []
    for bad in ({}, {"trace": "1", "payer": "2"}, {"trace": "1", "from": "2025-06-02"}):
        assert client.get("/cases", params=bad, headers=AS_ALICE).status_code == 422


def test_cases_by_payer_and_dates(client: TestClient, deployment: Deployment) -> None:
    records = [
        r
        for topic in ("matched", "variances", "unmatched")
        for r in deployment.records[topic]
        if r["record"] in ("matched", "variance", "unmatched")
    ]
    by_payer: dict[str, dict[str, date]] = {}
    for record in records:
        for r in record["remittances"]:
            by_payer.setdefault(r["payer_id"], {})[record["case_id"]] = record_date(record)
    assert len(by_payer) >= 2
    for payer, dated in by_payer.items():
        listed = all_pages(client, "/cases", payer=payer, limit=2)
        assert [c["case_id"] for c in listed] == sorted(dated, key=lambda c: (dated[c], c))
        assert all(payer in c["payer_ids"] for c in listed)
        days = sorted(set(dated.values()))
        start, end = days[0], days[len(days) // 2]
        within = {c for c, d in dated.items() if start <= d <= end}
        found = all_pages(
            client, "/cases", payer=payer, **{"from": start.isoformat(), "to": end.isoformat()}
        )
        assert {c["case_id"] for c in found} == within
        after = days[-1] + timedelta(days=1)
        assert all_pages(client, "/cases", payer=payer, **{"from": after.isoformat()}) == []
    # The reference data's payer id stands for its TRN03 ids.
    refdata_ids = {p["id"]: p["payer_ids"] for p in _payers(deployment)}
    for pid, trn03s in refdata_ids.items():
        expected = {c for t in trn03s for c in by_payer.get(t, {})}
        assert {c["case_id"] for c in all_pages(client, "/cases", payer=pid)} == expected


def _payers(deployment: Deployment) -> list[dict[str, Any]]:
    import tomllib

    doc = tomllib.loads((deployment.data / "refdata.toml").read_text())
    return list(doc.get("payers", []))


# -- the exception queue ------------------------------------------------------------------


def expected_exceptions(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """Unmatched items, variances and ERP exceptions (the unmatched topic also carries those)."""
    return {
        r["case_id"]: r for topic in ("unmatched", "variances") for r in deployment.records[topic]
    }


def reason_of(record: dict[str, Any]) -> str:
    if record["record"] == "variance":
        return str(record["variance"]["reason"])
    if record["record"] != "unmatched":
        return str(record["record"])
    return str(record["reason"])


def test_the_queue_holds_every_exception_once_oldest_first_in_pages(
    client: TestClient, deployment: Deployment
) -> None:
    expected = expected_exceptions(deployment)
    assert len(expected) >= 8
    whole = client.get("/exceptions", params={"limit": 500}, headers=AS_ALICE).json()
    assert whole["total"] == len(expected) and not whole.get("next_cursor")
    paged = all_pages(client, "/exceptions", limit=3)
    assert [i["case_id"] for i in paged] == [i["case_id"] for i in whole["items"]]
    assert Counter(i["case_id"] for i in paged) == Counter(set(expected))  # each once
    keys = [(i["opened_on"], i["case_id"]) for i in paged]
    assert keys == sorted(keys)  # oldest first
    for item in paged:
        record = expected[item["case_id"]]
        assert item["reason"] == reason_of(record)
        assert date.fromisoformat(item["opened_on"]) == record_date(record)
        assert item["entity"] == record["entity"]
        remitted = sum(Decimal(r["amount"]) for r in record["remittances"])
        if record["remittances"]:
            assert Decimal(item["remitted"]) == remitted
    bad = client.get("/exceptions", params={"cursor": "!!not-ours"}, headers=AS_ALICE)
    assert bad.status_code == 422


def test_the_queue_filters_by_entity_payer_reason_and_age(
    client: TestClient, deployment: Deployment
) -> None:
    expected = expected_exceptions(deployment)

    def listed(**params: Any) -> set[str]:
        return {i["case_id"] for i in all_pages(client, "/exceptions", **params)}

    reasons = Counter(reason_of(r) for r in expected.values())
    assert len(reasons) >= 4
    for reason in reasons:
        assert listed(reason=reason) == {c for c, r in expected.items() if reason_of(r) == reason}
    entities = {r["entity"] for r in expected.values()}
    for entity in entities:
        assert listed(entity=entity) == {c for c, r in expected.items() if r["entity"] == entity}
    assert listed(entity="NO-SUCH-ENTITY") == set()
    payers = {p["payer_id"] for r in expected.values() for p in r["remittances"]}
    for payer in payers:
        assert listed(payer=payer) == {
            c for c, r in expected.items() if payer in {p["payer_id"] for p in r["remittances"]}
        }
    # Ages in Fed business days to a given date: from a day when some are old and some new.
    dates = sorted({record_date(r) for r in expected.values()})
    as_of = add_business_days(dates[-1], 2)
    ages = {c: business_days_between(record_date(r), as_of) for c, r in expected.items()}
    assert len(set(ages.values())) >= 2
    for min_age in sorted(set(ages.values())):
        got = listed(min_age=min_age, as_of=as_of.isoformat())
        assert got == {c for c, a in ages.items() if a >= min_age}, min_age
    page = client.get("/exceptions", params={"as_of": as_of.isoformat()}, headers=AS_ALICE)
    assert {i["case_id"]: i["age_business_days"] for i in page.json()["items"]} == ages
    assert client.get("/exceptions", params={"min_age": -1}, headers=AS_ALICE).status_code == 422


# -- no PHI -------------------------------------------------------------------------------


def test_no_patient_data_in_any_answer(client: TestClient, deployment: Deployment) -> None:
    """The generated 835s name fake patients; nothing the API or the page serves may."""
    phi = phi_of(deployment.data / "remittances")
    assert len(phi) > 10
    cases = {
        r["case_id"]
        for topic in ("matched", "variances", "unmatched")
        for r in deployment.records[topic]
    }
    answers = [client.get(f"/cases/{cid}", headers=AS_ALICE).text for cid in sorted(cases)]
    answers.append(client.get("/exceptions", params={"limit": 500}, headers=AS_ALICE).text)
    for payer in {r["payer_id"] for c in deployment.records["matched"] for r in c["remittances"]}:
        answers.append(client.get("/cases", params={"payer": payer}, headers=AS_ALICE).text)
    with TestClient(client.app) as browser:
        assert browser.post("/ui/login", data={"token": ALICE}).status_code == 200
        answers.append(browser.get("/ui/exceptions").text)
        answers += [browser.get(f"/ui/cases/{cid}").text for cid in sorted(cases)]
    assert sum("case-" in a for a in answers) == len(answers)  # real answers, not refusals
    served = "\n".join(answers)
    assert not [value for value in phi if value in served]


# -- remitflow status --------------------------------------------------------------------


def test_status_reports_exceptions_journals_and_input_lag(
    deployment: Deployment,
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
    tmp_path: Path,
) -> None:
    expected = expected_exceptions(deployment)
    as_of = add_business_days(max(record_date(r) for r in expected.values()), 5)
    report = status_report(deployment.settings, as_of=as_of)
    summary = report["exceptions"]
    assert summary["open"] == len(expected)
    assert summary["by_reason"] == dict(Counter(reason_of(r) for r in expected.values()))
    ages = [business_days_between(record_date(r), as_of) for r in expected.values()]
    assert summary["by_age_business_days"] == {
        "0-3": sum(a <= 3 for a in ages),
        "4-9": sum(4 <= a <= 9 for a in ages),
        "10-19": sum(10 <= a <= 19 for a in ages),
        "20+": sum(a >= 20 for a in ages),
    }
    assert summary["oldest"]["age_business_days"] == max(ages)
    journals = {j["idempotency_key"] for j in deployment.records["erp-postings"]}
    assert (report["journals"]["posted"], report["journals"]["pending"]) == (len(journals), 0)
    last = datetime.fromisoformat(report["journals"]["last_posted_at"])
    assert timedelta(0) <= datetime.now(last.tzinfo) - last < timedelta(minutes=10)
    inputs = [f"{deployment.prefix}.{t}" for t in ("remittances", "bank-transactions", "postings")]
    assert report["lag"] == {"available": True, "total": 0, "by_topic": dict.fromkeys(inputs, 0)}
    text = render_status(report)
    assert f"Open exceptions: {len(expected)}" in text
    assert f"ERP journals: {len(journals)} posted, 0 pending" in text
    assert "Input lag: 0 message(s)" in text

    # Events the dataflow has not read yet (a bank file sent again) are lag.
    monkeypatch.setenv("REMITFLOW_TOPIC_PREFIX", deployment.prefix)
    monkeypatch.setenv("REMITFLOW_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("REMITFLOW_KAFKA_BOOTSTRAP", BOOTSTRAP)
    capsysbinary.readouterr()
    assert main(["ingest", "--kind", "bank", str(deployment.data / "bank")]) == 0
    sent = orjson.loads(capsysbinary.readouterr().out)["events"]
    lag = status_report(deployment.settings)["lag"]
    assert lag["by_topic"][f"{deployment.prefix}.bank-transactions"] == sent == lag["total"] > 0

    # Where the recovery store is not, the lag is not guessed.
    elsewhere = status_report(replace(deployment.settings, recovery_dir=tmp_path / "none"))
    assert elsewhere["lag"]["available"] is False
    assert "Input lag: unavailable" in render_status(elsewhere)


# -- resolutions --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resolving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A deployment of its own: its exceptions get resolved."""
    yield from run_pipeline(tmp_path_factory.mktemp("api-resolve"), seed=9)


@pytest.fixture(scope="module")
def resolver_client(resolving: Deployment) -> Iterator[TestClient]:
    with TestClient(create_app(resolving.settings)) as made:
        yield made


def unmatched(deployment: Deployment, reason: str, kind: str) -> list[dict[str, Any]]:
    return sorted(
        (
            r
            for r in deployment.records["unmatched"]
            if r["record"] == "unmatched" and r["reason"] == reason and r["kind"] == kind
        ),
        key=lambda r: r["case_id"],
    )


def only_item(record: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = (record["remittances"] + record["bank_transactions"])[0]
    return item


def journals_for(deployment: Deployment, key: str) -> list[dict[str, Any]]:
    return [j for j in deployment.topic("erp-postings") if j["idempotency_key"] == key]


def test_confirming_a_pair_posts_its_journal_once_however_often_it_is_sent(
    resolver_client: TestClient, resolving: Deployment
) -> None:
    client, d = resolver_client, resolving
    rem, dep = (
        unmatched(d, "ambiguous", "remittance")[0],
        unmatched(d, "ambiguous", "bank_transaction")[0],
    )
    assert only_item(rem)["amount"] == only_item(dep)["amount"]
    made = case_id([only_item(rem)["event_id"], only_item(dep)["event_id"]])
    body = {
        "remittance_case_id": rem["case_id"],
        "deposit_case_id": dep["case_id"],
        "reason": "Same amount and day; payer confirmed trace by phone",
    }
    journals_before = len(d.topic("erp-postings"))
    first = client.post("/resolutions/confirm-pair", json=body, headers=AS_ALICE)
    assert first.status_code == 201, first.text
    result = first.json()
    assert (result["case_id"], result["outcome"], result["already_resolved"]) == (
        made,
        "matched",
        False,
    )
    assert sorted(result["resolves"]) == sorted([rem["case_id"], dep["case_id"]])
    again = client.post("/resolutions/confirm-pair", json=body, headers=AS_PLAIN)
    assert again.status_code == 200 and again.json()["already_resolved"] is True

    # Exactly one journal, balanced, cash = the deposit, through the ledger.
    key = result["idempotency_key"]
    posted = journals_for(d, key)
    assert len(posted) == 1 and len(d.topic("erp-postings")) == journals_before + 1
    journal = validate_record(posted[0])
    assert isinstance(journal, ErpPosting) and journal.rule == "operator_confirmed"
    assert sum(Decimal(line.debit) for line in journal.lines) == sum(
        Decimal(line.credit) for line in journal.lines
    )
    assert ledger_status(d.prefix, key) == "posted"
    # The outcome record went to the matched topic, as the dataflow's do.
    new = [r for r in d.topic("matched") if r["case_id"] == made]
    assert len(new) == 1 and validate_record(new[0]).record == "matched"
    assert new[0]["remittances"] == rem["remittances"]
    assert new[0]["bank_transactions"] == dep["bank_transactions"]

    # The lineage names the operator and the reason, on the new case and the old ones.
    case = client.get(f"/cases/{made}", headers=AS_PLAIN).json()
    assert (case["status"], case["rule"], case["journal"]["ledger"]["status"]) == (
        "matched",
        "operator_confirmed",
        "posted",
    )
    assert case["resolution"]["operator"] == "alice"
    assert case["resolution"]["reason"] == body["reason"]
    resolved = [s for s in case["lineage"] if s["step"] == "resolved"]
    assert [(s["operator"], s["reason"]) for s in resolved] == [("alice", body["reason"])]
    for old in (rem, dep):
        shown = client.get(f"/cases/{old['case_id']}", headers=AS_ALICE).json()
        assert shown["status"] == "resolved" and shown["resolution"]["case_id"] == made
    queue = {i["case_id"] for i in all_pages(client, "/exceptions")}
    assert rem["case_id"] not in queue and dep["case_id"] not in queue and made not in queue
    audit = [r for r in d.topic("audit") if r.get("case_id") == made]
    assert Counter(r["record"] for r in audit) == {"audit": 2, "resolution": 1}

    # A resolved item cannot be paired again.
    other = unmatched(d, "ambiguous", "bank_transaction")[1]
    taken = {
        "remittance_case_id": rem["case_id"],
        "deposit_case_id": other["case_id"],
        "reason": "x",
    }
    answer = client.post("/resolutions/confirm-pair", json=taken, headers=AS_ALICE)
    assert answer.status_code == 409 and "resolved" in answer.json()["detail"]


def test_two_operators_confirming_one_pair_at_once_post_one_journal(
    resolver_client: TestClient, resolving: Deployment
) -> None:
    client, d = resolver_client, resolving
    rem, dep = (
        unmatched(d, "ambiguous", "remittance")[1],
        unmatched(d, "ambiguous", "bank_transaction")[1],
    )
    body = {
        "remittance_case_id": rem["case_id"],
        "deposit_case_id": dep["case_id"],
        "reason": "pair",
    }
    start = threading.Barrier(4)

    def submit(headers: dict[str, str]) -> int:
        start.wait()
        return int(client.post("/resolutions/confirm-pair", json=body, headers=headers).status_code)

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(submit, [AS_ALICE, AS_PLAIN, AS_ALICE, AS_PLAIN]))
    assert codes.count(201) == 1 and set(codes) <= {201, 200, 409}, codes
    made = case_id([only_item(rem)["event_id"], only_item(dep)["event_id"]])
    key = client.get(f"/cases/{made}", headers=AS_ALICE).json()["journal"]["idempotency_key"]
    assert len(journals_for(d, key)) == 1


def test_confirming_a_pair_whose_amounts_differ_books_the_variance(
    resolver_client: TestClient, resolving: Deployment
) -> None:
    client, d = resolver_client, resolving
    rem = unmatched(d, "end_of_input", "remittance")[0]
    deposits = unmatched(d, "end_of_input", "bank_transaction")
    dep = max(deposits, key=lambda r: Decimal(only_item(r)["amount"]))
    body = {
        "remittance_case_id": rem["case_id"],
        "deposit_case_id": dep["case_id"],
        "reason": "ERA reissued",
    }
    answer = client.post("/resolutions/confirm-pair", json=body, headers=AS_ALICE)
    assert answer.status_code == 201, answer.text
    result = answer.json()
    difference = Decimal(only_item(dep)["amount"]) - Decimal(only_item(rem)["amount"])
    assert result["outcome"] == "variance"
    case = result["case"]
    assert case["status"] == "resolved" and Decimal(case["variance_amount"]) == difference
    assert case["reason"] == "amount_mismatch"
    (journal,) = journals_for(d, result["idempotency_key"])
    checked = validate_record(journal)  # balanced, or validation fails
    assert isinstance(checked, ErpPosting)
    lines = checked.lines
    assert any(Decimal(line.debit) == Decimal(only_item(dep)["amount"]) for line in lines)
    record = next(r for r in d.topic("variances") if r["case_id"] == result["case_id"])
    assert Decimal(record["variance"]["amount"]) == difference


def test_a_deposit_marked_non_payer_cash_leaves_the_queue_and_posts_nothing(
    resolver_client: TestClient, resolving: Deployment
) -> None:
    client, d = resolver_client, resolving
    deposits = unmatched(d, "end_of_input", "bank_transaction")
    dep = min(deposits, key=lambda r: Decimal(only_item(r)["amount"]))
    journals_before = len(d.topic("erp-postings"))
    body = {"case_id": dep["case_id"], "reason": "County grant, not a claim payment"}
    answer = client.post("/resolutions/non-payer-cash", json=body, headers=AS_PLAIN)
    assert answer.status_code == 201, answer.text
    case = answer.json()["case"]
    assert case["status"] == "resolved"
    assert (case["resolution"]["operator"], case["resolution"]["outcome"]) == (
        "token-2",
        "not_payer_cash",
    )
    assert client.post("/resolutions/non-payer-cash", json=body, headers=AS_ALICE).json()[
        "already_resolved"
    ]
    assert len(d.topic("erp-postings")) == journals_before
    audit = [r for r in d.topic("audit") if r.get("case_id") == dep["case_id"]]
    assert [
        (r["record"], r.get("outcome")) for r in audit if r.get("rule") == "operator_non_payer_cash"
    ] == [
        ("audit", "not_payer_cash"),
        ("resolution", "not_payer_cash"),
    ]
    assert dep["case_id"] not in {i["case_id"] for i in all_pages(client, "/exceptions")}


def test_resolutions_refuse_what_they_cannot_do(
    resolver_client: TestClient, resolving: Deployment
) -> None:
    client, d = resolver_client, resolving
    variance = d.records["variances"][0]["case_id"]
    rem = unmatched(d, "ambiguous", "remittance")[0]["case_id"]

    def confirm(remittance: str, deposit: str, reason: str = "r") -> int:
        body = {"remittance_case_id": remittance, "deposit_case_id": deposit, "reason": reason}
        return int(
            client.post("/resolutions/confirm-pair", json=body, headers=AS_ALICE).status_code
        )

    assert confirm("case-unknown", rem) == 404
    assert confirm(rem, rem) == 422  # a remittance is not a deposit
    assert confirm(variance, rem) == 422  # a case of two items is not one remittance
    assert confirm(rem, "case-x", reason="") == 422
    answer = client.post(
        "/resolutions/non-payer-cash", json={"case_id": rem, "reason": "r"}, headers=AS_ALICE
    )
    assert answer.status_code == 422
