"""Replay and record helpers: routing, ordering, pacing and time parsing."""

from __future__ import annotations

import pytest

from tollmon.errors import InvalidEventError
from tollmon.eventfiles import RawLine
from tollmon.record import RecordError, parse_time
from tollmon.replay import load_messages, pacing_delay, route


def line(raw: bytes, number: int = 1) -> RawLine:
    return RawLine("f.jsonl", number, raw)


def test_messages_are_routed_by_type_and_keyed_by_plaza() -> None:
    raw = b'{"type":"lane_transaction","plaza_id":"URC-E01","ts":5,"event_id":"a"}'
    loaded = load_messages([line(raw)])
    [message] = loaded.messages
    assert (message.topic, message.key, message.ts, message.value) == (
        "toll.lane.transactions",
        b"URC-E01",
        5,
        raw,
    )


def test_invalid_but_routable_messages_are_still_sent_for_the_worker_to_reject() -> None:
    assert route(b'{"type":"weigh_measurement","plaza_id":"P","ts":"soon"}') == (
        "weigh_measurement",
        "P",
        0,
    )


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1,2]", b'{"type":"parking","plaza_id":"P","ts":1}', b'{"ts":1}'],
    ids=["not-json", "not-object", "unknown-type", "no-type"],
)
def test_unroutable_lines_are_counted_not_sent(raw: bytes) -> None:
    loaded = load_messages([line(raw)])
    assert (loaded.messages, loaded.skipped) == ([], 1)


def test_lines_the_adapter_rejected_are_skipped() -> None:
    rejected = RawLine("x.csv", 2, b"{}", InvalidEventError("missing_field", "PASSID"))
    assert load_messages([rejected]).skipped == 1


def test_messages_are_sent_in_event_time_order_keeping_file_order_for_ties() -> None:
    raws = [
        b'{"type":"lane_status","plaza_id":"P","ts":20,"event_id":"late"}',
        b'{"type":"lane_status","plaza_id":"P","ts":10,"event_id":"first"}',
        b'{"type":"lane_status","plaza_id":"P","ts":10,"event_id":"second"}',
    ]
    loaded = load_messages([line(r, n) for n, r in enumerate(raws, start=1)])
    assert [m.value for m in loaded.messages] == [raws[1], raws[2], raws[0]]


@pytest.mark.parametrize(
    ("speed", "elapsed_s", "delay_s"),
    [(1.0, 0.0, 10.0), (10.0, 0.0, 1.0), (10.0, 1.5, -0.5)],
    ids=["real-time", "ten-times", "behind-schedule"],
)
def test_pacing_keeps_recorded_gaps_scaled_by_speed(
    speed: float, elapsed_s: float, delay_s: float
) -> None:
    assert pacing_delay(0, 10_000, 100.0, 100.0 + elapsed_s, speed) == pytest.approx(delay_s)


@pytest.mark.parametrize(
    ("text", "epoch_ms"),
    [
        ("1714521600000", 1_714_521_600_000),
        ("2024-05-01T08:00:00+08:00", 1_714_521_600_000),
        ("2024-05-01T00:00:00Z", 1_714_521_600_000),
    ],
)
def test_record_times_are_epoch_ms_or_iso_with_offset(text: str, epoch_ms: int) -> None:
    assert parse_time(text) == epoch_ms


def test_record_refuses_times_without_an_offset() -> None:
    with pytest.raises(RecordError, match="offset"):
        parse_time("2024-05-01T08:00:00")
