"""The SUMO toll plaza: plain-XML network, demand with service times, and the detectors.

Geometry (x in metres, the barriers at x = 0, traffic flowing in +x):

    origin ──approach_up (n lanes)── ref loops ──▶ ... ──approach (n lanes)── D1 ──▶ split
    split ──booth_k (1 lane, 80 m, stop at the barrier)──▶ barrier_k ──out_k──▶ sink_k

A `Layout` sets the booths, the approach lanes and the detector's distance. The standard
one has six booths: three manual (MTC) on the right, three ETC on the left; booth "06" has
a failing antenna. Each approach lane feeds two booths, so vehicles pick their approach
lane by payment type well upstream, as drivers do at a signed plaza. The approach detector
D1 is a cross-section of loops at the layout's distance from the barriers; a second
cross-section far upstream (beyond any queue) times each vehicle's undisturbed progress,
which is what the ground truth's "free-flow arrival at the barrier" is measured from.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import quoteattr

import numpy as np

from validation.sumo.binaries import sumo_binary

PaymentKind = Literal["ETC", "MTC"]

BOOTH_LENGTH_M = 80.0
# The approach edge runs at least this far upstream of the detector.
APPROACH_BEYOND_DETECTOR_M = 300.0
# A second loop (D2) this far upstream of the detector, for the variants that configure one:
# where queue-warning loops stand, beyond the longest queue of the scenarios.
UPSTREAM_DETECTOR_GAP_M = 500.0
UPSTREAM_LENGTH_M = 1600.0
REFERENCE_POS_M = 100.0
# Stop line a metre before the booth's end, where the barrier is.
BARRIER_POS_M = BOOTH_LENGTH_M - 1.0
OUT_LENGTH_M = 100.0
APPROACH_SPEED_MPS = 60 / 3.6
BOOTH_SPEED_MPS = 30 / 3.6


@dataclass(frozen=True, slots=True)
class Booth:
    """One toll lane: its id in the network config, its type and its ETC failure rate."""

    lane_id: str
    kind: PaymentKind
    approach_lane: int
    etc_failure_ratio: float = 0.0

    @property
    def edge(self) -> str:
        return f"booth_{self.lane_id}"

    @property
    def out_edge(self) -> str:
        return f"out_{self.lane_id}"


BOOTHS: tuple[Booth, ...] = (
    Booth("01", "MTC", 0),
    Booth("02", "MTC", 0),
    Booth("03", "MTC", 1),
    Booth("04", "ETC", 1, 0.03),
    Booth("05", "ETC", 2, 0.03),
    # A failing antenna: its failures should stand out, and they slow the whole ETC side.
    Booth("06", "ETC", 2, 0.20),
)


@dataclass(frozen=True, slots=True)
class Layout:
    """The plaza's geometry: its booths, the approach's lanes and where the detector is."""

    booths: tuple[Booth, ...] = BOOTHS
    approach_lanes: int = 3
    detector_distance_m: float = 180.0

    def __post_init__(self) -> None:
        if self.detector_distance_m <= BOOTH_LENGTH_M:
            raise ValueError("the detector must stand upstream of the fan-out into booths")
        if {b.approach_lane for b in self.booths} != set(range(self.approach_lanes)):
            raise ValueError("every approach lane must feed at least one booth, and only those")

    @property
    def upstream_detector_m(self) -> float:
        """The second loop's distance from the barriers."""
        return self.detector_distance_m + UPSTREAM_DETECTOR_GAP_M

    @property
    def approach_length_m(self) -> float:
        """The approach edge from its start to the fan-out into booths."""
        return self.detector_distance_m - BOOTH_LENGTH_M + APPROACH_BEYOND_DETECTOR_M

    def describe(self) -> str:
        """One line for a report."""
        return (
            f"{self.approach_lanes}-lane approach, {len(self.booths)} booths ("
            + ", ".join(
                f"{b.lane_id} {b.kind}"
                + (f" {b.etc_failure_ratio:.0%} fail" if b.etc_failure_ratio else "")
                for b in self.booths
            )
            + f"), detector {self.detector_distance_m:.0f} m"
        )


