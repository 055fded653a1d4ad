"""docs/benchmarks.md, written from one run's numbers: nothing in it is typed by hand."""

from __future__ import annotations

import math
import os
import platform
import re
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from benchmarks.fit_cost import FitCost, power_law
from benchmarks.kafka_io import PARTITIONS, ConsumeRate
from benchmarks.state_growth import StateGrowth
from benchmarks.synthetic import DETECTOR, LANES, TRUCK_LANES, Demand
from benchmarks.trials import (
    CATCH_UP_S,
    SCRAPE_EVERY_S,
    TAIL_S,
    WARM_UP_S,
    DrainResult,
    LiveResult,
)
from tollmon import native

GIB = 1 << 30
MIB = 1 << 20
PLAZA_TARGET = 10_000


@dataclass(frozen=True)
class BenchReport:
    machine: dict[str, str]
    demand: Demand
    backlog_events: int
    backlog_plazas: int
    backlog_seconds: float
    live_seconds: float
    generation_rate: float
    in_process_rate: float
    fits: list[FitCost]
    rss_probe: DrainResult | None
    produce_rate: float
    bare: list[ConsumeRate]
    one: DrainResult
    one_without_fit: DrainResult  # the same traffic without trip pairs
    two: DrainResult | None
    n_max: int
    at50: LiveResult
    at80: LiveResult
    trials: list[LiveResult]
    rating: int  # largest plaza count that passed; 0: none did
    rating_open: bool  # no count above the rating failed (the search stopped at n_max)
    wall_minutes: float
    quick: bool
    state_growth: StateGrowth | None = None  # absent from reports before it was measured

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchReport:
        """The report `as_json` saved, with its nulls turned back into infinity or NaN."""
        return msgspec.convert(_infinite(data), cls)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["bare"] = [{**asdict(b), "rate": b.rate} for b in self.bare]
        finite: dict[str, Any] = _finite(data)
        return finite


