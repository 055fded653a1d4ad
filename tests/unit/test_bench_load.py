"""The plaza-rating benchmark's pure parts: standard plazas, their load, latency maths."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import msgspec
import numpy as np
import pytest
from pytest_httpserver import HTTPServer

from benchmarks.fit_cost import FitCost
from benchmarks.kafka_io import ConsumeRate
from benchmarks.latency import Percentiles, closing_times
from benchmarks.report import BenchReport, render
from benchmarks.state_growth import StateGrowth
from benchmarks.synthetic import (
    TOPIC_DETECTIONS,
    TOPIC_TRANSACTIONS,
    TOPIC_WEIGHINGS,
    TOPICS,
    Demand,
    Load,
    generate_load,
    serve_in_order,
    standard_network,
)
from benchmarks.trials import DrainResult, LiveResult, Scraper, _time_drain, align
from benchmarks.worker_proc import Worker, check_hot_path
from tollmon import native
from tollmon.network import parse_network
from tollmon.validation import validator_for

START_MS = 1_750_000_000_000


@pytest.fixture(scope="module")
def load() -> Load:
    return generate_load(40, START_MS, 120.0, seed=3)


def test_standard_plazas_are_a_valid_network_of_twelve_lanes_two_directions() -> None:
    network = parse_network(standard_network(25), "standard")

    assert len(network.plazas) == 25
    for plaza in network.plazas:
        approaches = dict(plaza.approaches())
        assert set(approaches) == {"entry", "exit"}
        assert sum(len(a.lanes) for a in approaches.values()) == 12
        assert all(len(a.detectors) == 1 for a in approaches.values())
        assert all(len(a.scales) == 2 for a in approaches.values())


def test_load_runs_at_about_five_events_per_second_per_plaza(load: Load) -> None:
    per_plaza_s = len(load) / 40 / 120.0

    assert per_plaza_s == pytest.approx(Demand().events_per_s, rel=0.05)
    assert 4.5 < per_plaza_s < 5.5


def test_load_mixes_detections_departures_and_truck_weighings(load: Load) -> None:
    demand = Demand()
    vehicles = demand.vehicles_per_s * 40 * 120.0

    assert load.count(TOPIC_DETECTIONS) == pytest.approx(vehicles, rel=0.05)
    assert load.count(TOPIC_TRANSACTIONS) == pytest.approx(vehicles, rel=0.05)
    assert load.count(TOPIC_WEIGHINGS) == pytest.approx(vehicles * demand.truck_share, rel=0.1)
    assert load.count(TOPICS.index("toll.lane.status")) == 0


def test_every_event_is_valid_for_the_network_and_unique(load: Load) -> None:
    network = parse_network(standard_network(40), "standard")
    validator = validator_for(network, 72 * 3600 * 1000, "replay")

    events = [validator.validate(raw, None) for raw in load.values]

    assert len({e.event_id for e in events}) == len(events)
    assert [e.plaza_id.encode() for e in events] == load.keys
    assert [e.ts for e in events] == load.ts.tolist()


def test_load_is_in_event_time_order_within_its_span(load: Load) -> None:
    assert np.all(np.diff(load.ts) >= 0)
    assert load.ts[0] >= START_MS
    assert load.ts[-1] < START_MS + 120_000
    # Steady from the first second: departures are there from the start, not after a ramp.
    first_tenth = load.ts < START_MS + 12_000
    assert np.count_nonzero(load.topic[first_tenth] == TOPIC_TRANSACTIONS) > 0.08 * load.count(
        TOPIC_TRANSACTIONS
    )


def test_some_exit_weighings_pair_with_an_earlier_entry_weighing(load: Load) -> None:
    weighings = [
        msgspec.json.decode(raw)
        for raw, topic in zip(load.values, load.topic, strict=True)
        if topic == TOPIC_WEIGHINGS
    ]
    entries = {w["pass_id"]: w for w in weighings if w["station"] == "entry"}
    exits = [w for w in weighings if w["station"] == "exit"]
    paired = [w for w in exits if w["pass_id"] in entries]

    assert len(paired) > 0.3 * len(exits)
    assert all(entries[w["pass_id"]]["ts"] < w["ts"] for w in paired)
    assert all(entries[w["pass_id"]]["axles"] == w["axles"] for w in paired)
    assert max(Counter(w["pass_id"] for w in exits).values()) == 1


def _served_one_by_one(
    lane: np.ndarray, ready: np.ndarray, service: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    start, end = np.empty_like(ready), np.empty_like(ready)
    free_at: dict[int, float] = {}
    for i in sorted(range(len(lane)), key=lambda i: (lane[i], ready[i])):
        start[i] = max(ready[i], free_at.get(int(lane[i]), -np.inf))
        end[i] = free_at[int(lane[i])] = start[i] + service[i]
    return start, end


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["seed0", "seed1", "seed2"])
def test_lanes_serve_in_arrival_order_one_vehicle_at_a_time(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lane = rng.integers(0, 4, 500)
    ready = rng.uniform(-50, 200, 500)
    service = rng.lognormal(0.5, 0.6, 500)  # busy enough for queues to form

    start, end = serve_in_order(lane, ready, service)

    expected_start, expected_end = _served_one_by_one(lane, ready, service)
    np.testing.assert_allclose(start, expected_start)
    np.testing.assert_allclose(end, expected_end)
    assert np.any(start > ready + 1e-9)  # some waited


def _load(rows: list[tuple[int, int, int]]) -> Load:
    """A load of (ts, topic, plaza) rows, in time order."""
    rows = sorted(rows)
    return Load(
        ts=np.array([r[0] for r in rows], dtype=np.int64),
        topic=np.array([r[1] for r in rows], dtype=np.int8),
        plaza=np.array([r[2] for r in rows], dtype=np.int32),
        values=[b"{}"] * len(rows),
        keys=[b"P"] * len(rows),
        span_s=10.0,
    )


def test_closing_event_is_the_later_feed_passing_the_first_event_after_the_boundary() -> None:
    det, tx = TOPIC_DETECTIONS, TOPIC_TRANSACTIONS
    load = _load(
        [
            (4_000, det, 0),
            (4_500, tx, 0),
            (5_100, det, 0),  # first after the 5 s boundary: t1
            (5_200, tx, 0),  # transactions pass t1 here
            (5_300, det, 1),  # another plaza never closes plaza 0's window
            (5_400, tx, 1),
            (7_000, det, 0),  # detections pass t1 here: the closing event
            (8_000, tx, 0),
        ]
    )
    produced_at = load.ts / 1000 + 0.25

    closed = closing_times(load, produced_at, np.array([0, 1, 0]), np.array([5_000, 5_000, 10_000]))

    assert closed[0] == pytest.approx(7.25)
    assert np.isnan(closed[1])  # plaza 1 has no event after t1 in either feed
    assert np.isnan(closed[2])  # nothing after this boundary at all


def test_percentiles_are_observed_samples_and_missing_ones_count_as_infinitely_late() -> None:
    seconds = np.arange(1, 101, dtype=np.float64) / 100

    complete = Percentiles.of(seconds)
    with_missing = Percentiles.of(seconds, missing=2)

    assert (complete.p50, complete.p99, complete.max) == (0.5, 0.99, 1.0)
    assert with_missing.count == 102
    assert with_missing.p99 == np.inf
    assert with_missing.p50 == pytest.approx(0.51)


def _live(plazas: int, p99: float) -> LiveResult:
    latency = Percentiles(100, 1 if p99 == np.inf else 0, 0.05, p99, p99)
    return LiveResult(
        plazas=plazas,
        events=plazas * 300,
        offered_rate=plazas * 5.0,
        latency=latency,
        since_boundary=latency,
        latency_trend_s=float("nan"),
        caught_up=True,
        alerts=0,
        peak_rss_bytes=100 << 20,
        cpu_share=0.5,
        machine_busy=0.6,
    )


def test_saved_numbers_render_the_same_report_again() -> None:
    drained = DrainResult(1, 500, 100_000, 1_600.0, 60.0, [300 << 20], [0.9], 0.8)
    report = BenchReport(
        machine={"date": "today", "cores": "2"},
        demand=Demand(),
        backlog_events=100_000,
        backlog_plazas=500,
        backlog_seconds=40.0,
        live_seconds=45.0,
        generation_rate=80_000.0,
        in_process_rate=10_000.0,
        fits=[FitCost(100, 400, 900, 0.5, 5 << 20), FitCost(200, 800, 1800, 2.0, 20 << 20)],
        rss_probe=None,
        produce_rate=150_000.0,
        bare=[ConsumeRate("aiokafka", 100_000, 0.5)],
        one=drained,
        one_without_fit=drained,
        two=None,
        n_max=300,
        at50=_live(150, 0.2),
        at80=_live(240, np.inf),
        trials=[_live(150, 0.2), _live(240, np.inf)],
        rating=150,
        rating_open=False,
        wall_minutes=5.0,
        quick=True,
        state_growth=StateGrowth(
            plazas=100, seconds=3_600.0, events=1_800_000, state_bytes=100 << 20, open_trips=40_000
        ),
    )

    saved = json.loads(json.dumps(report.as_json(), allow_nan=False))
    again = BenchReport.from_json(saved)

    assert again.at80.latency.p99 == np.inf
    assert render(again) == render(report)
    assert "| plaza rating, one worker process | **150** plazas" in render(report)
    # An hour leaves 100 MiB over 100 plazas; 150 plazas of it on the rated trial's 100.
    assert "per plaza (100 plazas in-process) | 1,024 KiB |" in render(report)
    assert "400 per plaza-hour" in render(report)
    assert "after an hour of service (projected) | 250 MiB | < 2 GiB | met |" in render(report)


@pytest.mark.parametrize(
    ("earliest_ms", "offset_ms"),
    [(1_750_000_000_123, 50_000), (1_750_000_010_000, 30_000), (1_750_000_000_000, -1_000)],
    ids=["live", "backlog", "just-after-a-mark"],
)
def test_runs_are_aligned_so_the_offset_falls_on_the_next_minute_mark(
    earliest_ms: int, offset_ms: int
) -> None:
    start = align(earliest_ms, offset_ms)

    assert (start + offset_ms) % 60_000 == 0
    assert earliest_ms <= start < earliest_ms + 60_000


def test_live_trials_scrape_the_worker_as_prometheus_would(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/metrics").respond_with_data("tollmon_events_total 1\n")
    scraper = Scraper(httpserver.url_for("/metrics"))
    assert math.isnan(scraper.median_s())
    broken = Scraper(httpserver.url_for("/missing"))
    with httpx.Client() as client:
        for _ in range(3):
            scraper.scrape(client)
        broken.scrape(client)
    assert len(scraper.durations_s) == 3
    assert broken.durations_s == []  # a failed scrape has no duration
    assert 0 < scraper.median_s() < 1
    with Scraper(httpserver.url_for("/metrics"), every_s=3600) as idle:
        pass  # leaving stops its thread at once, without waiting out the interval
    assert idle.durations_s == []


class _Commits:
    """A consumer group's committed count, read once per poll of the drain timer."""

    def __init__(self, *counts: int) -> None:
        self._counts = list(counts)

    def committed(self) -> int:
        return self._counts.pop(0) if len(self._counts) > 1 else self._counts[0]