STANDARD_LAYOUT = Layout()


@dataclass(frozen=True, slots=True)
class VehicleType:
    """A SUMO vehicle type and the contract's JT/T 489 class for it."""

    sumo_id: str
    vehicle_class: str
    axles: int
    length_m: float
    min_gap_m: float
    accel: float
    decel: float
    max_speed_mps: float
    share: float
    etc_share: float


VEHICLE_TYPES: tuple[VehicleType, ...] = (
    # Length plus gap match the network's queue metres per class letter (K 7.5 m, H 15 m).
    VehicleType("car", "K1", 2, 5.0, 2.5, 2.6, 4.5, 33.0, 0.85, 0.75),
    VehicleType("truck", "H3", 3, 12.0, 3.0, 1.1, 4.0, 25.0, 0.15, 0.55),
)


@dataclass(frozen=True, slots=True)
class Phase:
    """A demand phase: Poisson arrivals at `veh_per_h` for `duration_s`."""

    name: str
    duration_s: float
    veh_per_h: float


@dataclass(frozen=True, slots=True)
class ServiceModel:
    """Barrier service seconds (gamma distributed) by outcome."""

    etc_mean_s: float = 3.0
    etc_shape: float = 9.0
    mtc_mean_s: float = 14.0
    mtc_shape: float = 6.0
    etc_fail_mean_s: float = 25.0
    etc_fail_shape: float = 6.0
    min_s: float = 1.0

    def draw(self, rng: np.random.Generator, payment: PaymentKind, failed: bool) -> float:
        if failed:
            mean, shape = self.etc_fail_mean_s, self.etc_fail_shape
        elif payment == "ETC":
            mean, shape = self.etc_mean_s, self.etc_shape
        else:
            mean, shape = self.mtc_mean_s, self.mtc_shape
        return max(self.min_s, float(rng.gamma(shape, mean / shape)))


@dataclass(frozen=True, slots=True)
class Scenario:
    """One seeded run: demand phases, service model and detector options."""

    name: str
    seed: int
    phases: tuple[Phase, ...]
    service: ServiceModel = field(default_factory=ServiceModel)
    # Share of detections whose plate the ANPR camera reads.
    plate_read_ratio: float = 0.9
    step_s: float = 0.25
    layout: Layout = STANDARD_LAYOUT

    @property
    def demand_end_s(self) -> float:
        return sum(p.duration_s for p in self.phases)

    def phase_at(self, t_s: float) -> Phase:
        """The demand phase an insertion time belongs to."""
        start = 0.0
        for phase in self.phases:
            if t_s < start + phase.duration_s:
                return phase
            start += phase.duration_s
        return self.phases[-1]

    def phase_spans(self) -> list[tuple[Phase, float, float]]:
        """Each phase with its start and end in simulation seconds."""
        spans = []
        start = 0.0
        for phase in self.phases:
            spans.append((phase, start, start + phase.duration_s))
            start += phase.duration_s
        return spans


@dataclass(frozen=True, slots=True)
class Trip:
    """One generated vehicle: what it is, where it pays and for how long."""

    vehicle_id: str
    depart_s: float
    vtype: VehicleType
    payment: PaymentKind
    failed: bool
    booth: Booth
    service_s: float


# ---- network --------------------------------------------------------------------------------


def _booth_y(index: int, booths: int) -> float:
    # Booth "01" is the rightmost (negative y, traffic driving in +x keeps right).
    return (index - (booths - 1) / 2) * 3.5


