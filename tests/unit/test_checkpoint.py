"""Detector checkpoints: a restored pipeline carries on as if it had never stopped."""

from __future__ import annotations

import os
import pickle
import zlib
from collections import Counter
from typing import TypeVar

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_ingest import SOURCE, make_ingest
from tests.unit.test_validation import raw, transaction
from tollmon.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointPart,
    CheckpointPolicy,
    PartitionCheckpoint,
    PartitionProgress,
    PlazaCheckpoint,
    checkpoint_parts,
    code_fingerprint,
    decode_checkpoint,
    decode_part,
    dumps,
    encode_checkpoint,
    loads,
    newest_complete,
)
from tollmon.events import Event, LaneTransaction
from tollmon.ingest import DeadLetter, Source
from tollmon.metrics import Metrics
from tollmon.network import Network
from tollmon.pipeline import Outputs, Pipeline, PipelineConfig, PlazaState
from tollmon.simulate import Surge, TrafficProfile, generate

T0_MS = 1_764_300_000_000
PLAZA = "URC-E02"
# Replay ordering (nothing goes idle), so outputs depend only on the events fed.
REPLAY = PipelineConfig(max_hold_s=600.0)


@pytest.fixture(scope="module")
def surge_events(network: Network) -> list[Event]:
    """Forty minutes at one plaza: a surge that congests it and a failing ETC antenna."""
    profile = TrafficProfile(
        vehicles_per_hour=1200,
        surges=(Surge(PLAZA, factor=3.0, start_s=600, end_s=1500),),
        etc_failure_by_lane={(PLAZA, "entry", "01"): 0.25},
    )
    return list(generate(network, T0_MS, 2400, profile, seed=5, plazas=[PLAZA]))


def feed(pipeline: Pipeline, events: list[Event]) -> Outputs:
    total = Outputs()
    for event in events:
        out = pipeline.process(event, now_s=0.0)
        total.estimates += out.estimates
        total.alerts += out.alerts
    return total


def finished(pipeline: Pipeline, events: list[Event]) -> Outputs:
    total = feed(pipeline, events)
    last = pipeline.finish()
    total.estimates += last.estimates
    total.alerts += last.alerts
    return total


@pytest.mark.parametrize("cut_ratio", [0.1, 0.45, 0.7], ids=["before", "during", "after-surge"])
def test_a_restored_pipeline_continues_exactly_as_an_uninterrupted_one(
    network: Network, surge_events: list[Event], cut_ratio: float
) -> None:
    cut = int(len(surge_events) * cut_ratio)
    uninterrupted = Pipeline(network, REPLAY)
    feed(uninterrupted, surge_events[:cut])
    expected = finished(uninterrupted, surge_events[cut:])

    killed = Pipeline(network, REPLAY)
    feed(killed, surge_events[:cut])
    restarted = Pipeline(network, REPLAY)
    assert restarted.restore(killed.snapshot([PLAZA]), now_s=0.0) == [PLAZA]
    recovered = finished(restarted, surge_events[cut:])

    assert recovered.estimates == expected.estimates
    assert recovered.alerts == expected.alerts
    assert expected.alerts


def test_a_pipeline_restored_in_a_spillback_measured_from_upstream_continues_exactly(
    network: Network,
) -> None:
    # URC-E01's entry has a second loop farther up (config/network.yaml): the state behind
    # the near detector (the far count, its calibration, both spillback episodes) shares the
    # estimator's curves, and must come back sharing them.
    plaza = "URC-E01"
    profile = TrafficProfile(
        vehicles_per_hour=1200, surges=(Surge(plaza, factor=4.0, start_s=600, end_s=1500),)
    )
    events = list(generate(network, T0_MS, 2400, profile, seed=5, plazas=[plaza]))
    # Cut 800 s into the surge, while the queue stands past the near detector (from 1290 s).
    cut = next(i for i, e in enumerate(events) if e.ts >= T0_MS + 1_400_000)
    uninterrupted = Pipeline(network, REPLAY)
    before = feed(uninterrupted, events[:cut])
    expected = finished(uninterrupted, events[cut:])

    killed = Pipeline(network, REPLAY)
    feed(killed, events[:cut])
    restarted = Pipeline(network, REPLAY)
    restarted.restore(killed.snapshot([plaza]), now_s=0.0)
    recovered = finished(restarted, events[cut:])

    assert recovered.estimates == expected.estimates
    assert recovered.alerts == expected.alerts
    entry = [e for e in before.estimates if e.direction == "entry"]
    assert entry[-1].spillback
    assert any(a.evidence.get("hidden_queue_measured") for a in before.alerts)


