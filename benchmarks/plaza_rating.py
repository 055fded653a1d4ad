"""`make bench`: the plaza rating of one worker process, measured beside a bare consumer.

Against the real local broker, in one run:
1. a backlog of the standard load is produced; bare consumers (aiokafka, confluent-kafka)
   read and decode it; then one worker (replay mode) drains it: the maximum throughput;
2. two workers drain the same load: the scaling factor;
3. one worker runs live, fed in real time at 50 % and 80 % of that maximum, then at the
   plaza counts a bisection picks: the plaza rating is the largest count at which it
   keeps up with p99 event-to-output latency <= 1 s;
4. docs/benchmarks.md (and the raw numbers, docs/benchmarks.json) are written.

    python -m benchmarks.plaza_rating [--quick] [--bootstrap localhost:9092]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import uuid
from dataclasses import replace
from pathlib import Path

from benchmarks import fit_cost, kafka_io, state_growth
from benchmarks.in_process import in_process_rate
from benchmarks.report import BenchReport, machine_info, render
from benchmarks.synthetic import Demand, generate_load, write_network
from benchmarks.trials import LiveResult, align, drain, live, scratch_dir

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--backlog-plazas", type=int, default=300)
    # Long enough that the 10 % and 90 % marks of a one-worker drain fall some commits
    # apart (a commit every 2.8 s) on a machine with its cores to spare.
    parser.add_argument("--backlog-seconds", type=float, default=240.0)
    parser.add_argument("--bare-repeats", type=int, default=3, help="bare passes; median kept")
    parser.add_argument(
        "--live-seconds", type=float, default=90.0, help="20 s warm-up, a minute, 10 s tail"
    )
    parser.add_argument(
        "--rss-plazas", type=int, default=10_000, help="memory probe at this many plazas; 0: none"
    )
    parser.add_argument("--rss-seconds", type=float, default=2.0, help="event time of its load")
    parser.add_argument(
        "--hour-plazas",
        type=int,
        default=20,
        help="plazas fed an hour of traffic in-process to measure their state (0: none)",
    )
    parser.add_argument("--search-steps", type=int, default=3, help="live trials after 50/80 %%")
    parser.add_argument(
        "--fit-plazas",
        type=int,
        nargs="*",
        default=[100, 200, 400],
        help="network sizes at which one scale-bias fit is timed",
    )
    parser.add_argument("--no-two-workers", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small backlog, short live runs")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite --out from the numbers saved beside it (.json), without measuring",
    )
    args = parser.parse_args()
    if args.render_only:
        report = BenchReport.from_json(json.loads(args.out.with_suffix(".json").read_text()))
        args.out.write_text(render(report), encoding="utf-8")
        return
    if args.quick:
        args.backlog_plazas, args.backlog_seconds = 200, 120.0
        args.live_seconds, args.search_steps = 90.0, 0
        args.rss_plazas, args.fit_plazas, args.hour_plazas = 0, [50, 100, 200], 0

    started = time.time()
    with scratch_dir() as tmp:
        workdir = Path(tmp)
        report = run(args, workdir)
    report = replace(report, wall_minutes=(time.time() - started) / 60)
    args.out.write_text(render(report), encoding="utf-8")
    args.out.with_suffix(".json").write_text(
        json.dumps(report.as_json(), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    print(f"plaza rating {report.rating} -> {args.out}")


def run(args: argparse.Namespace, workdir: Path) -> BenchReport:
    bootstrap = args.bootstrap
    demand = Demand()
    t0 = time.perf_counter()
    # History: the backlog ends a few minutes ago, with one bias-fit minute mark mid-span.
    backlog_ms = int(args.backlog_seconds * 1000)
    span_start = align(int(time.time() * 1000) - backlog_ms - 300_000, backlog_ms // 2)
    load = generate_load(args.backlog_plazas, span_start, args.backlog_seconds)
    generation_rate = len(load) / (time.perf_counter() - t0)
    log(
        f"backlog: {len(load):,} events of {args.backlog_plazas} plazas "
        f"({len(load) / args.backlog_plazas / args.backlog_seconds:.2f} events/s per plaza), "
        f"generated at {generation_rate:,.0f}/s"
    )

    prefix = f"benchbacklog{uuid.uuid4().hex[:6]}."
    kafka_io.create_topics(bootstrap, prefix)
    produced = time.perf_counter()
    kafka_io.produce(load, bootstrap, prefix, paced=False)
    produce_rate = len(load) / (time.perf_counter() - produced)
    log(f"produced at {produce_rate:,.0f} events/s")
    # One pass is at the mercy of whatever else the two cores do: the median of a few.
    bare = [
        _median(
            [
                read(bootstrap, prefix, len(load), f"{prefix}bare-{k}-{i}")
                for i in range(args.bare_repeats)
            ]
        )
        for k, read in (
            ("aiokafka", kafka_io.bare_aiokafka),
            ("confluent", kafka_io.bare_confluent),
        )
    ]
    for b in bare:
        log(f"bare {b.client}: {b.rate:,.0f} events/s")
    network = write_network(args.backlog_plazas, workdir / "network-backlog.json")
    in_process = in_process_rate(load, network)
    log(f"ingest + detectors in-process: {in_process:,.0f} events/s")
    one = drain(bootstrap, load, args.backlog_plazas, 1, workdir, prefilled_prefix=prefix)
    log(f"one worker drains at {one.rate:,.0f} events/s, CPU {one.cpu_share[0]:.2f}")
    # The same traffic without trip pairs: no scale-bias fit, only the per-event work.
    unpaired = generate_load(
        args.backlog_plazas,
        span_start,
        args.backlog_seconds,
        replace(demand, paired_exit_share=0.0),
        seed=1,
    )
    # Prefilled too, so that it is timed as the first drain is (no producer alongside).
    unpaired_prefix = f"benchunpaired{uuid.uuid4().hex[:6]}."
    kafka_io.create_topics(bootstrap, unpaired_prefix)
    kafka_io.produce(unpaired, bootstrap, unpaired_prefix, paced=False)
    no_fit = drain(
        bootstrap, unpaired, args.backlog_plazas, 1, workdir, prefilled_prefix=unpaired_prefix
    )
    log(f"one worker, no pairs, drains at {no_fit.rate:,.0f} events/s")
    two = None
    if not args.no_two_workers:
        two = drain(bootstrap, load, args.backlog_plazas, 2, workdir)
        log(f"two workers drain at {two.rate:,.0f} events/s")

    fits = [fit_cost.measure(n) for n in args.fit_plazas]
    for f in fits:
        log(
            f"scale-bias fit, {f.scales} scales: {f.seconds:.2f} s, {f.peak_bytes / 2**20:,.0f} MiB"
        )
    probe = None
    if args.rss_plazas:
        # Just after a minute mark: the probe's few seconds see no bias fit (fit_cost does).
        probe_start = align(span_start - 120_000, -1000)
        probe_load = generate_load(args.rss_plazas, probe_start, args.rss_seconds, seed=2)
        # Only its peak RSS counts: on a fast day its backlog drains within one commit.
        probe = drain(bootstrap, probe_load, args.rss_plazas, 1, workdir, timed=False)
        log(f"{args.rss_plazas} plazas: peak RSS {probe.peak_rss_bytes[0] / 2**20:,.0f} MiB")

    growth = None
    if args.hour_plazas:
        growth = state_growth.measure(args.hour_plazas, span_start)
        log(
            f"an hour of traffic leaves {growth.per_plaza_bytes / 1024:,.0f} KiB of state "
            f"per plaza; {growth.open_trips_per_plaza_hour:,.0f} open trips per plaza-hour"
        )

    search = RatingSearch(args, workdir, generation_rate, one.rate / demand.events_per_s)
    search.run()
    return BenchReport(
        machine=machine_info(REPO),
        demand=demand,
        backlog_events=len(load),
        backlog_plazas=args.backlog_plazas,
        backlog_seconds=args.backlog_seconds,
        live_seconds=args.live_seconds,
        generation_rate=generation_rate,
        in_process_rate=in_process,
        fits=fits,
        rss_probe=probe,
        state_growth=growth,
        produce_rate=produce_rate,
        bare=bare,
        one=one,
        one_without_fit=no_fit,
        two=two,
        n_max=search.n_max,
        at50=search.trials[search.at50],
        at80=search.trials[search.at80],
        trials=sorted(search.trials.values(), key=lambda r: r.plazas),
        rating=search.lo,
        rating_open=search.hi is None,
        wall_minutes=0.0,
        quick=bool(args.quick),
    )


class RatingSearch:
    """Live trials at 50 % and 80 % of the drain maximum, then a search on plazas.

    While nothing has failed it climbs (to the drain maximum, then by half again each
    time: a worker fed in real time may beat its backlog rate); once a count has failed it
    bisects. `lo` is the largest count that passed (0: none), `hi` the smallest above it
    that failed (None: none did, the rating is at least `lo`).
    """

    def __init__(
        self, args: argparse.Namespace, workdir: Path, generation_rate: float, max_plazas: float
    ) -> None:
        self._args = args
        self._workdir = workdir
        self._generation_rate = generation_rate
        self.n_max = self._round(max_plazas)
        self.at50 = self._round(0.5 * self.n_max)
        self.at80 = self._round(0.8 * self.n_max)
        self.trials: dict[int, LiveResult] = {}

    @property
    def lo(self) -> int:
        return max((n for n, r in self.trials.items() if r.passed), default=0)

    @property
    def hi(self) -> int | None:
        lo = self.lo
        return min((n for n, r in self.trials.items() if not r.passed and n > lo), default=None)

    def run(self) -> None:
        self._trial(self.at50)
        self._trial(self.at80)
        for _ in range(self._args.search_steps):
            n = self._next()
            if n is None or n in self.trials:
                break
            self._trial(n)

    def _next(self) -> int | None:
        lo, hi = self.lo, self.hi
        if hi is None:
            return self.n_max if self.n_max > lo else self._round(1.5 * lo)
        # Settled within about 15 % (or 10 plazas): the run's noise is larger than that.
        if hi - lo <= max(10, 0.15 * hi):
            return None
        mid = self._round((lo + hi) / 2)
        return None if mid in (lo, hi) else mid

    def _trial(self, n: int) -> LiveResult:
        if n not in self.trials:
            args = self._args
            result = live(
                args.bootstrap, n, args.live_seconds, self._workdir, self._generation_rate
            )
            self.trials[n] = result
            log(
                f"live {n} plazas: {result.offered_rate:,.0f} events/s, "
                f"p50 {result.latency.p50:.3f} s, p99 {result.latency.p99:.3f} s, "
                f"caught up {result.caught_up}, passed {result.passed}"
            )
        return self.trials[n]

    @staticmethod
    def _round(n: float) -> int:
        """Two significant digits, at least 10: 87 -> 90, 1234 -> 1200."""
        if n < 10:
            return 10
        unit = int(10 ** max(0, math.floor(math.log10(n)) - 1))
        return max(10, round(n / unit) * unit)


def _median(passes: list[kafka_io.ConsumeRate]) -> kafka_io.ConsumeRate:
    return sorted(passes, key=lambda p: p.rate)[len(passes) // 2]


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


if __name__ == "__main__":
    main()