def write_network(work: Path, layout: Layout) -> Path:
    """Write nodes, edges and connections as plain XML and build the .net.xml with netconvert."""
    booths = layout.booths
    split_x = -BOOTH_LENGTH_M
    approach_x = split_x - layout.approach_length_m
    origin_x = approach_x - UPSTREAM_LENGTH_M
    nodes = [
        ("origin", origin_x, 0.0),
        ("approach_start", approach_x, 0.0),
        ("split", split_x, 0.0),
    ]
    nodes += [(f"barrier_{b.lane_id}", 0.0, _booth_y(i, len(booths))) for i, b in enumerate(booths)]
    nodes += [
        (f"sink_{b.lane_id}", OUT_LENGTH_M, _booth_y(i, len(booths))) for i, b in enumerate(booths)
    ]
    (work / "plaza.nod.xml").write_text(
        "<nodes>\n"
        + "".join(
            f'  <node id="{n}" x="{x:.2f}" y="{y:.2f}" type="priority"/>\n' for n, x, y in nodes
        )
        + "</nodes>\n"
    )
    edges = [
        f'  <edge id="approach_up" from="origin" to="approach_start"'
        f' numLanes="{layout.approach_lanes}" speed="{APPROACH_SPEED_MPS:.2f}"/>',
        f'  <edge id="approach" from="approach_start" to="split"'
        f' numLanes="{layout.approach_lanes}" speed="{APPROACH_SPEED_MPS:.2f}"/>',
    ]
    for b in booths:
        # Equal lengths, so that every booth is the same distance from the detector.
        edges.append(
            f'  <edge id="{b.edge}" from="split" to="barrier_{b.lane_id}" numLanes="1"'
            f' speed="{BOOTH_SPEED_MPS:.2f}" length="{BOOTH_LENGTH_M:.1f}"/>'
        )
        edges.append(
            f'  <edge id="{b.out_edge}" from="barrier_{b.lane_id}" to="sink_{b.lane_id}"'
            f' numLanes="1" speed="{APPROACH_SPEED_MPS:.2f}" length="{OUT_LENGTH_M:.1f}"/>'
        )
    (work / "plaza.edg.xml").write_text("<edges>\n" + "\n".join(edges) + "\n</edges>\n")
    connections = [
        f'  <connection from="approach" to="{b.edge}" fromLane="{b.approach_lane}" toLane="0"/>'
        for b in booths
    ]
    (work / "plaza.con.xml").write_text(
        "<connections>\n" + "\n".join(connections) + "\n</connections>\n"
    )
    net = work / "plaza.net.xml"
    subprocess.run(
        [
            sumo_binary("netconvert"),
            "--node-files",
            str(work / "plaza.nod.xml"),
            "--edge-files",
            str(work / "plaza.edg.xml"),
            "--connection-files",
            str(work / "plaza.con.xml"),
            "--output-file",
            str(net),
            "--no-turnarounds",
            "true",
            "--no-warnings",
            "true",
        ],
        check=True,
        capture_output=True,
    )
    return net


def write_detectors(work: Path, layout: Layout) -> Path:
    """Instant induction loops (one record per vehicle) at the reference, D1 and D2
    cross-sections. Loops only record: every variant sees the same traffic."""
    detector_pos = layout.approach_length_m - (layout.detector_distance_m - BOOTH_LENGTH_M)
    upstream_edge, upstream_pos = "approach", detector_pos - UPSTREAM_DETECTOR_GAP_M
    if upstream_pos < 0:
        upstream_edge, upstream_pos = "approach_up", UPSTREAM_LENGTH_M + upstream_pos
    loops = []
    for lane in range(layout.approach_lanes):
        loops.append(
            f'  <instantInductionLoop id="ref_{lane}" lane="approach_up_{lane}"'
            f' pos="{REFERENCE_POS_M:.1f}" file="loops.xml"/>'
        )
        loops.append(
            f'  <instantInductionLoop id="D1_{lane}" lane="approach_{lane}"'
            f' pos="{detector_pos:.1f}" file="loops.xml"/>'
        )
        loops.append(
            f'  <instantInductionLoop id="D2_{lane}" lane="{upstream_edge}_{lane}"'
            f' pos="{upstream_pos:.1f}" file="loops.xml"/>'
        )
    path = work / "plaza.add.xml"
    path.write_text("<additional>\n" + "\n".join(loops) + "\n</additional>\n")
    return path


# ---- demand ---------------------------------------------------------------------------------


