"""Every query of every dashboard panel returns data from the real Prometheus, after a
real worker has processed traffic that exercises every panel: a surge, a failing ETC
antenna, truck trips with a biased scale, admitted and refused overloads, trips that
never exit, late and invalid events."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from kafka import KafkaProducer

from tests.integration.conftest import (
    REPO,
    Stack,
    WorkerProcess,
    launch_worker,
    network_with_unpaired_horizon,
    wait_until,
)
from tests.integration.test_queues_through_kafka import send
from tollmon.events import Event, LaneTransaction, WeighMeasurement
from tollmon.grafana import DASHBOARD_DIR, load_dashboards
from tollmon.network import load_network
from tollmon.simulate import Surge, TrafficProfile, generate
from tollmon.trips import TripProfile, generate_trips

pytestmark = pytest.mark.integration

SURGE_PLAZA, ETC_PLAZA = "URC-E01", "URC-E02"
BIASED_SCALE = "URC-E01-EN-S1"
UNPAIRED_HORIZON_S = 900  # trips without an exit count as unmatched this soon
VARIABLES = {
    "$plaza": SURGE_PLAZA,
    "$direction": "entry",
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
}
# Queries whose metric the worker does not fill yet, with the reason. Each must still
# return nothing, so an entry is removed as soon as it is no longer true.
NOT_YET_EXPORTED: dict[str, str] = {}


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    expr: str


def dashboard_queries() -> list[Query]:
    queries = []
    for dashboard in load_dashboards(REPO / DASHBOARD_DIR):
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for name, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
                    expr = expr.replace(name, value)
                assert "$" not in expr, f"unsubstituted variable in {expr}"
                queries.append(Query(dashboard["uid"], panel["title"], expr))
    return queries


def instant(stack: Stack, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body}"
    return list(body["data"]["result"])


def traffic(network_file: Path) -> list[Event]:
    """Trips two to four hours ago, then 15 minutes of surge at one plaza up to now."""
    network = load_network(network_file)
    now_ms = int(time.time() * 1000)
    trip_profile = TripProfile(
        trips_per_hour=2400,
        scale_bias={BIASED_SCALE: 0.03},
        overload_admitted_share=0.01,
        travel_min_s=60,
        travel_max_s=600,
    )
    trips = list(generate_trips(network, now_ms - 4 * 3600_000, 2 * 3600, trip_profile, 21))
    never_exit = {e.pass_id for e in trips if isinstance(e, WeighMeasurement)}
    never_exit = set(sorted(never_exit)[::50])
    trips = [e for e in trips if not (_exit_of(e) and e.pass_id in never_exit)]
    refused = 0
    for i, event in enumerate(trips):
        # A few trucks refused at entry (入口治超) for the refused-overload panel.
        if isinstance(event, LaneTransaction) and event.direction == "entry" and refused < 20:
            trips[i] = msgspec.structs.replace(event, result="REJECTED")
            refused += 1
    surge = Surge(SURGE_PLAZA, 8.0, start_s=120, direction="entry")
    profile = TrafficProfile(
        vehicles_per_hour=600,
        surges=(surge,),
        etc_failure_by_lane={(ETC_PLAZA, "entry", "01"): 0.20},
    )
    duration_s = 900
    queues = list(
        generate(
            network,
            now_ms - (duration_s + 30) * 1000,
            duration_s,
            profile,
            3,
            [SURGE_PLAZA, ETC_PLAZA],
        )
    )
    return trips + queues


def _exit_of(event: Event) -> bool:
    if isinstance(event, WeighMeasurement):
        return event.station == "exit"
    return isinstance(event, LaneTransaction) and event.direction == "exit"


def late_copies(events: list[Event], n: int) -> list[Event]:
    """Re-sent early transactions with new ids: far behind the watermark, so late."""
    early = [e for e in events if isinstance(e, LaneTransaction)][-2000 : -2000 + n]
    return [msgspec.structs.replace(e, event_id=f"{e.event_id}-late") for e in early]


def send_garbage(stack: Stack, prefix: str, n: int) -> None:
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap)
    for i in range(n):
        producer.send(f"{prefix}toll.lane.transactions", key=b"URC-E01", value=b"not json %d" % i)
    producer.flush()
    producer.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    directory = tmp_path_factory.mktemp("dashboards")
    network_file = network_with_unpaired_horizon(directory, UNPAIRED_HORIZON_S)
    worker = launch_worker(stack, directory, TOLLMON_NETWORK_FILE=str(network_file))
    try:
        events = traffic(network_file)
        send(stack, worker.prefix, events)
        send(stack, worker.prefix, late_copies(events, 20))
        send_garbage(stack, worker.prefix, 5)

        def exercised() -> dict[str, float]:
            return {
                # A count, not a sum: the fit's biases are relative and can sum below 0.
                "scale bias estimates": sum(
                    1 for name, _ in worker.metrics() if name == "tollmon_scale_bias_ratio"
                ),
                "unmatched trips": worker.total("tollmon_weight_pairs_total", outcome="unmatched"),
                "discrepant pairs": worker.total(
                    "tollmon_weight_pairs_total", outcome="discrepant"
                ),
                "congestion firing": worker.total(
                    "tollmon_alerts_firing", kind="QUEUE_CONGESTION", plaza=SURGE_PLAZA
                ),
                "late events": worker.total("tollmon_events_late_total"),
                "invalid events": worker.total("tollmon_events_invalid_total"),
                "refused": worker.total("tollmon_lane_transactions_total", result="REJECTED"),
            }

        wait_until(
            lambda: all(v > 0 for v in exercised().values()),
            150,
            "traffic that exercises every panel",
            exercised,
        )
        # Counters born late need a few scrapes (5 s apart) before rate() has a value.
        instance = f'instance="127.0.0.1:{worker.port}"'
        late_born = [
            f'tollmon_weight_pairs_total{{outcome="unmatched",{instance}}}',
            f'tollmon_weight_pairs_total{{outcome="discrepant",{instance}}}',
            f"tollmon_events_invalid_total{{{instance}}}",
            f"tollmon_events_late_total{{{instance}}}",
            f'tollmon_lane_transactions_total{{result="REJECTED",{instance}}}',
        ]

        def scrapes(selector: str) -> float:
            result = instant(stack, f"min(count_over_time({selector}[1m]))")
            return float(result[0]["value"][1]) if result else 0.0

        wait_until(
            lambda: all(scrapes(s) >= 3 for s in late_born),
            60,
            "the late-born counters scraped three times",
            lambda: {s: scrapes(s) for s in late_born},
        )
        yield worker
    finally:
        worker.stop()


def test_every_dashboard_panel_query_returns_data(stack: Stack, worker: WorkerProcess) -> None:
    queries = dashboard_queries()
    empty = [q for q in queries if not instant(stack, q.expr) and q.expr not in NOT_YET_EXPORTED]
    assert not empty, "\n".join(f"{q.dashboard} / {q.panel}: {q.expr}" for q in empty)
    assert len(queries) >= 35


def test_the_excluded_queries_are_still_empty(stack: Stack, worker: WorkerProcess) -> None:
    # Once streams/ fills a metric, its panel joins the check above.
    for expr, reason in NOT_YET_EXPORTED.items():
        assert not instant(stack, expr), f"{expr} returns data now ({reason}): remove it"
        assert expr in {q.expr for q in dashboard_queries()}


def test_the_data_comes_from_this_run(worker: WorkerProcess) -> None:
    """Every tollmon metric the dashboards use has samples on this test's own worker."""
    exposed = {name for name, _ in worker.metrics()}
    used = {
        name
        for q in dashboard_queries()
        if q.expr not in NOT_YET_EXPORTED
        for name in re.findall(r"\btollmon_[a-z_]+", q.expr)
    }
    missing = {n for n in used if n not in exposed and f"{n}_bucket" not in exposed}
    assert not missing


def test_the_variables_offer_the_values_the_queries_were_run_with(
    stack: Stack, worker: WorkerProcess
) -> None:
    def label_values(label: str, match: str) -> list[str]:
        response = httpx.get(
            f"{stack.prometheus_url}/api/v1/label/{label}/values",
            params={"match[]": match},
            timeout=10,
        )
        return list(response.json()["data"])

    assert SURGE_PLAZA in label_values("plaza", "tollmon_plaza_info")
    assert "entry" in label_values("direction", f'tollmon_queue_vehicles{{plaza="{SURGE_PLAZA}"}}')
