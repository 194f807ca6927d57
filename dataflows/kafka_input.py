"""Continuous mode's input: canonical events from the Kafka input topics, validated.

Messages arrive as JSON written by ``remitflow ingest`` (or by anything else: this is a trust
boundary). Each is validated into its canonical event; a message that is not JSON, does not fit
the schema, or names an unknown kind becomes a dead letter (stage ``validate``) carrying the
original bytes and its topic/partition/offset, as do the consumer's own errors (bytewax's
Kafka connector splits them into a separate stream). Nothing is dropped and the dataflow keeps
running.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream
from confluent_kafka import OFFSET_BEGINNING
from confluent_kafka import KafkaError as ConfluentError
from pydantic import ValidationError

from remitflow.events import Source, event_from_json
from remitflow.metrics import STORE_RETRIES
from remitflow.records import DeadLetter
from remitflow.stores import kafka_config
from sources.base import Parsed
from sources.kafka import KafkaInput

Message = KafkaSourceMessage[bytes | None, bytes | None]
log = logging.getLogger("remitflow.kafka")


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
        loc = list(first["loc"])
        if first["type"] == "extra_forbidden":  # the field's name is the message's, not the
            loc = loc[:-1]  # schema's: it may be anything, PHI too; say where it was instead
        where = ".".join(str(x) for x in loc) or "message"
        reason = f"not a canonical event: {where}: {first['type']}"
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        reason = "not JSON"
    log.debug("message dead-lettered: %s", reason, extra={"topic": msg.topic, "stage": "validate"})
    return DeadLetter.of("validate", reason, _origin(msg), payload)


# Errors about the connection, not about a message: the client reconnects by itself and the
# partition resumes where it was, so they are logged and counted, never dead letters.
_TRANSIENT = {
    ConfluentError._TRANSPORT,
    ConfluentError._ALL_BROKERS_DOWN,
    ConfluentError._RESOLVE,
    ConfluentError._TIMED_OUT,
    ConfluentError.NETWORK_EXCEPTION,
}


def decode_or_error(item: Message | KafkaError[Any, Any]) -> Parsed | None:
    """A message error (bytewax passes them in the stream) is a dead letter too; a broker
    that went away is only waited for."""
    if isinstance(item, KafkaError):
        err = item.err
        if not err.fatal() and (err.code() in _TRANSIENT or err.retriable()):
            STORE_RETRIES.labels(store="kafka").inc()
            log.warning("Kafka consumer: %s; the client reconnects", err.str())
            return None
        return DeadLetter.of(
            "validate",
            f"consumer error: {err.str()}",
            _origin(item.msg),
            item.msg.value or b"",
        )
    return decode(item)


def kafka_parsed(
    flow: Dataflow,
    *,
    bootstrap: str,
    topics: list[str],
    tail: bool,
    starting_offset: int = OFFSET_BEGINNING,
    starts: Mapping[str, int] | None = None,
) -> Stream[Parsed]:
    """Parsed items from ``topics``; with ``tail=False`` the stream ends at the topics' end.

    A partition with no recovery snapshot starts at ``starts[<partition>-<topic>]`` when
    given, else at ``starting_offset``; SIGTERM ends every partition (:mod:`remitflow.shutdown`).
    """
    source = KafkaInput(
        bootstrap.split(","),
        topics,
        tail,
        starting_offset,
        # Offsets live in Bytewax's recovery store, not in a consumer group. One that is no
        # longer in the log (retention ran while the run was down) resumes at the oldest
        # message kept, never silently at the end (librdkafka's default).
        {
            **kafka_config(bootstrap),  # the deployment's security settings
            "auto.offset.reset": "earliest",
        },
        raise_on_errors=False,  # consumer errors become dead letters instead
        starts=starts,
    )
    messages = op.input("kafka_in", flow, source)
    return op.filter_map("decode", messages, decode_or_error)