def test_the_scenario_congests_the_plaza_and_degrades_an_etc_lane(
    network: Network, surge_events: list[Event]
) -> None:
    alerts = finished(Pipeline(network, REPLAY), surge_events).alerts
    assert {("QUEUE_CONGESTION", "firing"), ("QUEUE_CONGESTION", "resolved")} <= {
        (a.kind, a.status) for a in alerts
    }
    assert "ETC_LANE_DEGRADED" in {a.kind for a in alerts}


def test_without_the_checkpoint_a_restarted_pipeline_diverges(
    network: Network, surge_events: list[Event]
) -> None:
    """The round trip above is not trivially true: the state carried matters."""
    cut = int(len(surge_events) * 0.45)
    uninterrupted = Pipeline(network, REPLAY)
    feed(uninterrupted, surge_events[:cut])
    expected = finished(uninterrupted, surge_events[cut:])
    from_empty = finished(Pipeline(network, REPLAY), surge_events[cut:])
    assert {a.alert_id for a in from_empty.alerts} != {a.alert_id for a in expected.alerts}


def test_a_snapshot_holds_only_the_plazas_asked_for(
    network: Network, surge_events: list[Event]
) -> None:
    pipeline = Pipeline(network, REPLAY)
    feed(pipeline, surge_events[:500])
    assert set(loads(pipeline.snapshot([PLAZA, "URC-E01", "no-such-plaza"]), PlazaState)) == {
        PLAZA,
        "URC-E01",
    }


def test_a_plaza_whose_configuration_changed_starts_empty(
    network: Network, surge_events: list[Event]
) -> None:
    pipeline = Pipeline(network, REPLAY)
    feed(pipeline, surge_events[:500])
    other = network.model_copy(update={"plazas": tuple(p for p in network.plazas if p.id != PLAZA)})
    assert Pipeline(other, REPLAY).restore(pipeline.snapshot([PLAZA]), now_s=0.0) == []


def test_a_restore_gives_buffered_feeds_a_fresh_grace_period(
    network: Network, surge_events: list[Event]
) -> None:
    """Processing time restarts: held events wait again instead of being forced out."""
    live = PipelineConfig(idle_after_s=10.0, max_hold_s=30.0)
    pipeline = Pipeline(network, live)
    # Transactions only: the plaza's detector feed is awaited, so they stay buffered.
    for event in [e for e in surge_events[:400] if isinstance(e, LaneTransaction)]:
        pipeline.process(event, now_s=100.0)
    snapshot = pipeline.snapshot([PLAZA])
    assert not pipeline.tick(now_s=100.5)  # held: the detector feed is still awaited

    restarted = Pipeline(network, live)
    restarted.restore(snapshot, now_s=5_000.0)
    assert not restarted.tick(now_s=5_001.0)
    assert restarted.tick(now_s=5_000.0 + live.idle_after_s + 1).estimates


def test_a_restart_by_itself_raises_no_data_gap(
    network: Network, surge_events: list[Event]
) -> None:
    live = PipelineConfig(idle_after_s=10.0, max_hold_s=30.0)
    pipeline = Pipeline(network, live)
    for event in surge_events[:2000]:
        pipeline.process(event, now_s=event.ts / 1000)
    restarted = Pipeline(network, live)
    restarted.restore(pipeline.snapshot([PLAZA]), now_s=surge_events[2000].ts / 1000 + 3600)
    later = surge_events[2000].ts / 1000 + 3600 + 1200
    assert not [a for a in restarted.tick(now_s=later).alerts if a.kind == "DATA_GAP"]


