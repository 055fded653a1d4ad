"""The benchmark's trials: drain a backlog, run live at a paced rate, read the outcome.

Each trial has its own topic prefix (so its own consumer group, changelogs and
outputs) and removes its topics afterwards.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import numpy as np
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from benchmarks import kafka_io
from benchmarks.latency import Percentiles, closing_times
from benchmarks.synthetic import Load, generate_load, write_network
from benchmarks.worker_proc import (
    Worker,
    busy_share,
    consumer_group,
    machine_cpu,
    start_worker,
)
from tollmon.weighing_flow import BIAS_EVERY_MS

WORKER_PORTS = (6166, 6167)  # not the ports Prometheus scrapes: benchmark metrics stay out
WARM_UP_S = 20.0  # group join, first fetches, first boundaries: not the steady state
CATCH_UP_S = 20.0  # after the last event is produced, how long the worker gets to finish
TAIL_S = 10.0  # the last windows: no detections come after them to close them
SCRAPE_EVERY_S = 5.0  # config/prometheus.yml's scrape_interval: live trials are scraped too


def align(earliest_ms: int, offset_ms: int) -> int:
    """The first start at or after `earliest_ms` whose `offset_ms` falls on a minute mark.

    The worker refreshes the network-wide scale-bias fit once a minute of event time
    (`tollmon.weighing_flow.BIAS_EVERY_MS`), stalling its event loop meanwhile: a run that
    measures one whole minute around that mark sees the fit as often as service does.
    """
    return earliest_ms + (-(earliest_ms + offset_ms)) % BIAS_EVERY_MS


class _EstimateHead(msgspec.Struct):
    ts: int
    plaza_id: str


_estimate = msgspec.json.Decoder(_EstimateHead)


@dataclass(frozen=True)
class DrainResult:
    """Workers draining a backlog of `events` in replay mode."""

    workers: int
    plazas: int
    events: int
    rate: float  # events/s, committed, between 10 % and 90 % of the backlog
    seconds: float
    peak_rss_bytes: list[int]
    cpu_share: list[float]  # CPU seconds per wall second of each worker over the drain
    machine_busy: float  # share of all cores busy meanwhile (broker, producer, others too)


@dataclass(frozen=True)
class LiveResult:
    """One worker fed in real time by `plazas` plazas for `seconds`."""

    plazas: int
    events: int
    offered_rate: float  # events/s produced
    latency: Percentiles  # closing event produced -> estimate on the output topic
    since_boundary: Percentiles  # window end (event time) -> estimate on the output topic
    latency_trend_s: float  # median latency, later half of the run minus earlier half
    caught_up: bool  # every event committed within CATCH_UP_S of the last one produced
    alerts: int
    peak_rss_bytes: int
    cpu_share: float
    machine_busy: float
    scrape_s: float = float("nan")  # median time to fetch the worker's /metrics page

    @property
    def passed(self) -> bool:
        """Kept up in real time with p99 event-to-output latency <= 1 s."""
        return self.caught_up and self.latency.p99 <= 1.0


def _prefix(kind: str) -> str:
    return f"bench{kind}{uuid.uuid4().hex[:6]}."


def drain(
    bootstrap: str,
    load: Load,
    plazas: int,
    workers: int,
    workdir: Path,
    prefilled_prefix: str | None = None,
    timed: bool = True,
) -> DrainResult:
    """Time `workers` replay-mode workers through the whole load.

    Untimed (`timed=False`: only the peak RSS is wanted), a backlog too small to time
    gives a rate of NaN instead of an error.

    With `prefilled_prefix` the backlog is already there before the worker starts;
    otherwise the workers start on empty topics, join one stable group, and the backlog
    is then produced as fast as the broker takes it (a group forming mid-drain pauses it).
    """
    prefix = prefilled_prefix or _prefix("drain")
    if prefilled_prefix is None:
        kafka_io.create_topics(bootstrap, prefix)
    network = write_network(plazas, workdir / f"network-{prefix}json")
    group = consumer_group(prefix)
    progress = kafka_io.GroupProgress(bootstrap, prefix, group)
    procs: list[Worker] = []
    try:
        for port in WORKER_PORTS[:workers]:
            procs.append(start_worker(bootstrap, prefix, network, workdir, port, "replay"))
        if prefilled_prefix is None:
            _wait_for_members(bootstrap, group, workers)
            kafka_io.produce(load, bootstrap, prefix, paced=False)
        timing = _time_drain(progress, len(load), procs, need_rate=timed)
        rss = [w.peak_rss_bytes() for w in procs]
    finally:
        progress.close()
        for w in procs:
            w.stop()
        kafka_io.delete_topics(bootstrap, prefix)
    return DrainResult(
        workers, plazas, len(load), timing.rate, timing.seconds, rss, timing.cpu, timing.busy
    )


@dataclass(frozen=True)
class _Mark:
    """The first poll that saw a new committed count, and the CPU used by then."""

    at: float
    committed: int
    worker_cpu: list[float]
    machine: tuple[float, float]


@dataclass(frozen=True)
class _Timed:
    rate: float
    seconds: float
    cpu: list[float]
    busy: float


def _time_drain(
    progress: kafka_io.GroupProgress,
    total: int,
    procs: list[Worker],
    timeout_s: float = 900,
    need_rate: bool = True,
) -> _Timed:
    """Rate, and CPU use, between the commits that first pass 10 % and 90 % of the backlog.

    Commits come every few seconds; the time of each is known to the poll interval. If
    one commit passes both, the rate cannot be told: an error, or NaN if not `need_rate`.
    """
    marks: list[_Mark] = []
    start = time.monotonic()
    last = -1
    while time.monotonic() - start < timeout_s:
        for w in procs:
            if w.process.poll() is not None:
                raise RuntimeError(f"worker died while draining:\n{w.log_tail()}")
        done = progress.committed()
        if done != last:
            cpu = [w.cpu_seconds() for w in procs]
            marks.append(_Mark(time.monotonic(), done, cpu, machine_cpu()))
            last = done
        if done >= total:
            break
        time.sleep(0.25)
    else:
        raise RuntimeError(f"backlog not drained in {timeout_s:.0f} s ({last} of {total})")
    m10 = next(m for m in marks if m.committed >= 0.1 * total)
    m90 = next(m for m in marks if m.committed >= 0.9 * total)
    wall = m90.at - m10.at
    if wall <= 0:
        if need_rate:
            raise RuntimeError("backlog too small to time: 10 % and 90 % in one commit")
        nan = float("nan")
        return _Timed(nan, marks[-1].at - marks[0].at, [nan] * len(procs), nan)
    return _Timed(
        rate=(m90.committed - m10.committed) / wall,
        seconds=marks[-1].at - marks[0].at,
        cpu=[(b - a) / wall for a, b in zip(m10.worker_cpu, m90.worker_cpu, strict=True)],
        busy=busy_share(m10.machine, m90.machine),
    )


def _wait_for_members(bootstrap: str, group: str, members: int, timeout_s: float = 120) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = admin.describe_consumer_groups([group])[group].result(10)
        if info.state == ConsumerGroupState.STABLE and len(info.members) == members:
            time.sleep(3)  # table recovery and fetchers after the assignment
            return
        time.sleep(0.5)
    raise RuntimeError(f"consumer group {group} not stable with {members} members")


def live(
    bootstrap: str,
    plazas: int,
    duration_s: float,
    workdir: Path,
    generation_rate: float,
    seed: int = 1,
) -> LiveResult:
    """One live-mode worker fed at the standard load of `plazas` plazas, in real time."""
    prefix = _prefix("live")
    kafka_io.create_topics(bootstrap, prefix)
    network = write_network(plazas, workdir / f"network-{prefix}json")
    group = consumer_group(prefix)
    worker = start_worker(bootstrap, prefix, network, workdir, WORKER_PORTS[0], "live")
    progress = kafka_io.GroupProgress(bootstrap, prefix, group)
    try:
        _wait_for_members(bootstrap, group, 1)
        # Event times start once generation is done, so the first events go out on time,
        # and the measured minute is centred on the bias fit's minute mark (see align).
        expected = 5.0 * plazas * duration_s
        earliest = int((time.time() + 2.0 + 1.5 * expected / generation_rate) * 1000)
        start_ms = align(earliest, int((WARM_UP_S + (duration_s - WARM_UP_S - TAIL_S) / 2) * 1000))
        load = generate_load(plazas, start_ms, duration_s, seed=seed)
        # From the first event's time: the wait before it is no part of the worker's load
        # (it made the share of a worker that fell behind look like 0.6 of a core).
        time.sleep(max(0.0, start_ms / 1000 - time.time()))
        cpu0, machine0, wall0 = worker.cpu_seconds(), machine_cpu(), time.monotonic()
        # As in service, Prometheus scrapes the worker meanwhile: its page costs it CPU.
        with Scraper(f"http://127.0.0.1:{WORKER_PORTS[0]}/metrics") as scraper:
            produced_at = kafka_io.produce(load, bootstrap, prefix, paced=True)
        # CPU while the load runs, not while waiting for the last commits.
        cpu = (worker.cpu_seconds() - cpu0) / (time.monotonic() - wall0)
        busy = busy_share(machine0, machine_cpu())
        caught_up = _wait_committed(progress, len(load), CATCH_UP_S, worker)
        rss = worker.peak_rss_bytes()
        estimates = kafka_io.read_topic(bootstrap, prefix + kafka_io.ESTIMATES_TOPIC)
        alerts = kafka_io.read_topic(bootstrap, prefix + kafka_io.ALERTS_TOPIC)
    finally:
        progress.close()
        worker.stop()
        kafka_io.delete_topics(bootstrap, prefix)
    latency, since_boundary, trend = _latencies(load, produced_at, estimates, plazas)
    offered = len(load) / float(produced_at[-1] - produced_at[0]) if len(load) > 1 else 0.0
    return LiveResult(
        plazas,
        len(load),
        offered,
        latency,
        since_boundary,
        trend,
        caught_up,
        len(alerts),
        rss,
        cpu,
        busy,
        scraper.median_s(),
    )


class Scraper:
    """Fetches a metrics page every `every_s` in a thread, as Prometheus would."""

    def __init__(self, url: str, every_s: float = SCRAPE_EVERY_S) -> None:
        self._url = url
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.durations_s: list[float] = []

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def median_s(self) -> float:
        return statistics.median(self.durations_s) if self.durations_s else float("nan")

    def scrape(self, client: httpx.Client) -> None:
        """One fetch, timed; a failed one is skipped, as Prometheus records no sample."""
        started = time.perf_counter()
        try:
            client.get(self._url).raise_for_status()
        except httpx.HTTPError:
            return
        self.durations_s.append(time.perf_counter() - started)

    def _run(self) -> None:
        with httpx.Client(timeout=self._every_s * 2) as client:
            while not self._stop.wait(self._every_s):
                self.scrape(client)


def _wait_committed(
    progress: kafka_io.GroupProgress, total: int, timeout_s: float, worker: Worker
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker died:\n{worker.log_tail()}")
        if progress.committed() >= total:
            return True
        time.sleep(0.5)
    return False


def _latencies(
    load: Load, produced_at: np.ndarray, estimates: list[kafka_io.OutputMessage], plazas: int
) -> tuple[Percentiles, Percentiles, float]:
    """Latency of every estimate whose window closed in the steady part of the run.

    Windows after the warm-up and before the last detections; an expected estimate that
    never arrived counts as infinitely late. The third value is the median latency of the
    later half of those windows minus that of the earlier half: > 0 when the worker falls
    further behind as the run goes on, ≈ 0 when the delay is steady.
    """
    first_ms = int(load.ts.min())
    lo = first_ms + int(WARM_UP_S * 1000)
    hi = first_ms + int((load.span_s - TAIL_S) * 1000)
    heads = [_estimate.decode(m.value) for m in estimates]
    boundary = np.array([h.ts for h in heads], dtype=np.int64)
    plaza = np.array([int(h.plaza_id[1:]) for h in heads], dtype=np.int64)
    appended = np.array([m.appended_s for m in estimates], dtype=np.float64)
    keep = (boundary >= lo) & (boundary < hi)
    boundary, plaza, appended = boundary[keep], plaza[keep], appended[keep]
    closed = closing_times(load, produced_at, plaza, boundary)
    known = ~np.isnan(closed)
    windows = len(range(-(-lo // 5000) * 5000, hi, 5000))
    missing = max(0, 2 * plazas * windows - len(boundary))
    latency = appended[known] - closed[known]
    later = boundary[known] >= (lo + hi) // 2
    trend = (
        float(np.median(latency[later]) - np.median(latency[~later]))
        if later.any() and (~later).any()
        else float("nan")
    )
    return (
        Percentiles.of(latency, missing),
        Percentiles.of(appended - boundary / 1000.0, missing),
        trend,
    )


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="tollmon-bench-")
