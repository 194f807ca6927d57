"""Continuous mode's input: canonical events from the Kafka input topics, validated.

Messages arrive as JSON written by ``remitflow ingest`` (or by anything else: this is a trust
boundary). Each is validated into its canonical event; a message that is not JSON, does not fit
the schema, or names an unknown kind becomes a dead letter (stage ``validate``) carrying the
original bytes and its topic/partition/offset, as do the consumer's own errors (bytewax's
Kafka connector splits them into a separate stream). Nothing is dropped and the dataflow keeps
running.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow, Stream
from confluent_kafka import OFFSET_BEGINNING
from pydantic import ValidationError

from remitflow.events import Source, event_from_json
from remitflow.records import DeadLetter
from sources.base import Parsed

Message = KafkaSourceMessage[bytes | None, bytes | None]


def _origin(msg: Message) -> Source:
    return Source(
        system="kafka",
        file=msg.topic,
        record=f"{msg.partition}:{msg.offset}",
        offset=msg.offset,
    )


def decode(msg: Message) -> Parsed:
    """One input message → its canonical event, or a dead letter saying why not."""
    payload = msg.value or b""
    try:
        return event_from_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "message"
        reason = f"not a canonical event: {where}: {first['type']}"
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        reason = "not JSON"
    return DeadLetter.of("validate", reason, _origin(msg), payload)


def _consumer_error(err: KafkaError[Any, Any]) -> Parsed:
    return DeadLetter.of(
        "validate", f"consumer error: {err.err.str()}", _origin(err.msg), err.msg.value or b""
    )


def kafka_parsed(
    flow: Dataflow,
    *,
    bootstrap: str,
    topics: list[str],
    tail: bool,
    starting_offset: int = OFFSET_BEGINNING,
    group: str = "remitflow",
) -> Stream[Parsed]:
    """Parsed items from ``topics``; with ``tail=False`` the stream ends at the topics' end."""
    split = kop.input(
        "kafka_in",
        flow,
        brokers=bootstrap.split(","),
        topics=topics,
        tail=tail,
        starting_offset=starting_offset,
        add_config={"group.id": group},
    )
    oks = op.map("decode", split.oks, decode)
    errs = op.map("consumer_errors", split.errs, _consumer_error)
    return op.merge("inputs", oks, errs)