class _RunsAShell:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


@pytest.mark.parametrize(
    "foreign",
    [_RunsAShell(), Counter(a=1), generate],
    ids=["a-callable-reduce", "a-standard-class-not-listed", "a-project-function"],
)
def test_a_checkpoint_with_foreign_content_is_refused(foreign: object) -> None:
    blob = code_fingerprint() + zlib.compress(pickle.dumps({PLAZA: foreign}))
    with pytest.raises(CheckpointError, match="may not contain"):
        loads(blob, PlazaState)


def test_a_checkpoint_of_another_shape_is_refused() -> None:
    with pytest.raises(CheckpointError):
        loads(code_fingerprint() + zlib.compress(pickle.dumps({PLAZA: [1, 2]})), PlazaState)
    with pytest.raises(CheckpointError):
        loads(code_fingerprint() + b"not a checkpoint", PlazaState)


def test_state_saved_by_other_detector_code_is_refused(
    network: Network, surge_events: list[Event]
) -> None:
    """After an upgrade or a rollback the worker starts cold instead of crashing."""
    pipeline = Pipeline(network, REPLAY)
    feed(pipeline, surge_events[:500])
    snapshot = pipeline.snapshot([PLAZA])
    other_code = bytes(b ^ 0xFF for b in snapshot[:8]) + snapshot[8:]
    with pytest.raises(CheckpointError, match="other detector code"):
        Pipeline(network, REPLAY).restore(other_code, now_s=0.0)


T = TypeVar("T")


def without_attribute(obj: T, name: str) -> T:
    """`obj` as unpickled from older code that lacked `name` (pickle's own BUILD step)."""
    state = dict(obj.__getstate__())  # type: ignore[call-overload]
    del state[name]
    older = type(obj).__new__(type(obj))
    if hasattr(older, "__setstate__"):  # compiled classes
        older.__setstate__(state)
    else:
        older.__dict__.update(state)
    return older


def test_restored_objects_that_do_not_fit_the_code_are_refused(
    network: Network, surge_events: list[Event]
) -> None:
    pipeline = Pipeline(network, REPLAY)
    feed(pipeline, surge_events[:500])
    plaza = loads(pipeline.snapshot([PLAZA]), PlazaState)[PLAZA]
    plaza.merger = without_attribute(plaza.merger, "_last_heard_s")  # one this code expects
    with pytest.raises(CheckpointError, match=PLAZA):
        Pipeline(network, REPLAY).restore(dumps({PLAZA: plaza}), now_s=0.0)


def test_a_checkpoint_round_trips_through_its_encoding() -> None:
    checkpoint = PartitionCheckpoint(
        version=FORMAT_VERSION,
        offsets={"t": 41},
        plazas=[PlazaCheckpoint("P1", {"t": 43}, b"\x00state")],
        dedup_ids=["a", "b"],
    )
    assert decode_checkpoint(encode_checkpoint(checkpoint)) == checkpoint
    older = PartitionCheckpoint(version=FORMAT_VERSION - 1, offsets={}, plazas=[], dedup_ids=[])
    with pytest.raises(CheckpointError, match="version"):
        decode_checkpoint(encode_checkpoint(older))


def test_offsets_a_checkpoint_covers_are_redeliveries_and_later_ones_missing() -> None:
    progress = PartitionProgress.after({"tx": 41}, now_s=0.0)
    assert progress.is_redelivery("tx", 41)
    assert not progress.is_redelivery("tx", 42)
    assert progress.missing_before("tx", 42) is None
    assert progress.missing_before("tx", 50) == 42
    # A topic the checkpoint never saw: everything from its start is new.
    assert progress.missing_before("status", 3) == 0
    progress.taken("tx", 42)
    progress.taken("status", 0)
    assert progress.covered() == {"tx": 42, "status": 0}


