"""Metrics (DESIGN.md §6): what the dataflow counts is what it wrote, and one ``/metrics`` shows it.

* In file mode, in this process: every counter equals the records in the output files (exact).
* The match step's meter: open items rise and fall with the key's state; decisions are timed
  from the arrival of their last item, restored items never.
* Two worker processes, one endpoint: the served sums equal the output files (no servers), and
  on Kafka (``remitflow run --until-end --processes 2``) the records read back from the topics.
* The Grafana dashboard: valid, on the ``prometheus`` datasource, and every metric its PromQL
  names is in that live exposition (``bytewax_*`` included).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import yaml
from confluent_kafka import Producer
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from dataflows import instrument
from dataflows.embedded import reconcile_files
from dataflows.reconcile import FlowConfig, MatchLogic
from matchers.base import MatchSettings
from remitflow import metrics_server, step_metrics
from remitflow.cli import main
from remitflow.config import load_config
from remitflow.refdata import Payer, ReferenceData
from remitflow.settings import Topics
from sources.detect import expand_paths
from sources.synthetic import generate_dataset
from state.key_state import Decided
from tests.factories import deposit, remittance

DASHBOARD = Path(__file__).parents[1] / "deploy" / "grafana" / "dashboards" / "remitflow.json"
CASH_STREAMS = ("remittance", "bank_transaction")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# -- reading metrics ---------------------------------------------------------------------------


def registry_samples() -> Samples:
    """This process's remitflow samples, by name and labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in REGISTRY.collect()
        if family.name.startswith("remitflow_")
        for s in family.samples
    }


