"""Poison messages on the Kafka input topics: each kind becomes one dead letter, nothing else.

Continuous mode's input topics are a trust boundary (anything may write to them). For every
kind of bad message, :func:`dataflows.kafka_input.decode` must return a dead letter with stage
``validate``, a reason that names the kind of problem (never the content: it may hold PHI), the
original bytes as its payload and the message's topic/partition/offset as its source. On the
real broker (services-marked), each such message produced to the three input topics of a run,
before and after the good ones, lands in the dead-letter topic exactly once, and the good
messages still get the outcomes an embedded run gives.

Kinds with an open finding (FINDINGS: accepted although DESIGN.md §2 says money travels as
decimal strings, a reason quoting a field name, a dead letter too large for its topic) are
strict xfails, so that the fix turns them into failures until the mark is removed.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main
from confluent_kafka import KafkaError, Message, Producer

from dataflows.embedded import reconcile_files
from dataflows.kafka_input import decode, kafka_parsed
from dataflows.reconcile import FlowConfig, reconcile_stream
from remitflow.cli import main
from remitflow.config import load_config
from remitflow.events import (
    Adjustment,
    BankTransaction,
    Claim,
    Envelope,
    Posting,
    ProviderAdjustment,
    Remittance,
    Source,
    event_to_json,
)
from remitflow.identity import PhiHasher
from remitflow.records import DeadLetter
from remitflow.settings import Topics
from sinks.kafka import KafkaRecordSink, ensure_topics
from sources import bai2, postings, x12
from sources.base import ParseContext, Parsed
from sources.detect import expand_paths
from sources.synthetic import generate_dataset
from tests.conftest import sample_bytes
from tests.test_continuous import read, view
from tests.test_ingest import read_topic
from tests.test_services_smoke import BOOTSTRAP, _servers_wanted

KafkaMessage = KafkaSourceMessage[bytes | None, bytes | None]
CTX = ParseContext(file="poison", phi=PhiHasher(b"poison-test-secret"))
# A patient's name from the samples (LinuxForHealth cob-contractural-adjustment.835, NM1*QC):
# planted in the poison as content that no reason may repeat.
PATIENT = "BURCK RAYMOND"
# Just under the broker's default message limit (1,048,588 bytes with the record overhead).
HUGE = 1_000_000


def _first(
    items: list[Parsed], kind: type[Remittance | BankTransaction | Posting]
) -> dict[str, Any]:
    """The first event of ``kind`` as the JSON object `remitflow ingest` would produce."""
    event = next(i for i in items if isinstance(i, kind))
    parsed: dict[str, Any] = json.loads(event_to_json(event))
    return parsed


REMITTANCE = _first(
    list(x12.parse_bytes(sample_bytes("LinuxForHealth-x12__managed-care.835"), CTX)), Remittance
)
BANK = _first(
    list(bai2.parse_bytes(sample_bytes("synthetic__bai2_hcclaimpmt_ach.bai2"), CTX)),
    BankTransaction,
)
POSTING = _first(
    list(
        postings.parse_bytes(
            b'{"posting_id": "JE-1001", "idempotency_key": "case-1", "status": "posted", '
            b'"amount": "945.00", "posted_at": "2025-03-18T14:02:11Z", "entity": "H1"}',
            CTX,
        )
    ),
    Posting,
)


def edited(base: dict[str, Any], **changes: Any) -> bytes:
    """``base`` with fields replaced (a value of ``...`` removes the field), as JSON."""
    obj = {**base, **changes}
    for key in [k for k, v in changes.items() if v is ...]:
        del obj[key]
    return json.dumps(obj).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@dataclass(frozen=True)
class Poison:
    kind: str
    value: bytes | None
    reason: str  # what the reason starts with
    finding: str | None = None  # accepted today: the report's finding that says why it should not


POISON = [
    Poison("not JSON", b"{not json", "not JSON"),
    Poison(
        "invalid UTF-8",
        edited(POSTING, reason="paid").replace(b"paid", b"pa\xffd"),
        "not JSON",
    ),
    Poison("byte-order mark", b"\xef\xbb\xbf" + edited(POSTING), "not JSON"),
    Poison("NaN literal", b'{"kind": "posting", "amount": NaN}', "not JSON"),
    Poison("empty value", b"", "not JSON"),
    Poison("tombstone (no value)", None, "not JSON"),
    Poison("JSON list", b"[1, 2]", "not a canonical event: message: model_attributes_type"),
    Poison("JSON number", b"945.00", "not a canonical event: message: model_attributes_type"),
    Poison("JSON string", b'"remittance"', "not a canonical event: message: model_attributes_type"),
    Poison("JSON null", b"null", "not a canonical event: message: model_attributes_type"),
    Poison(
        "event inside a list",
        b"[" + edited(BANK) + b"]",
        "not a canonical event: message: model_attributes_type",
    ),
    Poison("no kind", edited(POSTING, kind=...), "not a canonical event: message: union_tag_not_"),
    Poison(
        "unknown kind",
        edited(POSTING, kind="wire_transfer"),
        "not a canonical event: message: union_tag_invalid",
    ),
    Poison(
        "kind not a string",
        edited(REMITTANCE, kind=5),
        "not a canonical event: message: union_tag_invalid",
    ),
    Poison(
        "remittance without its trace",
        edited(REMITTANCE, trace_number=...),
        "not a canonical event: remittance.trace_number: missing",
    ),
    Poison(
        "remittance claim amount not money",
        edited(REMITTANCE, claims=[{**REMITTANCE["claims"][0], "paid": {"x": 1}}]),
        "not a canonical event: remittance.claims.0.paid: decimal_type",
    ),
    Poison(
        "bank transaction direction unknown",
        edited(BANK, direction="sideways"),
        "not a canonical event: bank_transaction.direction: literal_error",
    ),
    Poison(
        "posting status unknown",
        edited(POSTING, status="approved"),
        "not a canonical event: posting.status: literal_error",
    ),
    Poison(
        "naive datetime",
        edited(POSTING, posted_at="2025-03-18T14:02:11"),
        "not a canonical event: posting.posted_at: timezone_aware",
    ),
    Poison(
        "NaN money",
        edited(BANK, amount="NaN"),
        "not a canonical event: bank_transaction.amount: value_error",
    ),
    Poison(
        "float money",
        edited(POSTING, amount=945.1),
        "not a canonical event: posting.amount:",
    ),
    Poison(
        "money with three decimals",
        edited(BANK, amount="945.001"),
        "not a canonical event: bank_transaction.amount:",
    ),
    Poison(
        "money with a huge exponent",
        edited(POSTING, amount="1e999999999"),  # 1 GB of digits once serialised
        "not a canonical event: posting.amount:",
    ),
    Poison(
        "unknown field",
        edited(REMITTANCE, **{PATIENT: "member 987654321"}),
        "not a canonical event: remittance",
    ),
    Poison(
        "unknown nested field",
        edited(REMITTANCE, envelope={**REMITTANCE["envelope"], PATIENT: 1}),
        "not a canonical event: remittance.envelope",
    ),
    Poison(
        "huge payload (1 MB)",
        b'{"kind": "posting", "reason": "' + b"x" * (HUGE - 33) + b'"}',
        "not a canonical event: posting.event_id: missing",
    ),
    Poison("deeply nested JSON", nested(100_000), "not JSON"),
    Poison(
        "deep nesting inside an event",
        edited(REMITTANCE, source={"system": json.loads(nested(500))}),
        "not a canonical event: remittance.source.system: string_type",
    ),
]
# Findings of the fuzz campaign's report: a field name from the message ends up in the reason.
QUOTES_CONTENT: dict[str, str] = {}  # K1 (a reason naming an unknown field) is fixed
TOPIC = "poison.remittances"


def message(poison: Poison) -> KafkaMessage:
    """The poison as the consumer hands it over, read at partition 2, offset 41."""
    return KafkaSourceMessage(key=None, value=poison.value, topic=TOPIC, partition=2, offset=41)


# Open findings (see the fuzz campaign's report, with the fixes proposed there).
FINDINGS = {
    "K1": "the reason names a field that only the message has (possibly PHI)",
    "K2": "money as a float, with more than 2 decimals or an exponent is accepted as an event",
    "K3": "a dead letter for a message near the size limit does not fit the dead-letter topic, "
    "and the failed send stops the dataflow",
}


def cases(finding: Callable[[Poison], str | None]) -> list[Any]:
    """One pytest param per poison kind; a kind with an open finding is a strict xfail, so
    that the fix makes it fail until the mark is removed."""
    params = []
    for p in POISON:
        found = finding(p)
        reason = f"{found}: {FINDINGS.get(found or '')}"
        marks = [] if found is None else [pytest.mark.xfail(strict=True, reason=reason)]
        params.append(pytest.param(p, id=p.kind, marks=marks))
    return params


def test_the_table_covers_every_kind_once() -> None:
    assert len({p.kind for p in POISON}) == len(POISON) >= 25
    huge = next(p for p in POISON if p.kind.startswith("huge"))
    assert len(huge.value or b"") == HUGE  # it is what it says
    for base in (REMITTANCE, BANK, POSTING):  # the bases are valid events before the edits
        assert not isinstance(decode(message(Poison("valid", edited(base), ""))), DeadLetter)


@pytest.mark.parametrize("poison", cases(lambda p: p.finding))
def test_poison_is_dead_lettered_with_its_original_bytes(poison: Poison) -> None:
    letter = decode(message(poison))
    assert isinstance(letter, DeadLetter), f"accepted as a {type(letter).__name__}"
    assert letter.stage == "validate"
    assert letter.reason.startswith(poison.reason), letter.reason
    original = poison.value or b""  # a tombstone has no bytes: its payload is empty
    assert letter.original() == original
    record = letter.model_dump(mode="json")
    assert base64.b64decode(record["payload"], validate=True) == original
    assert record["source"] == {"system": "kafka", "file": TOPIC, "record": "2:41", "offset": 41}
    assert DeadLetter.model_validate(record) == letter


# What a reason may say: the class of problem and where, in the schema's own words.
_MODELS = (Remittance, BankTransaction, Posting, Claim, Adjustment, ProviderAdjustment)
_SCHEMA_NAMES = {name for model in (*_MODELS, Envelope, Source) for name in model.model_fields}
_SCHEMA_NAMES |= {"remittance", "bank_transaction", "posting", "message"}
_REASON = re.compile(r"not JSON|not a canonical event: (?P<where>[\w.]+): (?P<type>[a-z_]+)")


@pytest.mark.parametrize("poison", cases(lambda p: p.finding or QUOTES_CONTENT.get(p.kind)))
def test_poison_reason_names_the_problem_not_the_content(poison: Poison) -> None:
    letter = decode(message(poison))
    assert isinstance(letter, DeadLetter)
    shape = _REASON.fullmatch(letter.reason)
    assert shape is not None, letter.reason
    where = (shape.group("where") or "").split(".")
    assert all(part.isdigit() or part in _SCHEMA_NAMES for part in where if part), where
    assert "RAYMOND" not in letter.reason and "987654321" not in letter.reason


# -- on the real broker ---------------------------------------------------------------------

# Kinds the flow cannot dead-letter today (the report's finding K3): a dead letter carries its
# payload in base64, so one for a message near the broker's size limit is too large for the
# dead-letter topic, and the failed send stops the dataflow.
STOPS_THE_FLOW: dict[str, str] = {}  # K3 (a 1 MB message stopped the flow) is fixed
needs_servers = pytest.mark.skipif(not _servers_wanted(), reason="local servers not running")


def _produce_all(
    producer: Producer, sends: list[tuple[str, Poison]]
) -> dict[tuple[str, str], Poison]:
    """Produce and wait for the acknowledgements: ``(topic, "partition:offset")`` → poison."""
    placed: dict[tuple[str, str], Poison] = {}
    failures: list[str] = []

    def delivered(poison: Poison) -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(f"{poison.kind}: {err}")
            else:
                placed[(msg.topic() or "", f"{msg.partition()}:{msg.offset()}")] = poison

        return report

    for topic, poison in sends:
        producer.produce(topic, poison.value, on_delivery=delivered(poison))
        producer.poll(0)
    assert producer.flush(30) == 0 and not failures, failures
    return placed


@dataclass(frozen=True)
class FlowRun:
    placed: dict[tuple[str, str], Poison]  # where each poison message went
    letters: list[dict[str, Any]]  # what the dead-letter topic holds afterwards
    outputs: str  # the output topics' prefix
    embedded: Path  # the embedded run's outcomes on the same good data


def run_flow_with(poison: list[Poison], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FlowRun:
    """Each poison message on each input topic, half before the good data and half after;
    then the Kafka dataflow over the three topics to their end."""
    data = tmp_path / "data"
    generate_dataset(data, hospitals=1, payers=2, days=3, seed=11)
    config_path = str(data / "refdata.toml")
    refdata, settings = load_config(config_path)
    config = FlowConfig(refdata=refdata, settings=settings)
    embedded = tmp_path / "embedded"
    reconcile_files(
        expand_paths([data / "remittances", data / "bank", data / "postings"]), embedded, config
    )
    inputs = Topics(f"poison-in-{uuid.uuid4().hex[:10]}")
    outputs = f"poison-out-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("REMITFLOW_TOPIC_PREFIX", inputs.prefix)
    monkeypatch.setenv("REMITFLOW_KAFKA_BOOTSTRAP", BOOTSTRAP)
    ensure_topics(BOOTSTRAP, inputs.inputs, partitions=4)
    sends = [(topic, p) for p in poison for topic in inputs.inputs]
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "message.max.bytes": 2 * HUGE})
    placed = _produce_all(producer, sends[::2])
    for kind, folder in (("remittance", "remittances"), ("bank", "bank"), ("posting", "postings")):
        assert main(["ingest", "--kind", kind, str(data / folder), "--config", config_path]) == 0
    placed |= _produce_all(producer, sends[1::2])
    assert len(placed) == len(sends)

    sink = KafkaRecordSink(BOOTSTRAP, outputs)
    ensure_topics(BOOTSTRAP, sink.topics(), partitions=3)
    flow = Dataflow("poison-test")
    parsed = kafka_parsed(flow, bootstrap=BOOTSTRAP, topics=list(inputs.inputs), tail=False)
    reconcile_stream(parsed, sink, config)
    run_main(flow)  # type: ignore[no-untyped-call]
    letters = [orjson.loads(v) for _, v in read_topic(f"{outputs}.dead-letter")]
    return FlowRun(placed, letters, outputs, embedded)


def check_dead_letters(run: FlowRun) -> tuple[list[str], list[str]]:
    """Every poison message dead-lettered once, as sent; returns (lost, duplicated) kinds."""
    seen = Counter((d["source"]["file"], d["source"]["record"]) for d in run.letters)
    lost = [run.placed[key].kind for key in run.placed if seen[key] == 0]
    twice = [run.placed[key].kind for key in run.placed if seen[key] > 1]
    assert all(key in run.placed for key in seen), "a dead letter for no poison message"
    for letter in run.letters:
        sent = run.placed[(letter["source"]["file"], letter["source"]["record"])]
        assert letter["stage"] == "validate" and letter["reason"].startswith(sent.reason)
        assert base64.b64decode(letter["payload"]) == (sent.value or b""), sent.kind
    return lost, twice


def check_good_outcomes(run: FlowRun) -> None:
    """The good messages around the poison got the outcomes an embedded run gives."""
    for stem, topic in (("matched", "matched"), ("unmatched", "unmatched")):
        expected = read(run.embedded / f"{stem}.jsonl")
        assert expected, stem
        got = [orjson.loads(v) for _, v in read_topic(f"{run.outputs}.{topic}")]
        assert view(got) == view(expected), stem


@pytest.mark.services
@needs_servers
@pytest.mark.usefixtures("capsysbinary")  # ingest's reports stay out of the output
def test_every_poison_message_is_dead_lettered_once_and_the_flow_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = [p for p in POISON if p.finding is None and p.kind not in STOPS_THE_FLOW]
    run = run_flow_with(poison, tmp_path, monkeypatch)
    lost, twice = check_dead_letters(run)
    skipped = len(POISON) - len(poison)
    print(
        f"\npoison: {len(poison)} kinds ({len(run.placed)} messages on 3 input topics), "
        f"{len(run.letters)} dead-lettered, {len(lost)} lost, {len(twice)} duplicated "
        f"({skipped} kinds left out: open findings)"
    )
    assert not lost and not twice, (lost, twice)
    check_good_outcomes(run)


@pytest.mark.services
@needs_servers
@pytest.mark.usefixtures("capsysbinary")
def test_a_message_near_the_size_limit_is_dead_lettered_and_the_flow_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = [p for p in POISON if p.kind.startswith("huge payload")]
    run = run_flow_with(poison, tmp_path, monkeypatch)
    assert len(run.placed) == 3
    assert check_dead_letters(run) == ([], [])
    check_good_outcomes(run)