def test_a_save_is_due_after_enough_time_or_events_and_only_with_news() -> None:
    policy = CheckpointPolicy(every_s=5.0, every_events=3)
    progress = PartitionProgress.after({}, now_s=100.0)
    assert not progress.is_due(200.0, policy)
    progress.taken("tx", 0)
    assert not progress.is_due(101.0, policy)
    assert progress.is_due(105.0, policy)
    progress.taken("tx", 1)
    progress.taken("tx", 2)
    assert progress.is_due(101.0, policy)
    progress.saved(101.0)
    assert not progress.is_due(200.0, policy)


def test_dedup_ids_move_with_their_partition(metrics: Metrics) -> None:
    previous_owner = make_ingest(metrics)
    assert isinstance(previous_owner.accept(raw(transaction()), SOURCE), LaneTransaction)
    new_owner = make_ingest(metrics)
    new_owner.restore_dedup_ids(SOURCE.partition, previous_owner.dedup_ids(SOURCE.partition))
    again = new_owner.accept(raw(transaction()), SOURCE)
    assert isinstance(again, DeadLetter)
    assert again.reason == "duplicate"
    # Another partition's ids are its own.
    other = Source(SOURCE.topic, SOURCE.partition + 1, 0)
    assert new_owner.dedup_ids(other.partition) == []
    new_owner.forget_partition(SOURCE.partition)
    assert isinstance(new_owner.accept(raw(transaction()), SOURCE), LaneTransaction)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create()


def checkpoint_of(ids: list[str]) -> PartitionCheckpoint:
    return PartitionCheckpoint(version=FORMAT_VERSION, offsets={"t": 9}, plazas=[], dedup_ids=ids)


@given(
    ids=st.lists(st.text(max_size=64), max_size=300),
    part_bytes=st.integers(min_value=1, max_value=5_000),
    cut=st.integers(min_value=0, max_value=10_000),
)
def test_the_newest_complete_checkpoint_comes_back_from_its_parts(
    ids: list[str], part_bytes: int, cut: int
) -> None:
    older = checkpoint_of(["older"])
    newest = checkpoint_of(ids)
    parts = checkpoint_parts(newest, round_id=2, part_bytes=part_bytes)
    assert all(len(part) <= part_bytes + 32 for part in parts)
    records = [*checkpoint_parts(older, round_id=1, part_bytes=part_bytes), *parts]
    assert newest_complete(records) == newest
    # A save cut short leaves the one before it.
    cut_short = records[: len(records) - 1 - cut % len(parts)]
    assert newest_complete(cut_short) == older


def test_records_that_are_no_checkpoint_parts_are_passed_over() -> None:
    newest = checkpoint_of(["a"])
    records = [*checkpoint_parts(newest, round_id=7, part_bytes=8), b"\x00 not a part"]
    assert newest_complete(records) == newest
    assert newest_complete([b"\x00 not a part"]) is None


def test_a_complete_checkpoint_that_does_not_decode_leaves_the_one_before_it() -> None:
    older = checkpoint_of(["older"])
    garbled = [
        msgspec.msgpack.encode(CheckpointPart(FORMAT_VERSION, 9, index, 2, b"\xc1garbled"))
        for index in range(2)
    ]
    records = [*checkpoint_parts(older, round_id=1, part_bytes=8), *garbled]
    assert newest_complete(records) == older
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        newest_complete(garbled)


@pytest.mark.parametrize(("index", "count"), [(2, 2), (-1, 2), (0, 0)])
def test_a_part_outside_its_own_count_is_no_part(index: int, count: int) -> None:
    record = msgspec.msgpack.encode(CheckpointPart(FORMAT_VERSION, 1, index, count, b"x"))
    with pytest.raises(CheckpointError, match="part"):
        decode_part(record)
    assert newest_complete([record]) is None