def exposition_samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(endpoint: metrics_server.MetricsEndpoint) -> str:
    with urllib.request.urlopen(endpoint.url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


def by(samples: Samples, name: str, *labels: str) -> Counter[tuple[str, ...]]:
    """The samples of ``name`` summed by ``labels`` (zeros left out, as a Counter compares)."""
    found: Counter[tuple[str, ...]] = Counter()
    for (sample, pairs), value in samples.items():
        if sample == name and value:
            found[tuple(dict(pairs)[label] for label in labels)] += int(value)
    return +found


def delta(after: Samples, before: Samples) -> Samples:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


# -- the output records ------------------------------------------------------------------------


@dataclass
class Written:
    """Records as the sink wrote them, by family (file stem or topic)."""

    audit: list[dict[str, Any]]
    cases: list[dict[str, Any]]  # matched and variance case records (confirmations left out)
    unmatched: list[dict[str, Any]]
    variances: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    journals: list[dict[str, Any]]

    @classmethod
    def from_files(cls, out: Path) -> Written:
        def read(stem: str) -> list[dict[str, Any]]:
            return [
                orjson.loads(line) for line in (out / f"{stem}.jsonl").read_bytes().splitlines()
            ]

        matched, variance = read("matched"), read("variance")
        return cls(
            audit=read("audit"),
            cases=[r for r in (*matched, *variance) if r["record"] in ("matched", "variance")],
            unmatched=read("unmatched"),
            variances=variance,
            dead_letters=read("dead_letter"),
            journals=read("erp_postings"),
        )

    @classmethod
    def from_topics(cls, topics: Topics) -> Written:
        from tests.test_ingest import read_topic

        def read(short: str) -> list[dict[str, Any]]:
            return [orjson.loads(v) for _, v in read_topic(topics.name(short))]

        matched, variance = read("matched"), read("variances")
        return cls(
            audit=read("audit"),
            cases=[r for r in (*matched, *variance) if r["record"] in ("matched", "variance")],
            unmatched=read("unmatched"),
            variances=variance,
            dead_letters=read("dead-letter"),
            journals=read("erp-postings"),
        )


def assert_counters_equal_records(samples: Samples, written: Written) -> None:
    """Every counter the dataflow keeps against the records it wrote: exact equality."""
    audit = written.audit
    assert audit
    assert by(samples, "remitflow_events_in_total", "stream") == Counter(
        (r["kind"],)
        for r in audit  # every event ends in exactly one audit record
    )
    assert by(samples, "remitflow_outcomes_total", "outcome", "rule") == Counter(
        (r["outcome"], r["rule"] or "none") for r in audit
    )
    duplicates = sum(r["outcome"] == "duplicate" for r in audit)
    assert duplicates
    assert samples[("remitflow_duplicates_total", ())] == duplicates
    payer_outcomes = by(samples, "remitflow_payer_outcomes_total", "stream", "outcome")
    assert payer_outcomes == Counter(
        (r["kind"], r["outcome"]) for r in audit if r["kind"] != "posting"
    )

    ages = by(samples, "remitflow_exception_age_business_days_count", "stream")
    assert ages == Counter((r["kind"],) for r in written.unmatched)
    age_sums = by(samples, "remitflow_exception_age_business_days_sum", "stream")
    expected_sums: Counter[tuple[str, ...]] = Counter()
    for r in written.unmatched:
        expected_sums[(r["kind"],)] += r["age_business_days"]
    assert age_sums == +expected_sums

    variances = [r["variance"] for r in written.variances if r["record"] == "variance"]
    assert variances
    assert by(samples, "remitflow_variance_amount_dollars_count", "reason") == Counter(
        (v["reason"],) for v in variances
    )
    for reason in {v["reason"] for v in variances}:
        dollars = samples[("remitflow_variance_amount_dollars_sum", (("reason", reason),))]
        expected = sum(abs(float(v["amount"])) for v in variances if v["reason"] == reason)
        assert dollars == pytest.approx(expected)

    # Every matched and variance case was timed from its last item's arrival (none restored).
    assert written.cases
    assert samples[("remitflow_decision_latency_seconds_count", ())] == len(written.cases)


# -- file mode, in this process ----------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    root: Path
    config: FlowConfig

    @property
    def paths(self) -> list[Path]:
        return expand_paths([self.root / "remittances", self.root / "bank", self.root / "postings"])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """A small network with every kind of outcome, two corrupt files and variances."""
    root = tmp_path_factory.mktemp("metrics") / "data"
    generate_dataset(root, hospitals=1, payers=4, days=5, seed=17)
    refdata, settings = load_config(root / "refdata.toml")
    return Dataset(root, FlowConfig(refdata=refdata, settings=settings))


def test_file_mode_counters_equal_the_output_files(tmp_path: Path, dataset: Dataset) -> None:
    before = registry_samples()
    reconcile_files(dataset.paths, tmp_path, dataset.config)
    samples = delta(registry_samples(), before)
    written = Written.from_files(tmp_path)

    assert_counters_equal_records(samples, written)
    assert written.dead_letters  # the dataset's corrupt files
    assert by(samples, "remitflow_dead_letters_total", "stage", "system") == Counter(
        (r["stage"], r["source"]["system"]) for r in written.dead_letters
    )
    # Remittances per payer, as their records name the payer (TRN03 through reference data).
    payers = {p.id for p in dataset.config.refdata.payers}
    expected: Counter[tuple[str, ...]] = Counter()
    decided = {"matched", "variance", "unmatched"}  # ERP confirmations quote remittances too
    for record in (*written.cases, *written.unmatched):
        outcome = record["record"]
        for ref in record["remittances"] if outcome in decided else ():
            payer = dataset.config.refdata.payer_for_id(ref["payer_id"])
            expected[("remittance", payer.id if payer else "other", outcome)] += 1
    per_payer = by(samples, "remitflow_payer_outcomes_total", "stream", "payer", "outcome")
    assert (
        Counter({k: n for k, n in per_payer.items() if k[0] == "remittance" and k[2] in decided})
        == expected
    )
    assert {payer for _, payer, _ in per_payer} <= payers | {"other", "unknown"}
    assert len({payer for _, payer, _ in per_payer} & payers) >= 3
    # File mode decides everything at the end: nothing is left open.
    for stream in CASH_STREAMS:
        assert samples[("remitflow_open_items", (("stream", stream),))] == 0
    assert not by(samples, "remitflow_source_to_posting_seconds_count")  # no ERP in file mode


def test_the_match_meter_follows_open_items_and_times_decisions_from_the_last_arrival() -> None:
    def gauge(stream: str) -> float:
        return REGISTRY.get_sample_value("remitflow_open_items", {"stream": stream}) or 0.0

    def timed() -> float:
        return REGISTRY.get_sample_value("remitflow_decision_latency_seconds_count") or 0.0

    def latency() -> float:
        return REGISTRY.get_sample_value("remitflow_decision_latency_seconds_sum") or 0.0

    start = {stream: gauge(stream) for stream in CASH_STREAMS}
    settings = MatchSettings()
    logic = MatchLogic(settings, False, None)  # file mode: decided at the end
    logic.on_batch([remittance("r1", trace="T1"), remittance("r2", 700, trace="T2")])
    assert gauge("remittance") - start["remittance"] == 2
    time.sleep(0.5)
    logic.on_batch([deposit("d1", trace="T1"), remittance("r1", trace="T1")])  # r1 again
    assert gauge("bank_transaction") - start["bank_transaction"] == 1
    assert gauge("remittance") - start["remittance"] == 2  # a duplicate opens nothing
    snapshot = logic.snapshot()
    count, total = timed(), latency()
    time.sleep(0.2)
    out, _ = logic.on_eof()
    decided = [r.decision for r in out if isinstance(r, Decided)]
    assert sorted(d.outcome for d in decided) == ["matched", "unmatched"]
    assert timed() - count == 1  # the matched case; an unmatched item has no counterpart
    # Timed from d1's arrival (the last counterpart), not from r1's, 0.5 s before it.
    assert 0.2 <= latency() - total < 0.7
    assert {stream: gauge(stream) for stream in CASH_STREAMS} == start

    # Restored from a snapshot: open again, but no arrival time, so never timed.
    restored = MatchLogic(settings, False, snapshot)
    assert gauge("remittance") - start["remittance"] == 2
    count = timed()
    restored.on_eof()
    assert timed() == count
    assert {stream: gauge(stream) for stream in CASH_STREAMS} == start

    # Continuous mode decides a certain pair on arrival: latency 0.
    early = MatchLogic(settings, True, None)
    count, total = timed(), latency()
    out, _ = early.on_batch([remittance("r9", trace="T9"), deposit("d9", trace="T9")])
    assert [r.decision.outcome for r in out if isinstance(r, Decided)] == ["matched"]
    assert (timed() - count, latency() - total) == (1, 0.0)
    assert {stream: gauge(stream) for stream in CASH_STREAMS} == start


def test_payer_labels_are_reference_data_ids_or_a_bounded_fallback() -> None:
    meter = instrument.PayerMeter(ReferenceData(payers=[Payer(id="aetna", name="AETNA")]))
    assert meter.label("aetna") == "aetna"
    assert meter.label("id:1234567890") == "other"  # an id reference data does not know
    assert meter.label("?") == "unknown"  # no payer recognised


# -- one endpoint for several worker processes -------------------------------------------------


def test_two_worker_processes_are_served_as_one_exposition(
    tmp_path: Path, dataset: Dataset
) -> None:
    assert metrics_server.MULTIPROC_ENV not in os.environ
    with metrics_server.serve(0, "127.0.0.1") as endpoint:
        reconcile_files(dataset.paths, tmp_path / "out", dataset.config, workers=2)
        assert metrics_server.MULTIPROC_ENV not in os.environ  # restored for what runs next
        text = scrape(endpoint)
    declared = re.findall(r"^# TYPE (\S+) ", text, re.M)
    assert len(declared) == len(set(declared))  # each family once: workers' or this process's
    samples = exposition_samples(text)
    written = Written.from_files(tmp_path / "out")
    assert_counters_equal_records(samples, written)
    assert by(samples, "remitflow_dead_letters_total", "stage", "system") == Counter(
        (r["stage"], r["source"]["system"]) for r in written.dead_letters
    )
    # The workers are gone: their live gauges with them (what is left is this process's own).
    assert samples[("remitflow_open_items", (("stream", "remittance"),))] == (
        REGISTRY.get_sample_value("remitflow_open_items", {"stream": "remittance"})
    )
    with pytest.raises(OSError):
        urllib.request.urlopen(endpoint.url, timeout=2)  # stopped


def test_one_process_serves_its_own_registry(tmp_path: Path, dataset: Dataset) -> None:
    with metrics_server.serve(0, "127.0.0.1") as endpoint:
        assert endpoint.url.startswith("http://127.0.0.1:")
        reconcile_files(dataset.paths, tmp_path, dataset.config)
        served = exposition_samples(scrape(endpoint))
    own = registry_samples()
    events = ("remitflow_events_in_total", (("stream", "remittance"),))
    assert served[events] == own[events] > 0


# -- Bytewax's step metrics, scraped from each process's API server ----------------------------


def _worker_api(text: str) -> tuple[http.server.HTTPServer, int]:
    """A loopback stand-in for one worker's Bytewax API server, answering ``text``."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_port)


def _worker_text(worker: int, items: int) -> str:
    return (
        "# HELP bytewax_item_out_count_total items out\n"
        "# TYPE bytewax_item_out_count_total counter\n"
        f'bytewax_item_out_count_total{{step_id="f.inp",worker_index="{worker}"}} {items}\n'
        "# HELP remitflow_events_in_total already served by remitflow\n"
        "# TYPE remitflow_events_in_total counter\n"
        'remitflow_events_in_total{stream="bank"} 7\n'
        "# HELP bytewax_kafka_consumer_lag from the Python registry\n"
        "# TYPE bytewax_kafka_consumer_lag gauge\n"
        'bytewax_kafka_consumer_lag{step_id="f.inp",partition="0"} 3\n'
    )


def test_step_families_are_merged_per_name_and_kept_after_a_worker_exits() -> None:
    scraper = step_metrics.StepScraper()
    servers = [_worker_api(_worker_text(w, items)) for w, items in ((0, 5), (1, 9))]
    unused = step_metrics.free_port()  # a worker that has not started its server yet
    scraper.use([port for _, port in servers] + [unused])
    try:
        families = scraper.families(exclude={"bytewax_kafka_consumer_lag"})
        # One family, both workers; remitflow's own and excluded families are left out.
        assert [f.name for f in families] == ["bytewax_item_out_count"]
        assert {(s.labels["worker_index"], s.value) for s in families[0].samples} == {
            ("0", 5.0),
            ("1", 9.0),
        }
    finally:
        servers[1][0].shutdown()
        servers[1][0].server_close()
    # Worker 1 has exited: its last answer is still served; worker 0 answers live.
    again = scraper.families(exclude=set())
    names = {f.name for f in again}
    assert names == {"bytewax_item_out_count", "bytewax_kafka_consumer_lag"}
    out = next(f for f in again if f.name == "bytewax_item_out_count")
    assert sorted(s.labels["worker_index"] for s in out.samples) == ["0", "1"]
    scraper.use([])  # the next run: nothing kept from this one
    assert scraper.families(exclude=set()) == []
    servers[0][0].shutdown()
    servers[0][0].server_close()


def test_two_in_process_runs_with_the_endpoint_up_both_finish(
    tmp_path: Path, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytewax can start its API server once per process; a second would fail the run.

    In a fresh interpreter (this one may have started it already): the first run serves step
    metrics, the second runs without them, and both finish.
    """
    script = f"""
import sys
from pathlib import Path
from dataflows.embedded import reconcile_files
from remitflow import metrics_server, step_metrics
from remitflow.config import load_config
from dataflows.reconcile import FlowConfig
from sources.detect import expand_paths
root = Path({str(dataset.root)!r})
paths = expand_paths([root / "remittances", root / "bank", root / "postings"])
refdata, settings = load_config(root / "refdata.toml")
config = FlowConfig(refdata=refdata, settings=settings)
with metrics_server.serve(0, "127.0.0.1"):
    for run in ("first", "second"):
        reconcile_files(paths, Path({str(tmp_path)!r}) / run, config)
assert not step_metrics.claim_this_process()  # the first run took it
print("both finished")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "both finished" in done.stdout
    first, second = (Written.from_files(tmp_path / run).audit for run in ("first", "second"))
    assert first and len(first) == len(second)
    monkeypatch.setenv(step_metrics.SWITCH_ENV, "off")  # and the operator's switch holds
    assert not step_metrics.enabled()


# -- the dashboard -----------------------------------------------------------------------------

_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"} | {
    "and",
    "or",
    "unless",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (matchers, grouping) or inside durations and strings."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\boffset\s+-?[0-9A-Za-z_$]+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def sampled_names(text: str) -> set[str]:
    """The sample names of an exposition."""
    return set(re.findall(r"^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]", text, re.M))


def exposed_names(text: str) -> set[str]:
    """Every sample name the exposition has or declares (a family with no sample yet)."""
    names = sampled_names(text)
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
        names.update(name + s for s in suffixes.get(kind, ("",)))
    return names


def dashboard_exprs() -> list[str]:
    doc = orjson.loads(DASHBOARD.read_bytes())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", ())]


def alert_exprs() -> list[str]:
    """The Prometheus alert rules' expressions (deploy/prometheus/alerts.yml)."""
    doc = yaml.safe_load((DASHBOARD.parents[2] / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def test_promql_metric_names_are_found_and_nothing_else() -> None:
    expr = 'sum by (le, job) (rate(a_bucket{x="y(z)"}[5m])) / on(job) group_left b offset 1h'
    assert promql_metric_names(expr) == {"a_bucket", "b"}
    assert promql_metric_names("histogram_quantile(0.9, sum(rate(c[$__rate_interval])))") == {"c"}


def test_the_dashboard_is_provisionable_and_covers_the_issue() -> None:
    doc = orjson.loads(DASHBOARD.read_bytes())
    assert doc["uid"] == "remitflow" and doc["title"]
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus"
            assert promql_metric_names(target["expr"]), target["expr"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
    names = set().union(*(promql_metric_names(e) for e in dashboard_exprs()))
    assert all(n.startswith(("remitflow_", "bytewax_")) for n in names)
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("events in", "lag", "match rate by payer", "unmatched by payer", "aging"):
        assert topic in titles
    for topic in ("erp post", "posting latency", "dead letters", "retries", "per step"):
        assert topic in titles


# -- on Kafka: `remitflow run --until-end --processes 2` ---------------------------------------


@contextlib.contextmanager
def scraping(endpoint: metrics_server.MetricsEndpoint) -> Iterator[list[str]]:
    """Scrape every 0.2 s while the block runs, as Prometheus would (bounded: 10 minutes)."""
    answers: list[str] = []
    done = threading.Event()

    def poll() -> None:
        deadline = time.monotonic() + 600
        while not done.wait(0.2) and time.monotonic() < deadline:
            answers.append(scrape(endpoint))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield answers
    finally:
        done.set()
        poller.join(timeout=30)


@dataclass(frozen=True)
class ServedRun:
    exposition: str
    written: Written


@pytest.fixture(scope="module")
def served_run(tmp_path_factory: pytest.TempPathFactory, dataset: Dataset) -> Iterator[ServedRun]:
    """Ingest the dataset and one poison message under a fresh prefix, then run two worker
    processes to the end of the topics with the endpoint up, scraped while they run (Bytewax's
    step metrics are only answered by live workers); scrape it once more when they are done.

    The servers' test helpers are imported here: their modules skip themselves when the
    servers are not wanted, and the tests above need none.
    """
    from tests.test_services_smoke import BOOTSTRAP, REDIS_URL, _servers_wanted

    if not _servers_wanted():
        pytest.skip("local servers not running (bash scripts/services.sh start)")
    prefix = f"metrics-{uuid.uuid4().hex[:10]}"
    config = str(dataset.root / "refdata.toml")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (
            ("REMITFLOW_TOPIC_PREFIX", prefix),
            ("REMITFLOW_KAFKA_BOOTSTRAP", BOOTSTRAP),
            ("REMITFLOW_REDIS_URL", REDIS_URL),
            ("REMITFLOW_RECOVERY_DIR", str(tmp_path_factory.mktemp("recovery"))),
        ):
            patch.setenv(name, value)
        topics = Topics(prefix)
        for kind, folder in (
            ("remittance", "remittances"),
            ("bank", "bank"),
            ("posting", "postings"),
        ):
            assert (
                main(["ingest", "--kind", kind, str(dataset.root / folder), "--config", config])
                == 0
            )
        producer = Producer({"bootstrap.servers": BOOTSTRAP})
        producer.produce(topics.remittances, b"{not json", b"poison")
        assert producer.flush(30) == 0
        try:
            with metrics_server.serve(0, "127.0.0.1") as endpoint, scraping(endpoint) as live:
                run = ["run", "--until-end", "--processes", "2", "--epoch-seconds", "0.5"]
                assert main([*run, "--config", config]) == 0
                exposition = scrape(endpoint)
            assert live, "no scrape answered while the run was going"
            yield ServedRun(exposition, Written.from_topics(topics))
        finally:
            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(match=f"{prefix}:*"):
                client.delete(key)


@pytest.mark.services
def test_a_two_process_run_serves_counters_equal_to_the_records_on_the_topics(
    served_run: ServedRun,
) -> None:
    samples = exposition_samples(served_run.exposition)
    written = served_run.written
    assert_counters_equal_records(samples, written)
    # The poison message is the dataflow's one dead letter; ingest dead-lettered the corrupt
    # files itself (stage parse), before anything reached the dataflow.
    letters = Counter((r["stage"], r["source"]["system"]) for r in written.dead_letters)
    assert letters[("validate", "kafka")] == 1 and sum(letters.values()) > 1
    assert by(samples, "remitflow_dead_letters_total", "stage", "system") == Counter(
        {("validate", "kafka"): 1}
    )
    # Journals published to the erp-postings topic: acknowledged by the broker, each timed.
    assert written.journals
    posted = samples[("remitflow_erp_post_attempts_total", (("result", "posted"),))]
    assert posted == len(written.journals)
    assert samples[("remitflow_source_to_posting_seconds_count", ())] == len(written.journals)
    assert "bytewax_kafka_consumer_lag" in served_run.exposition  # Bytewax's, in the same registry


@pytest.mark.services
def test_every_dashboard_query_names_metrics_of_the_live_exposition(served_run: ServedRun) -> None:
    """remitflow's series all have samples after a run (bounded label sets are bound at 0 up
    front); Bytewax's lag gauge is declared, and sampled once a partition was read for a
    second (librdkafka's statistics interval), which a short run may not reach."""
    sampled = sampled_names(served_run.exposition)
    exposed = exposed_names(served_run.exposition) | {"up"}  # up: Prometheus's own, per target
    for expr in [*dashboard_exprs(), *alert_exprs()]:
        names = promql_metric_names(expr)
        missing = {
            n for n in names if n not in (sampled if n.startswith("remitflow_") else exposed)
        }
        assert not missing, f"{expr}: {sorted(missing)} not in the exposition"


@pytest.mark.services
def test_bytewax_step_metrics_of_both_workers_are_served(served_run: ServedRun) -> None:
    """Bytewax's per-step counters, scraped from each worker's API server, in one family per
    name: both workers, every step of the flow, the input steps' items bounded by what the
    topics hold (the last scrape before a worker exits may trail its final count)."""
    families = {
        f.name: f
        for f in text_string_to_metric_families(served_run.exposition)
        if f.name.startswith("bytewax_")
    }
    declared = re.findall(r"^# TYPE (bytewax_\S+) ", served_run.exposition, re.M)
    assert len(declared) == len(set(declared))
    items_out = families["bytewax_item_out_count"].samples
    assert {s.labels["worker_index"] for s in items_out} == {"0", "1"}
    steps = {s.labels["step_id"] for s in items_out}
    assert {"remitflow.kafka_in", "remitflow.match", "remitflow.confirm"} <= steps
    read = sum(s.value for s in items_out if s.labels["step_id"] == "remitflow.kafka_in")
    ingested = len(served_run.written.audit) + 1  # every event, plus the poison message
    assert 0 < read <= ingested
    on_batch = families["bytewax_stateful_batch_on_batch_duration_seconds"].samples
    assert {s.labels["step_id"] for s in on_batch} >= {"remitflow.match", "remitflow.confirm"}