def _finite(value: Any) -> Any:
    """JSON has no infinity: a latency that never arrived is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _infinite(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _NON_FINITE[k] if v is None and k in _NON_FINITE else _infinite(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_infinite(v) for v in value]
    return value


# A latency percentile saved as null had a sample that never arrived; a trend, no data.
_NON_FINITE = {
    "p50": math.inf,
    "p99": math.inf,
    "max": math.inf,
    "latency_trend_s": math.nan,
    "scrape_s": math.nan,
}


def machine_info(repo: Path) -> dict[str, str]:
    """CPU, cores, memory and the versions that matter to the numbers."""
    cpuinfo = _read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.MULTILINE)
    pom = _read(str(repo / "tools" / "kafka" / "pom.xml"))
    kafka = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    import confluent_kafka

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "cores": str(os.cpu_count()),
        "memory": f"{int(meminfo.group(1)) / (1 << 20):.1f} GiB" if meminfo else "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        # The workers import the same source with the same environment, so the same build.
        "hot path": native.status(),
        "mypy (mypyc)": version("mypy"),
        "kafka": f"{kafka.group(1)} (KRaft, single node)" if kafka else "unknown",
        "faust-streaming": version("faust-streaming"),
        "aiokafka": version("aiokafka"),
        "confluent-kafka": f"{version('confluent-kafka')} (librdkafka "
        f"{confluent_kafka.libversion()[0]})",
        "msgspec": version("msgspec"),
        "numpy": version("numpy"),
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def rss_fit(points: list[tuple[int, int]]) -> tuple[float, float] | None:
    """Least-squares line through (plazas, peak RSS bytes): (bytes per plaza, bytes at 0)."""
    if len({n for n, _ in points}) < 2:
        return None
    n = np.array([p[0] for p in points], dtype=np.float64)
    rss = np.array([p[1] for p in points], dtype=np.float64)
    slope, intercept = np.polyfit(n, rss, 1)
    return float(slope), float(intercept)


def render(r: BenchReport) -> str:
    m = r.machine
    best_bare = max(r.bare, key=lambda b: b.rate)
    ratio = r.one.rate / best_bare.rate if best_bare.rate else 0.0
    rated = next((t for t in r.trials if t.plazas == r.rating), None)
    # Live trials run equally long, so their event counts grow with the plazas as in service.
    fit = rss_fit([(t.plazas, t.peak_rss_bytes) for t in r.trials])
    rating_text = (
        f"{r.rating:,}{' or more' if r.rating_open else ''}"
        if r.rating
        else f"below {min(t.plazas for t in r.trials):,}"
    )
    scaling = r.two.rate / r.one.rate if r.two is not None and r.one.rate else None
    lines = [
        "# Benchmarks: the plaza rating",
        "",
        f"Written by `make bench` on {m['date']}{' (quick run)' if r.quick else ''}; "
        "every number below comes from that run. Re-run it rather than edit this file:",
        "",
        "```sh",
        "make bench                       # the full run, about 15 minutes",
        "make bench BENCH_ARGS=--quick    # a smaller backlog and shorter live runs",
        "```",
        "",
        "> This machine has "
        f"{m['cores']} cores, shared by the worker(s), the Kafka broker, the load producer "
        "and the bare consumers, and by whatever else runs on the machine. "
        "Numbers are for this machine and would be higher on one with cores to spare; "
        "repeated runs here differ by tens of percent (see the share of the cores that was "
        "busy in each measurement), so compare runs with that in mind.",
        "",
        "## Results against the targets (SPEC.md §7, issue #7)",
        "",
        "| measure | result | target | |",
        "|---|---|---|---|",
        f"| plaza rating, one worker process | **{rating_text}** plazas"
        f"{f' ({r.rating * r.demand.events_per_s:,.0f} events/s)' if r.rating else ''} "
        f"| ≥ {PLAZA_TARGET:,} | "
        f"{_mark(r.rating >= PLAZA_TARGET)} |",
        f"| p99 latency at 80 % of the drain maximum ({r.at80.plazas:,} plazas) | "
        f"{_s(r.at80.latency.p99)} | ≤ 1 s | {_mark(r.at80.passed)} |",
        _at_80_of_rating(r),
        f"| throughput, worker / bare consumer ({best_bare.client}) | "
        f"{r.one.rate:,.0f} / {best_bare.rate:,.0f} events/s = **{_ratio(ratio)}** | ≥ 0.5 | "
        f"{_mark(ratio >= 0.5)} |",
        f"| two workers / one worker (draining) | "
        f"{'not run' if scaling is None else f'**{scaling:.2f}×**'} | reported | |",
    ]
    if rated is not None:
        lines.append(
            f"| peak RSS at the rating | {rated.peak_rss_bytes / MIB:,.0f} MiB | < 2 GiB | "
            f"{_mark(rated.peak_rss_bytes < 2 * GIB)} |"
        )
    lines += _hour_rows(r, rated)
    if fit is not None:
        lines.append(
            f"| peak RSS vs plazas, live trials (least-squares line) | {fit[0] / 1024:,.0f} KiB "
            f"per plaza + {fit[1] / MIB:,.0f} MiB | linear | |"
        )
    if r.rss_probe is not None:
        probe_rss = r.rss_probe.peak_rss_bytes[0]
        lines.append(
            f"| peak RSS with {r.rss_probe.plazas:,} plazas configured (memory probe, "
            f"{r.rss_probe.events:,} events) | {probe_rss / MIB:,.0f} MiB | < 2 GiB | "
            f"{_mark(probe_rss < 2 * GIB)} |"
        )
    lines += [
        "",
        "## Machine and versions",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in m.items()),
        "",
        "## The standard load",
        "",
        f"A standard plaza (SPEC.md §7) has 12 lanes, 6 per direction "
        f"({', '.join(f'{lane} {kind}' for lane, kind in LANES)}), an approach detector "
        f"per direction ({DETECTOR['entry'][0]:.0f} m / {DETECTOR['exit'][0]:.0f} m, "
        f"free flow {DETECTOR['entry'][1]} s / {DETECTOR['exit'][1]} s) and scales on lanes "
        f"{' and '.join(LANES[i][0] for i in TRUCK_LANES)} (the truck lanes) of each "
        "direction. Peak traffic: "
        f"{r.demand.vehicles_per_s} vehicles/s per plaza (Poisson), ETC share "
        f"{r.demand.etc_share}, trucks {r.demand.truck_share}, ETC failures "
        f"{r.demand.etc_failure_rate}; each vehicle gives an approach detection and a lane "
        f"transaction, each truck a weighing: {r.demand.events_per_s:.2f} events/s per plaza "
        f"expected, {r.backlog_events / r.backlog_plazas / r.backlog_seconds:.2f} generated "
        f"in the backlog. Lanes serve in arrival order (ETC ≈3 s, manual ≈14 s, failed ETC "
        f"≈25 s, lognormal), so queues form; {r.demand.paired_exit_share:.0%} of exit "
        "weighings carry the pass of an earlier entry weighing at another plaza, so pairing "
        "and the scale-bias fit work too. Generated with numpy (`benchmarks/synthetic.py`) at "
        f"{r.generation_rate:,.0f} events/s and produced with confluent-kafka at "
        f"{r.produce_rate:,.0f} events/s, keyed by plaza, {PARTITIONS} partitions per topic.",
        "",
        "## Throughput: draining a backlog, side by side",
        "",
        f"{r.backlog_events:,} events ({r.backlog_plazas:,} plazas × "
        f"{r.backlog_seconds:.0f} s of event time, as many minute marks of the scale-bias fit "
        "as whole minutes), read by each consumer in turn from the same topics in the same "
        "run. The worker's rate depends on the number of plazas (the fit grows with the "
        "scales), so it holds for this backlog's plazas only.",
        "",
        "| consumer | events/s | worker / this |",
        "|---|---|---|",
        *(
            f"| bare {b.client} (read + msgspec decode) | {b.rate:,.0f} | "
            f"{_ratio(r.one.rate / b.rate if b.rate else 0)} |"
            for b in r.bare
        ),
        f"| tollmon worker, 1 process (replay mode) | {r.one.rate:,.0f} | 1.00 |",
        f"| tollmon worker, 1 process, same traffic without trip pairs (no scale-bias fit) | "
        f"{r.one_without_fit.rate:,.0f} | {r.one.rate / r.one_without_fit.rate:.2f} |",
        f"| ingest + detectors in-process, no Kafka or Faust (`benchmarks/in_process.py`) | "
        f"{r.in_process_rate:,.0f} | {r.one.rate / r.in_process_rate:.2f} |",
    ]
    if r.two is not None:
        lines.append(
            f"| tollmon workers, 2 processes (replay mode) | {r.two.rate:,.0f} | "
            f"{r.two.rate / r.one.rate:.2f} |"
        )
    lines += [
        "",
        f"The one worker used {r.one.cpu_share[0]:.2f} CPU-seconds per second while draining "
        f"(the machine's cores were {r.one.machine_busy:.0%} busy)"
        + (
            f"; the two used {' and '.join(f'{c:.2f}' for c in r.two.cpu_share)} "
            f"({r.two.machine_busy:.0%} busy)"
            if r.two is not None
            else ""
        )
        + f". {_throughput_limit(r)} Without trip pairs (nothing for the scale-bias fit) "
        f"the worker drains {r.one_without_fit.rate:,.0f} events/s, which would carry about "
        f"{r.one_without_fit.rate / r.demand.events_per_s:,.0f} plazas if the latency held: "
        "the ceiling of the per-event work alone.",
        "",
        "## Latency and the rating: live, paced in real time",
        "",
        f"One worker in live mode; events stamped with the current time and produced when "
        f"the wall clock reaches them, for {r.live_seconds:.0f} s per plaza count, so that "
        "one whole minute of windows is measured, centred on the minute mark at which the "
        "worker refreshes the scale-bias fit: each run sees the fit as often as service "
        "does. The "
        f"maximum from the drain is {r.one.rate:,.0f} events/s = {r.n_max:,} plazas (rounded); "
        f"50 % and 80 % of it come first; then, while every count passes, the next is the "
        f"drain maximum and then half as much again (live, the worker may beat its backlog "
        f"rate), and once one fails, a bisection. A count passes when the worker "
        f"has committed every event within {CATCH_UP_S:.0f} s of the last one produced and "
        "the p99 event-to-output latency is ≤ 1 s.",
        "",
        "| plazas | events/s | latency p50 | p99 | max | trend | window end → output p50 | p99 "
        "| alerts | peak RSS | worker CPU | cores busy | /metrics scrape | kept up | passed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(_trial_row(t) for t in r.trials),
        "",
        *_live_limit(r),
        "- **Latency** runs from the produce call of the *closing event* to the broker's "
        "append time (`LogAppendTime`) of the approach's queue estimate on "
        "`toll.queue.estimates`, on the same clock. A worker publishes the estimate for a "
        "5 s boundary once the plaza's event time has passed it, and releases a plaza's "
        "events only when both of its dense feeds (detections, transactions) have passed "
        "them (`detectors/ordering.py`): the closing event is the later of the first "
        "detection and the first transaction stamped after the plaza's first event past the "
        "boundary. The latency includes the producer's linger (2 ms), the broker, the "
        "worker's fetch, decode, validation, dedup, ordering, the detectors and its produce "
        "of the estimate.",
        "- **Trend** is the median latency of the later half of the measured windows "
        "minus that of the earlier half: near zero, the delay is steady; growing, the "
        "worker falls further behind the longer it runs (it cannot keep up).",
        "- **Window end → output** adds the wait for that data: at ≈5 events/s per plaza "
        "the next detection and transaction arrive some hundreds of ms after a boundary. "
        "It is what an operator sees from the end of a 5 s window to its estimate.",
        f"- Windows closing in the first {WARM_UP_S:.0f} s (group join, first fetches) and "
        f"in the last {TAIL_S:.0f} s (no detections after them to close them) are left out; an "
        "estimate expected in between that never arrived counts as infinitely late. "
        "Alerts are counted, not timed: peak traffic raises few, at times no one chose.",
        "",
        *_fit_text(r),
        "## Memory",
        "",
        "Peak RSS is the worker's `VmHWM` (the kernel's high-water mark) at the end of each "
        "trial. A trial is 90 s of traffic or less, so these are not steady-state figures: "
        "each approach keeps an hour of its arrival and departure curves, the plate matches "
        "of the last 30 minutes and up to 1,000,000 dedup ids, which fill over the first "
        "hour (the soak in docs/operations.md measures that growth).",
        "",
        *_hour_text(r),
        "| plazas | run | peak RSS |",
        "|---|---|---|",
        *(
            f"| {n:,} | {kind} | {rss / MIB:,.0f} MiB |"
            for n, kind, rss in sorted(
                [(t.plazas, "live", t.peak_rss_bytes) for t in r.trials]
                + [(r.one.plazas, "drain", r.one.peak_rss_bytes[0])]
                + (
                    [
                        (
                            r.rss_probe.plazas,
                            f"drain of {r.rss_probe.events:,} events (memory probe)",
                            r.rss_probe.peak_rss_bytes[0],
                        )
                    ]
                    if r.rss_probe is not None
                    else []
                )
            )
        ),
        "",
        "## Scaling out",
        "",
        *_scaling_text(r, scaling),
        "",
        "## Method in short",
        "",
        "- Every trial has its own topic prefix, so its own consumer group, changelogs and "
        "outputs; its topics are deleted afterwards. Workers run as `tollmon worker` "
        "processes with `TOLLMON_*` settings, Alertmanager pushes off.",
        "- The drain uses `TOLLMON_TIME_MODE=replay` (the input's own watermark is 'now'), "
        "so a backlog is never rejected as old; throughput is the committed-offset rate "
        "(read from the broker, not the worker's /metrics, whose rendering for thousands of "
        "plazas would cost the worker) between the commits that pass 10 % and 90 % of the "
        "backlog. One worker drains a backlog produced before it starts; two workers form "
        "one stable group first, then the backlog is produced as fast as the broker takes "
        "it.",
        "- The bare consumers subscribe to the same four topics with a group of their own "
        "and decode every message with msgspec into the event types (no validation, no "
        "state, no output); their rate runs from the first message received to the last.",
        "- Live runs use `TOLLMON_TIME_MODE=live` and current timestamps. While the load "
        f"runs, a thread fetches the worker's `/metrics` every {SCRAPE_EVERY_S:.0f} s "
        "(`config/prometheus.yml`'s interval), as Prometheus does in service: rendering the "
        "page is the worker's CPU too. The table gives the median fetch time.",
        f"- The whole run took {r.wall_minutes:.1f} minutes.",
        "",
    ]
    return "\n".join(lines)


def _trial_row(t: LiveResult) -> str:
    return (
        f"| {t.plazas:,} | {t.offered_rate:,.0f} | {_s(t.latency.p50)} | {_s(t.latency.p99)} "
        f"| {_s(t.latency.max)} | {_signed_s(t.latency_trend_s)} "
        f"| {_s(t.since_boundary.p50)} | {_s(t.since_boundary.p99)} "
        f"| {t.alerts:,} | {t.peak_rss_bytes / MIB:,.0f} MiB | {t.cpu_share:.2f} "
        f"| {t.machine_busy:.0%} | {_s(t.scrape_s)} | {'yes' if t.caught_up else 'no'} "
        f"| {_mark(t.passed)} |"
    )


def _fit_text(r: BenchReport) -> list[str]:
    """The scale-bias fit: measured at small sizes, extrapolated to the rating and beyond."""
    if len(r.fits) < 2:
        return []
    largest = max(r.fits, key=lambda f: f.scales)
    per_plaza = largest.scales / largest.plazas
    a_t, k_t = power_law([(f.scales, f.seconds) for f in r.fits])
    a_m, k_m = power_law([(f.scales, float(f.peak_bytes)) for f in r.fits])

    def at(plazas: int) -> str:
        scales = per_plaza * plazas
        seconds = a_t * scales**k_t
        return (
            f"{plazas:,} plazas (≈{scales:,.0f} scales): ≈{_duration(seconds)} and "
            f"≈{_size(a_m * scales**k_m)} per fit"
        )

    sizes = sorted({r.rating, PLAZA_TARGET} - {0})
    return [
        "## The network-wide scale-bias fit",
        "",
        "The worker refreshes the scale-bias fit (`detectors/scale_bias.py`, SPEC.md §4.3) "
        "once a minute of event time, over every scale with pairs in its window, in a "
        "forked child of the worker (`streams.weighing_agents.fit_in_child`): events keep "
        "flowing on the worker's event loop, and the fit takes a core of its own while it "
        "runs (the other core here is shared with the broker). One fit, timed in this process "
        "on the standard load's pairs (memory: Python and numpy allocations during the fit, "
        "by `tracemalloc`, which also slows the fit's Python parts):",
        "",
        "| plazas | scales in the fit | pairs | one fit | memory |",
        "|---|---|---|---|---|",
        *(
            f"| {f.plazas:,} | {f.scales:,} | {f.pairs:,} | {f.seconds:.2f} s | "
            f"{f.peak_bytes / MIB:,.0f} MiB |"
            for f in sorted(r.fits, key=lambda f: f.plazas)
        ),
        "",
        f"Time grows as scales^{k_t:.1f} and memory as scales^{k_m:.1f} here (least "
        "squares in log-log). At these sizes the fit solves a sparse system and computes "
        "every scale's variance exactly (up to 2,000 scales), which grows faster than the "
        "solve; above 2,000 scales it switches to a fixed-seed Hutchinson estimate of the "
        "variances, so the power law overstates large networks (docs/scale_bias_fit.md "
        "times 6,400 scales at about 5 s and 40,000 at 45 s). Extrapolated by the power "
        f"law: {'; '.join(at(n) for n in sizes)}. A fit longer than a minute means the "
        "worker can never keep up; one of some seconds takes that much CPU from the event "
        "loop once a minute. The memory probe below stops short of a fit.",
        "",
    ]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.0f} min"
    return f"{seconds / 3600:,.0f} h"


def _live_limit(r: BenchReport) -> list[str]:
    """What the failed live trials say: out of CPU, or waiting with CPU to spare."""
    failed = [t for t in r.trials if not t.passed]
    if not failed:
        return []
    t = min(failed, key=lambda t: t.plazas)
    share = t.offered_rate / r.one.rate if r.one.rate else 0.0
    text = (
        f"The smallest count that failed, {t.plazas:,} plazas, offered {t.offered_rate:,.0f} "
        f"events/s, {share:.0%} of the drain maximum; the worker used {t.cpu_share:.2f} "
        f"CPU-seconds per second and the cores were {t.machine_busy:.0%} busy. "
    )
    if t.machine_busy >= 0.9:
        text += (
            "The machine was out of CPU: the worker waited for a core it shares with the "
            "broker, the paced producer and whatever else ran."
        )
    elif t.cpu_share < 0.85:
        text += (
            "Over the run the worker had CPU to spare, yet events waited: the delay comes "
            "from stalls, not from the average load — compare the maximum latency with "
            "the time of one scale-bias fit below."
        )
    else:
        text += "The worker was CPU-bound at this rate."
    return [text, ""]


def _machinery_text(r: BenchReport) -> str:
    machinery = (
        "the stream machinery around them (aiokafka's fetch and commits, the sends of "
        "estimates and re-keyed weighings to the producer, the weighing agents under Faust, "
        "metrics)"
    )
    lead = f"Ingest and detectors alone, event by event, run at {r.in_process_rate:,.0f} events/s"
    share = 1 - r.one.rate / r.in_process_rate
    if share >= 0.05:
        return f"{lead}, so {share:.0%} of the worker's time per event goes to {machinery}."
    # Single runs here differ by more than a few percent.
    return (
        f"{lead}: no faster than the worker, which takes them in batches, so {machinery} "
        "costs less than single runs here differ by."
    )


def _throughput_limit(r: BenchReport) -> str:
    cpu = r.one.cpu_share[0]
    best = max(b.rate for b in r.bare)
    if cpu >= 0.85:
        return (
            "The worker is CPU-bound: one Python process keeps one core busy (an asyncio "
            "event loop runs on one thread), and per-event Python work, not Kafka, sets the "
            f"pace — the bare consumers read the same topics {best / r.one.rate:,.0f}× faster. "
            f"{_machinery_text(r)}"
        )
    return (
        f"At {cpu:.2f} CPU-seconds per second the worker is not CPU-bound on its own core: "
        "it waits on the broker, the fetches or the other processes sharing the cores."
    )


def _scaling_text(r: BenchReport, scaling: float | None) -> list[str]:
    if r.two is None or scaling is None:
        return ["Two workers were not run (`--no-two-workers`)."]
    per_core = r.one_without_fit.rate / r.demand.events_per_s
    return [
        f"Two worker processes in one consumer group drained at {r.two.rate:,.0f} events/s, "
        f"{scaling:.2f}× one worker (cores {r.two.machine_busy:.0%} busy). On this machine "
        f"that is bounded by its {r.machine['cores']} cores: the broker, the producer and "
        "both workers share them, so a second worker mostly takes CPU from the first and "
        "from the broker; and the scale-bias fit, which reads one single-partition topic of "
        "all the network's pairs, runs in one of the two whatever their number.",
        "",
        "On paper, N workers on N cores of their own (broker elsewhere): the per-event work "
        "divides by partition (plazas are keyed by plaza and co-partitioned), so N workers "
        f"carry about N × {per_core:,.0f} plazas of it (the drain without trip pairs), up to "
        f"one worker per partition (`TOLLMON_PARTITIONS`, {PARTITIONS} here). The "
        "network-wide scale-bias fit does not divide: it stays on one worker and grows with "
        "the whole network's scales (see its section): the worker that holds the pairs "
        "topic spends its CPU on it once a minute, which bounds the rating of that worker "
        "once the network has tens of thousands of scales.",
    ]


def _s(seconds: float) -> str:
    if math.isnan(seconds):
        return "–"
    if math.isinf(seconds):
        return "∞ (missing)"
    return f"{seconds:.3f} s"


def _ratio(x: float) -> str:
    return f"{x:.2f}" if x >= 0.1 else f"{x:.4f}"


def _signed_s(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds:+.3f} s"


def _size(n_bytes: float) -> str:
    return f"{n_bytes / GIB:,.1f} GiB" if n_bytes >= GIB else f"{n_bytes / MIB:,.0f} MiB"


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _at_80_of_rating(r: BenchReport) -> str:
    """The issue's latency target is at 80 % of the rating: the nearest trial at or above it."""
    target = "| p99 latency at 80 % of the rating"
    if not r.rating:
        return f"{target} | no rating | ≤ 1 s | |"
    near = [t for t in r.trials if 0.8 * r.rating <= t.plazas <= r.rating]
    if not near:
        return f"{target} | no trial between 80 % and 100 % of the rating | ≤ 1 s | |"
    trial = min(near, key=lambda t: t.plazas)
    share = trial.plazas / r.rating
    return (
        f"{target} (nearest trial at or above it: {trial.plazas:,} plazas, {share:.0%} of the "
        f"rating) | {_s(trial.latency.p99)} | ≤ 1 s | {_mark(trial.latency.p99 <= 1.0)} |"
    )


