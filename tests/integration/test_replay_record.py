"""Replay into a prefix, then record it back: the same messages come out, byte for byte."""

from __future__ import annotations

import gzip
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.integration.conftest import REPO, Stack, create_topics
from tollmon.eventfiles import read_event_files
from tollmon.events import encode
from tollmon.network import load_network
from tollmon.publish import TOPIC_BY_TYPE, write_jsonl
from tollmon.record import record_topics
from tollmon.replay import load_messages, replay_messages
from tollmon.simulate import TrafficProfile, generate

pytestmark = pytest.mark.integration


def test_recorded_topics_hold_exactly_what_was_replayed(stack: Stack, tmp_path: Path) -> None:
    network = load_network(REPO / "config" / "network.yaml")
    events = list(generate(network, 1_714_521_600_000, 300, TrafficProfile(), plazas=["URC-E01"]))
    source = tmp_path / "day.jsonl"
    write_jsonl(events, source)
    prefix = f"r{uuid.uuid4().hex[:8]}."
    topics = [prefix + t for t in TOPIC_BY_TYPE.values()]
    create_topics(stack.bootstrap, topics)

    started_ms = int(time.time() * 1000)
    stats = replay_messages(load_messages(read_event_files([source])), stack.bootstrap, prefix)
    assert stats.sent == len(events)
    ended_ms = int(time.time() * 1000) + 1000

    dump = tmp_path / "dump.jsonl.gz"
    assert record_topics(stack.bootstrap, topics, started_ms, ended_ms, dump) == len(events)
    assert sorted(gzip.decompress(dump.read_bytes()).splitlines()) == sorted(
        encode(e) for e in events
    )
    table = tmp_path / "dump.parquet"
    assert record_topics(stack.bootstrap, topics, started_ms, ended_ms, table) == len(events)
    assert sorted(pq.read_table(table).column("event_id").to_pylist()) == sorted(
        e.event_id for e in events
    )


def test_a_time_range_before_the_replay_records_nothing(stack: Stack, tmp_path: Path) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}."
    topic = prefix + "toll.lane.status"
    create_topics(stack.bootstrap, [topic])
    raw = b'{"type":"lane_status","event_id":"s1","ts":1,"plaza_id":"URC-E01"}\n'
    (tmp_path / "one.jsonl").write_bytes(raw)
    before_ms = int(time.time() * 1000) - 60_000
    replay_messages(
        load_messages(read_event_files([tmp_path / "one.jsonl"])), stack.bootstrap, prefix
    )
    assert (
        record_topics(stack.bootstrap, [topic], before_ms - 1000, before_ms, tmp_path / "x.jsonl")
        == 0
    )
