"""The error policy: valid events pass and are counted; the rest are dead-lettered."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.test_validation import HOUR_MS, NOW_MS, REFERENCE, raw, transaction
from tollmon.events import LaneTransaction
from tollmon.ingest import Covered, DeadLetter, Ingest, Source
from tollmon.metrics import Metrics
from tollmon.network import load_network
from tollmon.validation import EventValidator, validator_for

NETWORK = load_network("config/network.yaml")


def network_tx(**changes: Any) -> dict[str, Any]:
    """A transaction at a plaza and lane of the sample network."""
    return transaction(plaza_id="URC-E01", lane_id="01", **changes)


SOURCE = Source("toll.lane.transactions", 2, 41, b"P1")


class FakeClock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def make_ingest(metrics: Metrics, **kwargs: Any) -> Ingest:
    validator = EventValidator(REFERENCE, horizon_ms=72 * HOUR_MS)
    return Ingest(validator, metrics, FakeClock(NOW_MS / 1000), **kwargs)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_valid_event_passes_and_is_counted_by_type(metrics: Metrics) -> None:
    outcome = make_ingest(metrics).accept(raw(transaction()), SOURCE)
    assert isinstance(outcome, LaneTransaction)
    assert sample(metrics, "tollmon_events_total", type="lane_transaction") == 1


def test_an_invalid_message_becomes_a_dead_letter_with_its_original_bytes(
    metrics: Metrics,
) -> None:
    payload = b"\x00not json"
    outcome = make_ingest(metrics).accept(payload, SOURCE)
    assert isinstance(outcome, DeadLetter)
    assert outcome.value == payload
    assert outcome.key == b"P1"
    headers = dict(outcome.headers)
    assert headers["tollmon.reason"] == b"not_json"
    assert headers["tollmon.source.topic"] == b"toll.lane.transactions"
    assert headers["tollmon.source.partition"] == b"2"
    assert headers["tollmon.source.offset"] == b"41"
    assert sample(metrics, "tollmon_events_invalid_total", reason="not_json") == 1


def test_a_tombstone_without_value_is_dead_lettered_not_crashing(metrics: Metrics) -> None:
    outcome = make_ingest(metrics).accept(None, SOURCE)
    assert isinstance(outcome, DeadLetter)
    assert outcome.value == b""


def test_a_duplicate_event_id_is_processed_once(metrics: Metrics) -> None:
    ingest = make_ingest(metrics)
    first = ingest.accept(raw(transaction()), SOURCE)
    second = ingest.accept(raw(transaction(lane_id="02")), SOURCE)
    assert isinstance(first, LaneTransaction)
    assert isinstance(second, DeadLetter)
    assert second.reason == "duplicate"
    assert sample(metrics, "tollmon_events_total", type="lane_transaction") == 1


def test_after_a_take_over_what_a_restored_plaza_holds_is_remembered_not_counted_again(
    metrics: Metrics,
) -> None:
    # SOURCE is offset 41; the restored state of the event's plaza holds offsets up to 41.
    ingest = make_ingest(metrics)
    plaza = transaction()["plaza_id"]
    covered = ingest.accept_restored(raw(transaction(event_id="old")), SOURCE, {plaza: 41})
    assert covered == Covered(plaza)
    assert sample(metrics, "tollmon_events_total", type="lane_transaction") == 0
    again = ingest.accept(raw(transaction(event_id="old")), SOURCE)
    assert isinstance(again, DeadLetter)
    assert again.reason == "duplicate"
    # Past what the state holds, or at a plaza not restored, the event is new here.
    later = Source(SOURCE.topic, SOURCE.partition, 42, SOURCE.key)
    fresh = ingest.accept_restored(raw(transaction(event_id="new")), later, {plaza: 41})
    elsewhere = ingest.accept_restored(raw(transaction(event_id="other")), SOURCE, {"X": 99})
    assert isinstance(fresh, LaneTransaction)
    assert isinstance(elsewhere, LaneTransaction)
    assert sample(metrics, "tollmon_events_total", type="lane_transaction") == 2


def test_dedup_memory_is_bounded(metrics: Metrics) -> None:
    ingest = make_ingest(metrics, dedup_capacity=2)
    for event_id in ("a", "b", "c"):
        assert not isinstance(
            ingest.accept(raw(transaction(event_id=event_id)), SOURCE), DeadLetter
        )
    # "a" was forgotten to keep memory bounded; "c" is still remembered.
    assert not isinstance(ingest.accept(raw(transaction(event_id="a")), SOURCE), DeadLetter)
    assert isinstance(ingest.accept(raw(transaction(event_id="c")), SOURCE), DeadLetter)


def test_events_later_than_the_allowed_lateness_are_counted_late_but_kept(
    metrics: Metrics,
) -> None:
    ingest = make_ingest(metrics, allowed_lateness_ms=30_000)
    ingest.accept(raw(transaction(event_id="new", ts=NOW_MS)), SOURCE)
    within = ingest.accept(raw(transaction(event_id="ok", ts=NOW_MS - 20_000)), SOURCE)
    late = ingest.accept(raw(transaction(event_id="late", ts=NOW_MS - 60_000)), SOURCE)
    assert isinstance(within, LaneTransaction)
    assert isinstance(late, LaneTransaction)
    assert sample(metrics, "tollmon_events_late_total", type="lane_transaction") == 1
    assert sample(metrics, "tollmon_events_total", type="lane_transaction") == 3


def test_lateness_is_judged_per_partition(metrics: Metrics) -> None:
    ingest = make_ingest(metrics, allowed_lateness_ms=30_000)
    ingest.accept(raw(transaction(event_id="p2", ts=NOW_MS)), SOURCE)
    other = Source("toll.lane.transactions", 3, 0, b"P2")
    ingest.accept(raw(transaction(event_id="p3", ts=NOW_MS - 60_000)), other)
    assert sample(metrics, "tollmon_events_late_total", type="lane_transaction") == 0


def test_replay_judges_time_against_the_input_watermark_not_the_wall_clock(
    metrics: Metrics,
) -> None:
    ingest = make_ingest(metrics, time_mode="replay")
    last_year = NOW_MS - 365 * 24 * HOUR_MS
    first = ingest.accept(raw(transaction(event_id="a", ts=last_year)), SOURCE)
    nxt = ingest.accept(raw(transaction(event_id="b", ts=last_year + 1_000)), SOURCE)
    future = ingest.accept(raw(transaction(event_id="c", ts=last_year + HOUR_MS)), SOURCE)
    assert isinstance(first, LaneTransaction)
    assert isinstance(nxt, LaneTransaction)
    assert isinstance(future, DeadLetter)
    assert future.reason == "future_ts"


def test_live_mode_rejects_history_beyond_the_horizon(metrics: Metrics) -> None:
    last_year = NOW_MS - 365 * 24 * HOUR_MS
    outcome = make_ingest(metrics).accept(raw(transaction(ts=last_year)), SOURCE)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason == "too_old"


def test_event_lag_is_observed_in_seconds(metrics: Metrics) -> None:
    make_ingest(metrics).accept(raw(transaction(ts=NOW_MS - 2_000)), SOURCE)
    assert sample(metrics, "tollmon_event_lag_seconds_sum") == pytest.approx(2.0)
    assert sample(metrics, "tollmon_event_lag_seconds_count") == 1


def test_the_dead_letter_detail_is_human_readable(metrics: Metrics) -> None:
    outcome = make_ingest(metrics).accept(json.dumps({"type": "x"}).encode(), SOURCE)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason == "unknown_type"
    assert "type" in outcome.detail


def test_replay_accepts_traffic_after_a_quiet_night(metrics: Metrics) -> None:
    validator = validator_for(NETWORK, horizon_ms=72 * HOUR_MS, time_mode="replay")
    ingest = Ingest(validator, metrics, FakeClock(NOW_MS / 1000), time_mode="replay")
    evening = NOW_MS - 365 * 24 * HOUR_MS
    ingest.accept(raw(network_tx(event_id="a", ts=evening)), SOURCE)
    morning = ingest.accept(raw(network_tx(event_id="b", ts=evening + 8 * HOUR_MS)), SOURCE)
    next_year = ingest.accept(
        raw(network_tx(event_id="c", ts=evening + 400 * 24 * HOUR_MS)), SOURCE
    )
    assert isinstance(morning, LaneTransaction)
    assert isinstance(next_year, DeadLetter)
    assert next_year.reason == "future_ts"