def _hour_rows(r: BenchReport, rated: LiveResult | None) -> list[str]:
    g = r.state_growth
    if g is None:
        return []
    rows = [
        f"| detector state after an hour of traffic, per plaza ({g.plazas:,} plazas "
        f"in-process) | {g.per_plaza_bytes / 1024:,.0f} KiB | | |"
    ]
    if rated is not None:
        hour = rated.peak_rss_bytes + r.rating * g.per_plaza_bytes
        rows.append(
            f"| RSS at the rating after an hour of service (projected) | {hour / MIB:,.0f} MiB "
            f"| < 2 GiB | {_mark(hour < 2 * GIB)} |"
        )
    return rows


def _hour_text(r: BenchReport) -> list[str]:
    g = r.state_growth
    if g is None:
        return []
    return [
        f"An hour of service: {g.plazas:,} plazas' traffic over {g.seconds / 60:.0f} minutes "
        f"of event time ({g.events:,} events) went through validation and the detectors "
        "in one process (`benchmarks/state_growth.py`), and "
        f"**{g.per_plaza_bytes / 1024:,.0f} KiB per plaza** of Python memory was still "
        "allocated at the end (`tracemalloc`; the dedup memory left out). The projection "
        "for the rating adds that per plaza to the peak RSS of the live trial at the "
        "rating, which already holds 90 s of state and the full dedup memory; it leaves "
        "out the allocator's slack, so RSS in service runs higher (the soak in "
        "docs/operations.md). Open trips are not in it: "
        f"{g.open_trips_per_plaza_hour:,.0f} per plaza-hour of this load's trucks stayed "
        "unpaired (half its exit weighings carry an entry's pass id), kept for up to 72 h "
        "in the pairing table, which a worker keeps on disk (RocksDB, with at most "
        "32 MiB of write buffers and block cache per partition).",
        "",
    ]