def _choose_booth(
    rng: np.random.Generator,
    candidates: Sequence[Booth],
    barrier_s: float,
    shadow: dict[str, list[float]],
) -> Booth:
    # Drivers join the shortest queue of their payment type as they see it: a rough shadow of
    # each booth's departures (service plus move-up) tells how many are still ahead there.
    ahead = [sum(1 for d in shadow[b.lane_id] if d > barrier_s) for b in candidates]
    fewest = min(ahead)
    best = [b for b, n in zip(candidates, ahead, strict=True) if n == fewest]
    return best[int(rng.integers(len(best)))]


def generate_trips(scenario: Scenario) -> list[Trip]:
    """Poisson insertions per phase, with class, payment, ETC failure, booth and service time."""
    rng = np.random.default_rng(scenario.seed)
    shares = np.array([v.share for v in VEHICLE_TYPES])
    shares = shares / shares.sum()
    # A rough free-flow time from insertion to the barrier, only for the booth choice.
    layout = scenario.layout
    to_barrier_s = (UPSTREAM_LENGTH_M + layout.approach_length_m) / APPROACH_SPEED_MPS + 15.0
    move_up_s = 2.5
    by_kind = {k: [b for b in layout.booths if b.kind == k] for k in ("ETC", "MTC")}
    shadow: dict[str, list[float]] = {b.lane_id: [] for b in layout.booths}
    trips: list[Trip] = []
    t = 0.0
    while True:
        rate = scenario.phase_at(t).veh_per_h / 3600.0
        t += float(rng.exponential(1.0 / rate))
        if t >= scenario.demand_end_s:
            break
        vtype = VEHICLE_TYPES[int(rng.choice(len(VEHICLE_TYPES), p=shares))]
        payment: PaymentKind = "ETC" if rng.random() < vtype.etc_share else "MTC"
        if not by_kind[payment]:  # a plaza without that kind of booth: pay at the other
            payment = "MTC" if payment == "ETC" else "ETC"
        barrier_s = t + to_barrier_s
        booth = _choose_booth(rng, by_kind[payment], barrier_s, shadow)
        failed = payment == "ETC" and rng.random() < booth.etc_failure_ratio
        service_s = scenario.service.draw(rng, payment, failed)
        lane_shadow = shadow[booth.lane_id]
        start = max(barrier_s, lane_shadow[-1] + move_up_s if lane_shadow else barrier_s)
        lane_shadow.append(start + service_s)
        if len(lane_shadow) > 200:
            del lane_shadow[:100]
        trips.append(
            Trip(f"v{len(trips):05d}", round(t, 2), vtype, payment, failed, booth, service_s)
        )
    return trips


def write_routes(work: Path, trips: Sequence[Trip], booths: Sequence[Booth]) -> Path:
    """Vehicle types, one route per booth and every vehicle with its barrier stop."""
    lines = ["<routes>"]
    for v in VEHICLE_TYPES:
        # No speed spread or dawdling: a vehicle type's free-flow trip is one calibrated number.
        lines.append(
            f'  <vType id="{v.sumo_id}" length="{v.length_m}" minGap="{v.min_gap_m}"'
            f' accel="{v.accel}" decel="{v.decel}" maxSpeed="{v.max_speed_mps}"'
            ' speedDev="0" sigma="0"/>'
        )
    for b in booths:
        lines.append(
            f'  <route id="via_{b.lane_id}" edges="approach_up approach {b.edge} {b.out_edge}"/>'
        )
    for trip in trips:
        duration = math.ceil(trip.service_s * 100) / 100
        lines.append(
            f'  <vehicle id={quoteattr(trip.vehicle_id)} type="{trip.vtype.sumo_id}"'
            f' route="via_{trip.booth.lane_id}" depart="{trip.depart_s:.2f}"'
            ' departLane="best" departSpeed="max">'
        )
        lines.append(
            f'    <stop lane="{trip.booth.edge}_0" endPos="{BARRIER_POS_M:.1f}"'
            f' duration="{duration:.2f}"/>'
        )
        lines.append("  </vehicle>")
    lines.append("</routes>")
    path = work / "plaza.rou.xml"
    path.write_text("\n".join(lines) + "\n")
    return path
