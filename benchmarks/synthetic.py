"""A network of N standard plazas and its peak-hour load, generated fast with numpy.

The standard plaza of SPEC.md §7: 12 lanes (6 per direction: 4 ETC, 1 MIXED, 1 MTC),
both directions, one approach detector per direction, scales on the two truck lanes of
each direction, and peak traffic of about 5 events/s. Vehicles arrive at the detector
as a Poisson stream, reach the barriers after the free-flow time and are served in
arrival order per lane (the Lindley recursion, vectorised), so lanes never serve two
vehicles at once and queues form where a lane is busy. A truck is weighed when its
service starts; about half the exit weighings carry the pass id of an earlier entry
weighing at another plaza, so the weighing pairs and the scale-bias fit get work too.

`tollmon.simulate` models the same behaviour vehicle by vehicle (lane choice by who
frees first, surges); it makes ~30,000 events/s, too slow to fill 10^6-event backlogs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tollmon.events import ApproachDetection, Event, LaneTransaction, WeighMeasurement, encode
from tollmon.publish import TOPIC_BY_TYPE

DIRECTIONS = ("entry", "exit")
LANES = (("01", "ETC"), ("02", "ETC"), ("03", "ETC"), ("04", "ETC"), ("05", "MIXED"), ("06", "MTC"))
ETC_LANES = (0, 1, 2, 3)
TRUCK_LANES = (4, 5)  # where trucks pay and are weighed
MANUAL_LANES = (4, 5)  # where cars without ETC pay
DETECTOR = {"entry": (180.0, 14.0), "exit": (260.0, 18.5)}  # distance_m, free_flow_s
ETC_SERVICE_S, MTC_SERVICE_S, ETC_FAIL_SERVICE_S = 3.0, 14.0, 25.0
SERVICE_CV = 0.3
LEAD_IN_S = 120.0  # traffic before the span, so it starts in the steady state
# GB 1589 gross limits by axle count, to draw realistic truck weights.
LIMIT_KG = {2: 18_000, 3: 25_000, 4: 31_000, 5: 43_000, 6: 49_000}
TOPICS = tuple(TOPIC_BY_TYPE.values())  # index = Load.topic value
TOPIC_DETECTIONS = TOPICS.index("toll.approach.detections")
TOPIC_TRANSACTIONS = TOPICS.index("toll.lane.transactions")
TOPIC_WEIGHINGS = TOPICS.index("toll.weigh.measurements")


@dataclass(frozen=True)
class Demand:
    """Peak demand per plaza. 2.25 vehicles/s × ≈2.2 events per vehicle ≈ 5 events/s.

    ETC share 0.95 keeps the one MTC and one MIXED lane per direction below saturation
    at that demand (manual service takes ≈14 s); the four ETC lanes run at ≈0.7.
    """

    vehicles_per_s: float = 2.25
    etc_share: float = 0.95
    truck_share: float = 0.2
    etc_failure_rate: float = 0.02
    paired_exit_share: float = 0.5

    @property
    def events_per_s(self) -> float:
        """Expected events per second per plaza: a detection and a departure per vehicle,
        a weighing per truck."""
        return self.vehicles_per_s * (2 + self.truck_share)


def plaza_ids(n: int) -> list[str]:
    return [f"P{i:05d}" for i in range(n)]


def standard_network(n: int) -> dict[str, Any]:
    """The network-file data (SPEC.md §3) of `n` standard plazas on a grid."""
    plazas = []
    for i, pid in enumerate(plaza_ids(n)):
        directions = {}
        for direction in DIRECTIONS:
            tag = "EN" if direction == "entry" else "EX"
            distance, free_flow = DETECTOR[direction]
            directions[direction] = {
                "lanes": [{"id": lane, "type": kind} for lane, kind in LANES],
                "detectors": [
                    {"id": f"{pid}-{tag}-D1", "distance_m": distance, "free_flow_s": free_flow}
                ],
                "scales": [
                    {"id": f"{pid}-{tag}-S{k}", "lane": LANES[lane][0], "accuracy_class": 2}
                    for k, lane in enumerate(TRUCK_LANES, start=1)
                ],
            }
        plazas.append(
            {
                "id": pid,
                "name": f"Standard plaza {i}",
                "road": f"G{i % 100:02d}",
                "lat": round(20.0 + (i // 200) * 0.05, 4),
                "lon": round(80.0 + (i % 200) * 0.05, 4),
                "directions": directions,
            }
        )
    return {"plazas": plazas}


def write_network(n: int, path: Path) -> Path:
    """Write the network of `n` standard plazas; JSON is YAML, and much faster to write."""
    path.write_text(json.dumps(standard_network(n)), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Load:
    """Encoded events in event-time order: parallel arrays, one row per message."""

    ts: npt.NDArray[np.int64]
    topic: npt.NDArray[np.int8]  # index into TOPICS
    plaza: npt.NDArray[np.int32]  # index into plaza_ids(n)
    values: list[bytes]
    keys: list[bytes]
    span_s: float

    def __len__(self) -> int:
        return len(self.values)

    def count(self, topic: int) -> int:
        return int(np.count_nonzero(self.topic == topic))


def generate_load(
    n_plazas: int, start_ms: int, span_s: float, demand: Demand | None = None, seed: int = 0
) -> Load:
    """Every event of `n_plazas` standard plazas over `span_s` seconds of event time."""
    rng = np.random.default_rng(seed)
    v = _simulate(n_plazas, span_s, demand or Demand(), rng)
    tag = np.base_repr(start_ms, 36).lower()  # unique ids per run: the worker dedups on them
    rows = _events(v, plaza_ids(n_plazas), start_ms, span_s, tag)
    rows.sort(key=lambda row: row[0])
    keys = [pid.encode() for pid in plaza_ids(n_plazas)]
    return Load(
        ts=np.fromiter((r[0] for r in rows), np.int64, len(rows)),
        topic=np.fromiter((r[1] for r in rows), np.int8, len(rows)),
        plaza=np.fromiter((r[2] for r in rows), np.int32, len(rows)),
        values=[encode(r[3]) for r in rows],
        keys=[keys[r[2]] for r in rows],
        span_s=span_s,
    )


@dataclass(frozen=True)
class _Vehicles:
    """One row per vehicle; times in seconds from the start of the span."""

    approach: npt.NDArray[np.int64]  # plaza * 2 + (0 entry, 1 exit)
    lane: npt.NDArray[np.int64]  # index into LANES
    arrive_s: npt.NDArray[np.float64]  # at the detector
    start_s: npt.NDArray[np.float64]  # service start (and weighing)
    leave_s: npt.NDArray[np.float64]
    service_s: npt.NDArray[np.float64]
    etc: npt.NDArray[np.bool_]
    failed: npt.NDArray[np.bool_]
    weighed: npt.NDArray[np.bool_]
    axles: npt.NDArray[np.int64]
    gross_kg: npt.NDArray[np.float64]  # as this vehicle's scale reads it
    plate: npt.NDArray[np.int64]
    trip: npt.NDArray[np.int64]  # pass id number


def _simulate(n_plazas: int, span_s: float, d: Demand, rng: np.random.Generator) -> _Vehicles:
    # Vehicles start arriving a while before the span, so that departures (free flow and
    # service after the detection) run at the steady rate from its first second.
    per_approach = rng.poisson(d.vehicles_per_s / 2 * (span_s + LEAD_IN_S), 2 * n_plazas)
    approach = np.repeat(np.arange(2 * n_plazas), per_approach)
    m = len(approach)
    arrive_s = rng.uniform(-LEAD_IN_S, span_s, m)
    truck = rng.random(m) < d.truck_share
    etc = rng.random(m) < d.etc_share
    failed = etc & (rng.random(m) < d.etc_failure_rate)
    mean = np.where(failed, ETC_FAIL_SERVICE_S, np.where(etc, ETC_SERVICE_S, MTC_SERVICE_S))
    sigma = np.sqrt(np.log1p(SERVICE_CV**2))
    service_s = mean * rng.lognormal(-(sigma**2) / 2, sigma, m)
    lane = np.where(
        truck,
        rng.choice(TRUCK_LANES, m),
        np.where(etc, rng.choice(ETC_LANES, m), rng.choice(MANUAL_LANES, m)),
    )
    is_exit = approach % 2 == 1
    free_flow = np.where(is_exit, DETECTOR["exit"][1], DETECTOR["entry"][1])
    start_s, leave_s = serve_in_order(approach * len(LANES) + lane, arrive_s + free_flow, service_s)
    axles = np.where(truck, rng.integers(2, 7, m), 2)
    limit = np.vectorize(LIMIT_KG.__getitem__)(np.minimum(axles, 6))
    gross = np.clip(rng.normal(0.7, 0.15, m) * limit, 3_000, 150_000)
    trip = np.arange(m)  # a vehicle is its trip's entry vehicle: plate, axles, weight
    weighed = truck & np.isin(lane, TRUCK_LANES)
    # Pairs within the span only: an entry weighed in the lead-in is never seen.
    seen = weighed & (start_s >= 0)
    _pair_exits(rng, d.paired_exit_share, seen & ~is_exit, seen & is_exit, start_s, trip)
    return _Vehicles(
        approach=approach,
        lane=lane,
        arrive_s=arrive_s,
        start_s=start_s,
        leave_s=leave_s,
        service_s=service_s,
        etc=etc,
        failed=failed,
        weighed=weighed,
        axles=axles[trip],
        gross_kg=gross[trip] * (1 + rng.normal(0.0, 0.01, m)),
        plate=rng.integers(0, 2**62, m)[trip],
        trip=trip,
    )


def _events(
    v: _Vehicles, ids: list[str], start_ms: int, span_s: float, tag: str
) -> list[tuple[int, int, int, Event]]:
    """(ts, topic, plaza, event) of every event inside the span (the lead-in is cut off)."""
    detected = v.arrive_s >= 0
    departed = (v.leave_s >= 0) & (v.leave_s < span_s)
    weighed = v.weighed & (v.start_s >= 0) & (v.start_s < span_s)
    rows: list[tuple[int, int, int, Event]] = []
    for i in np.flatnonzero(detected | departed | weighed):
        plaza, side = divmod(int(v.approach[i]), 2)
        pid, direction, tag_side = ids[plaza], DIRECTIONS[side], ("EN", "EX")[side]
        plate = f"{int(v.plate[i]):016x}"
        lane_id = LANES[int(v.lane[i])][0]
        axles = int(v.axles[i])
        if detected[i]:
            ts = start_ms + int(v.arrive_s[i] * 1000)
            detection = ApproachDetection(
                event_id=f"d{i}.{tag}",
                ts=ts,
                plaza_id=pid,
                direction=direction,  # type: ignore[arg-type]  # entry/exit by construction
                detector_id=f"{pid}-{tag_side}-D1",
                plate_hash=plate,
            )
            rows.append((ts, TOPIC_DETECTIONS, plaza, detection))
        if departed[i]:
            ts = start_ms + int(v.leave_s[i] * 1000)
            departure = LaneTransaction(
                event_id=f"x{i}.{tag}",
                ts=ts,
                plaza_id=pid,
                lane_id=lane_id,
                direction=direction,  # type: ignore[arg-type]  # entry/exit by construction
                payment="ETC" if v.etc[i] else "MTC",
                result="ETC_FAIL" if v.failed[i] else "OK",
                vehicle_class=f"H{axles - 1}" if v.weighed[i] else "K1",
                axles=axles,
                pass_id=f"T{int(v.trip[i])}.{tag}",
                plate_hash=plate,
                service_ms=int(v.service_s[i] * 1000),
            )
            rows.append((ts, TOPIC_TRANSACTIONS, plaza, departure))
        if weighed[i]:
            ts = start_ms + int(v.start_s[i] * 1000)
            weighing = WeighMeasurement(
                event_id=f"w{i}.{tag}",
                ts=ts,
                plaza_id=pid,
                scale_id=f"{pid}-{tag_side}-S{TRUCK_LANES.index(int(v.lane[i])) + 1}",
                station=direction,  # type: ignore[arg-type]  # entry/exit by construction
                lane_id=lane_id,
                pass_id=f"T{int(v.trip[i])}.{tag}",
                plate_hash=plate,
                axles=axles,
                gross_kg=int(v.gross_kg[i]),
            )
            rows.append((ts, TOPIC_WEIGHINGS, plaza, weighing))
    return rows


def serve_in_order(
    lane: npt.NDArray[np.int64],
    ready_s: npt.NDArray[np.float64],
    service_s: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Service start and end of vehicles served first-come first-served per lane.

    The Lindley recursion end_n = max(ready_n, end_{n-1}) + s_n, solved in closed form:
    end_n = C_n + max_{k<=n}(ready_k - C_{k-1}) with C the lane's cumulative service.
    """
    order = np.lexsort((ready_s, lane))
    g, r, s = lane[order], ready_s[order], service_s[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    total = np.cumsum(s)
    before = total - s  # cumulative service before each vehicle, over all lanes
    lane_base = np.maximum.accumulate(np.where(first, before, 0.0))
    c_prev = before - lane_base
    # Each lane's values are lifted above every earlier lane's, so the running max restarts.
    lift = np.cumsum(first) * (
        float(r.max(initial=0.0)) + float(total[-1] if len(total) else 0) + 1
    )
    peak = np.maximum.accumulate(r - c_prev + lift) - lift
    end = c_prev + s + peak
    start_out = np.empty_like(end)
    end_out = np.empty_like(end)
    start_out[order] = end - s
    end_out[order] = end
    return start_out, end_out


def _pair_exits(
    rng: np.random.Generator,
    share: float,
    entries: npt.NDArray[np.bool_],
    exits: npt.NDArray[np.bool_],
    weigh_s: npt.NDArray[np.float64],
    passes: npt.NDArray[np.int64],
) -> None:
    """Give a share of exit weighings the pass of an earlier entry weighing (in place).

    The k-th chosen exit (in time order) takes the k-th entry (in time order, all plazas):
    entries outnumber the chosen exits, so that entry was weighed earlier, at about half
    the exit's time into the run, and each entry is used once.
    """
    entry_idx = np.flatnonzero(entries)
    entry_idx = entry_idx[np.argsort(weigh_s[entry_idx], kind="stable")]
    exit_idx = np.flatnonzero(exits & (rng.random(len(exits)) < share))
    exit_idx = exit_idx[np.argsort(weigh_s[exit_idx], kind="stable")]
    k = min(len(entry_idx), len(exit_idx))
    entry_idx, exit_idx = entry_idx[:k], exit_idx[:k]
    earlier = weigh_s[entry_idx] < weigh_s[exit_idx]
    passes[exit_idx[earlier]] = passes[entry_idx[earlier]]