def test_a_drain_is_timed_between_the_commits_passing_10_and_90_percent() -> None:
    timed = _time_drain(_Commits(0, 50, 500, 950, 1_000), 1_000, [])  # type: ignore[arg-type]
    assert timed.rate > 0


def test_a_backlog_drained_within_one_commit_has_no_rate_to_tell() -> None:
    """The memory probe only wants its peak RSS: on a fast day its small backlog went
    from none to all committed in one commit, and the whole bench stopped there."""
    with pytest.raises(RuntimeError, match="too small to time"):
        _time_drain(_Commits(0, 1_000), 1_000, [])  # type: ignore[arg-type]
    untimed = _time_drain(_Commits(0, 1_000), 1_000, [], need_rate=False)  # type: ignore[arg-type]
    assert math.isnan(untimed.rate)


def _logged_worker(tmp_path: Path, line: str) -> Worker:
    log = tmp_path / "worker.log"
    log.write_text(f"{line}\nstarting up\n", encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    return Worker(process, 0, log)


def test_a_worker_running_the_benchmarks_detector_code_is_accepted(tmp_path: Path) -> None:
    worker = _logged_worker(tmp_path, f"tollmon worker: detectors {native.status()}")
    try:
        check_hot_path(worker)
        assert worker.process.poll() is None
    finally:
        worker.stop()


def test_a_worker_running_other_detector_code_is_refused_and_stopped(tmp_path: Path) -> None:
    other = "plain Python: no build for this source (make native)"
    if native.status() == other:
        other = "compiled with mypyc (build 0000000000000000)"
    worker = _logged_worker(tmp_path, f"tollmon worker: detectors {other}")
    with pytest.raises(RuntimeError, match="edited while it ran"):
        check_hot_path(worker)
    assert worker.process.poll() is not None
