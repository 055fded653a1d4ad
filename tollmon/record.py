"""Dump the messages topics received in a time range to JSONL (optionally gzip) or Parquet.

The range is on the broker's message timestamps (when each message was written), which
`offsets_for_times` can seek to; each partition is read from there up to the first
message past the end of the range, or up to its end offset when the dump started, so
the dump finishes even on a topic that keeps receiving messages.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from kafka import KafkaConsumer, TopicPartition

from tollmon.errors import TollmonError
from tollmon.kafka_security import KafkaSecurity

POLL_MS = 500


class RecordError(TollmonError):
    """A dump that cannot be made as asked (unknown topic, bad time range)."""


def parse_time(text: str) -> int:
    """Epoch ms from epoch milliseconds or an ISO 8601 time with its offset."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RecordError(f"{text!r} is neither epoch ms nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise RecordError(f"{text!r} has no UTC offset (e.g. +08:00 or Z): ambiguous")
    return int(moment.timestamp() * 1000)


def read_range(
    bootstrap: str,
    topics: Sequence[str],
    start_ms: int,
    end_ms: int,
    security: KafkaSecurity | None = None,
) -> Iterator[tuple[str, bytes]]:
    """(topic, value) of every message written in [start_ms, end_ms], partition by partition."""
    if end_ms < start_ms:
        raise RecordError("--to is before --from")
    options = security.kafka_python_options() if security is not None else {}
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **options
    )
    try:
        partitions = _partitions(consumer, topics)
        starts = consumer.offsets_for_times(dict.fromkeys(partitions, start_ms))
        ends = consumer.end_offsets(partitions)
        todo = {
            tp: (found.offset, ends[tp])
            for tp, found in starts.items()
            if found is not None and found.offset < ends[tp]
        }
        consumer.assign(list(todo))
        for tp, (offset, _) in todo.items():
            consumer.seek(tp, offset)
        yield from _drain(consumer, todo, end_ms)
    finally:
        consumer.close()


def _partitions(consumer: KafkaConsumer, topics: Sequence[str]) -> list[Any]:
    partitions: list[Any] = []
    for topic in topics:
        ids = consumer.partitions_for_topic(topic)
        if not ids:
            raise RecordError(f"topic {topic!r} does not exist")
        partitions += [TopicPartition(topic, p) for p in sorted(ids)]
    return partitions


def _drain(
    consumer: KafkaConsumer, todo: dict[Any, tuple[int, int]], end_ms: int
) -> Iterator[tuple[str, bytes]]:
    open_partitions = set(todo)
    while open_partitions:
        batches = consumer.poll(timeout_ms=POLL_MS, max_records=10_000)
        for tp, records in batches.items():
            if tp not in open_partitions:
                continue
            for message in records:
                if message.timestamp > end_ms or message.offset >= todo[tp][1]:
                    open_partitions.discard(tp)
                    consumer.pause(tp)
                    break
                yield tp.topic, message.value
                if message.offset + 1 >= todo[tp][1]:
                    open_partitions.discard(tp)
                    consumer.pause(tp)
                    break


def record_topics(
    bootstrap: str,
    topics: Sequence[str],
    start_ms: int,
    end_ms: int,
    out: Path,
    security: KafkaSecurity | None = None,
) -> int:
    """Write the range's messages to `out` (format from its suffix); returns the count."""
    messages = read_range(bootstrap, topics, start_ms, end_ms, security)
    if out.suffix.lower() in (".parquet", ".pq"):
        return write_parquet((value for _, value in messages), out)
    opener = gzip.open if out.suffix.lower() == ".gz" else open
    count = 0
    with opener(out, "wb") as stream:
        for _, value in messages:
            stream.write(value.rstrip(b"\n") + b"\n")
            count += 1
    return count


def write_parquet(values: Iterator[bytes], out: Path) -> int:
    """Messages as rows, one column per top-level field; nested objects kept as JSON text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for value in values:
        try:
            decoded = msgspec.json.decode(value)
        except msgspec.DecodeError:
            decoded = None
        if not isinstance(decoded, dict):
            # Not an object: kept whole, so nothing recorded is lost.
            decoded = {"raw": value.decode("utf-8", errors="replace")}
        rows.append(
            {
                k: msgspec.json.encode(v).decode() if isinstance(v, dict) else v
                for k, v in decoded.items()
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), out)
    return len(rows)
