"""The wired detectors over a generated network: outputs, alerts and determinism."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from dataclasses import replace

import pytest
import yaml

from detectors.ordering import EventTimeMerger
from detectors.queue import ApproachEstimator
from tests.unit.conftest import SAMPLE_NETWORK_FILE
from tollmon import checkpoint
from tollmon.events import ApproachDetection, Event, LaneTransaction, event_type
from tollmon.network import Network, parse_network
from tollmon.pipeline import Outputs, Pipeline, PipelineConfig, PlazaState
from tollmon.simulate import DetectorFault, TrafficProfile, generate
from tollmon.wiring import approach_configs

T0_MS = 1_764_300_000_000


def run(network: Network, events: list[Event]) -> Outputs:
    # Replay settings: topics may drift minutes apart, and nothing goes idle.
    pipeline = Pipeline(network, PipelineConfig(max_hold_s=600.0))
    total = Outputs()
    for event in events:
        out = pipeline.process(event, now_s=0.0)
        total.estimates += out.estimates
        total.alerts += out.alerts
        total.corrections += out.corrections
    out = pipeline.finish()
    total.estimates += out.estimates
    total.alerts += out.alerts
    total.corrections += out.corrections
    return total


@pytest.fixture(scope="module")
def failing_lane_events(network: Network) -> list[Event]:
    profile = TrafficProfile(
        vehicles_per_hour=1500,
        etc_failure_rate=0.01,
        etc_failure_by_lane={("URC-E02", "entry", "01"): 0.20},
    )
    return list(generate(network, T0_MS, 1800, profile, seed=11, plazas=["URC-E02"]))


def test_every_approach_reports_every_five_seconds(
    network: Network, failing_lane_events: list[Event]
) -> None:
    out = run(network, failing_lane_events)
    by_approach = defaultdict(list)
    for estimate in out.estimates:
        by_approach[estimate.direction].append(estimate.ts)
    assert set(by_approach) == {"entry", "exit"}
    for stamps in by_approach.values():
        assert all(b - a == 5_000 for a, b in itertools.pairwise(stamps))
        assert len(stamps) >= 1800 / 5 - 2


def test_a_failing_etc_antenna_is_named_and_healthy_lanes_are_not(
    network: Network, failing_lane_events: list[Event]
) -> None:
    out = run(network, failing_lane_events)
    degraded = {a.subject for a in out.alerts if a.kind == "ETC_LANE_DEGRADED"}
    assert degraded == {"URC-E02/entry/01"}


def test_topic_interleaving_does_not_change_the_outputs(
    network: Network, failing_lane_events: list[Event]
) -> None:
    reference = run(network, failing_lane_events)
    by_topic: dict[str, list[Event]] = defaultdict(list)
    for event in failing_lane_events:
        by_topic[event_type(event)].append(event)
    rng = random.Random(5)
    queues = [list(events) for events in by_topic.values()]
    shuffled: list[Event] = []
    while any(queues):
        # Like a consumer's fetches: each topic in order and in turn, by random-sized
        # batches, so the topics drift apart by a minute or two of event time.
        for queue in queues:
            burst = rng.randint(1, 60)
            shuffled += queue[:burst]
            del queue[:burst]
    assert shuffled != failing_lane_events
    again = run(network, shuffled)

    # Per approach the sequence is identical; across approaches only emission order may vary.
    def approach_order(o: Outputs) -> list[object]:
        return sorted(o.estimates, key=lambda e: (e.direction, e.ts))

    def alert_order(o: Outputs) -> list[object]:
        return sorted(o.alerts, key=lambda a: (a.started_at, a.alert_id, a.status))

    assert approach_order(again) == approach_order(reference)
    assert alert_order(again) == alert_order(reference)


def test_estimates_equal_estimators_advanced_on_every_event_even_with_late_events(
    network: Network,
) -> None:
    """The pipeline skips `advance` between 5 s boundaries; that must change nothing,
    also for an approach that starts late and for events arriving after their time."""
    plaza = "URC-E01"
    generated = generate(
        network, T0_MS, 600, TrafficProfile(vehicles_per_hour=1200), seed=4, plazas=[plaza]
    )
    # The exit approach starts 200 s after the entry approach.
    events = [
        e
        for e in generated
        if e.ts >= T0_MS + 200_000
        or not (isinstance(e, ApproachDetection | LaneTransaction) and e.direction == "exit")
    ]
    rng = random.Random(9)
    for _ in range(len(events) // 30):  # some events arrive 40 places late
        i = rng.randrange(len(events) - 41)
        events.insert(i + 40, events.pop(i))

    # The exit approach starts with an event that arrives a minute of traffic late
    # (the exit events that would have come before it are lost).
    def is_exit(e: Event) -> bool:
        return isinstance(e, ApproachDetection | LaneTransaction) and e.direction == "exit"

    first_exit = next(i for i, e in enumerate(events) if is_exit(e))
    late_start = events[first_exit]
    events = [
        *events[:first_exit],
        *(e for e in events[first_exit + 1 : first_exit + 200] if not is_exit(e)),
        late_start,
        *events[first_exit + 200 :],
    ]
    config = PipelineConfig(max_hold_s=600.0)
    pipeline = Pipeline(network, config)
    got = [pipeline.process(event, now_s=0.0).estimates for event in events]
    got.append(pipeline.finish().estimates)

    estimators = {
        a.direction: ApproachEstimator(a) for a in approach_configs(network) if a.plaza_id == plaza
    }
    merger = EventTimeMerger(
        config.idle_after_s, config.max_hold_s, (ApproachDetection, LaneTransaction)
    )
    expected = []
    for released in [*(merger.push(e, 0.0) for e in events), merger.flush()]:
        estimates = []
        for event in released:
            if isinstance(event, ApproachDetection | LaneTransaction):
                estimators[event.direction].observe(event)
            for estimator in estimators.values():
                estimates += estimator.advance(event.ts).estimates
        expected.append(estimates)

    assert merger.late_events > 0
    assert {e.direction for batch in expected for e in batch} == {"entry", "exit"}
    # Event by event: the same estimates, at the same moment.
    assert got == expected


def test_a_detector_counting_vehicles_twice_shows_in_the_count_corrections(
    network: Network,
) -> None:
    profile = TrafficProfile(vehicles_per_hour=900)
    events = list(generate(network, T0_MS, 3600, profile, seed=3, plazas=["URC-E01"]))
    # Lane changers over two loops: a second count within a second, without a plate.
    fault = DetectorFault("URC-E01", double_ratio=0.10, direction="entry")
    faulty = list(
        generate(
            network,
            T0_MS,
            3600,
            replace(profile, detector_faults=(fault,)),
            seed=3,
            plazas=["URC-E01"],
        )
    )
    # The second counts have no plate (nor have the far loop's counts, which are not faulty).
    doubled = sum(
        1
        for e in faulty
        if isinstance(e, ApproachDetection)
        and e.plate_hash is None
        and e.detector_id != "URC-E01-EN-D2"
    )

    corrected: dict[tuple[str, str, str], float] = defaultdict(float)
    for key, vehicles in run(network, faulty).corrections:
        corrected[key] += vehicles
    clean: dict[tuple[str, str, str], float] = defaultdict(float)
    for key, vehicles in run(network, events).corrections:
        clean[key] += vehicles

    # Nearly every double count is forgotten within the hour, and nothing else is.
    assert doubled > 50
    assert 0.9 * doubled <= corrected["URC-E01", "entry", "phantom"] <= doubled
    assert corrected["URC-E01", "entry", "missed"] <= 1.0
    assert corrected["URC-E01", "exit", "phantom"] == clean["URC-E01", "exit", "phantom"]
    assert sum(clean.values()) <= 1.0


def test_truck_admissions_wait_for_a_weighing_only_where_an_entry_scale_weighs() -> None:
    data = yaml.safe_load(SAMPLE_NETWORK_FILE.read_text(encoding="utf-8"))
    entries = {p["id"]: p["directions"]["entry"] for p in data["plazas"]}
    entries["URC-E02"]["scales"] = []
    network = parse_network(data, "test")
    pipeline = Pipeline(network, PipelineConfig(max_hold_s=600.0))
    for n in range(50):
        for plaza_id in ("URC-E01", "URC-E02"):
            truck = LaneTransaction(
                event_id=f"{plaza_id}-{n}",
                ts=T0_MS + n * 1000,
                plaza_id=plaza_id,
                lane_id=entries[plaza_id]["lanes"][0]["id"],
                direction="entry",
                payment="ETC",
                result="OK",
                vehicle_class="H3",
                axles=3,
                pass_id=f"P{plaza_id}{n}",
                plate_hash=f"h{plaza_id}{n}",
            )
            pipeline.process(truck, now_s=0.0)
    pipeline.finish()

    held = checkpoint.loads(pipeline.snapshot(["URC-E01", "URC-E02"]), PlazaState)
    # Each truck admitted at a weighing plaza may still meet its entry weighing ...
    assert len(held["URC-E01"].overload_join) == 50
    # ... but no weighing can come where the entry has no scale: nothing is held for one.
    assert len(held["URC-E02"].overload_join) == 0
