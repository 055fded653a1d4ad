"""Run SUMO headless on a scenario and read back one record per vehicle."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from validation.sumo.binaries import sumo_binary
from validation.sumo.scenario import (
    VEHICLE_TYPES,
    Booth,
    Layout,
    Scenario,
    Trip,
    VehicleType,
    generate_trips,
    write_detectors,
    write_network,
    write_routes,
)


@dataclass(frozen=True, slots=True)
class VehicleRecord:
    """What SUMO did with one vehicle, in simulation seconds."""

    trip: Trip
    reference_s: float
    detector_s: float
    service_start_s: float
    departure_s: float
    upstream_s: float  # crossing the second loop, D2, upstream of the detector

    @property
    def service_s(self) -> float:
        return self.departure_s - self.service_start_s


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """Every vehicle that was served, and how clean the run was."""

    records: list[VehicleRecord]
    generated: int
    teleports: int
    end_s: float


def _first_crossings(loops_xml: Path, prefix: str) -> dict[str, float]:
    crossings: dict[str, float] = {}
    for _, elem in ET.iterparse(loops_xml):
        if elem.tag == "instantOut" and elem.get("state") == "enter":
            detector = elem.get("id", "")
            if detector.startswith(prefix):
                crossings.setdefault(elem.get("vehID", ""), float(elem.get("time", "nan")))
        elem.clear()
    return crossings


def _teleports(statistics_xml: Path) -> int:
    root = ET.parse(statistics_xml).getroot()
    teleports = root.find("teleports")
    return int(teleports.get("total", "0")) if teleports is not None else 0


def run_sumo(
    work: Path, layout: Layout, trips: Sequence[Trip], seed: int, step_s: float
) -> SimulationResult:
    """Build the plaza in `work`, simulate `trips` to the last departure and join the outputs."""
    work.mkdir(parents=True, exist_ok=True)
    net = write_network(work, layout)
    additional = write_detectors(work, layout)
    routes = write_routes(work, trips, layout.booths)
    stops_xml = work / "stops.xml"
    statistics_xml = work / "statistics.xml"
    subprocess.run(
        [
            sumo_binary("sumo"),
            "--net-file",
            str(net),
            "--route-files",
            str(routes),
            "--additional-files",
            str(additional),
            "--step-length",
            f"{step_s}",
            "--seed",
            str(seed),
            "--stop-output",
            str(stops_xml),
            "--statistic-output",
            str(statistics_xml),
            # A stuck vehicle is removed and counted rather than hanging the run.
            "--time-to-teleport",
            "300",
            "--no-step-log",
            "true",
            "--no-warnings",
            "true",
        ],
        check=True,
        capture_output=True,
        cwd=work,
    )
    reference = _first_crossings(work / "loops.xml", "ref_")
    detector = _first_crossings(work / "loops.xml", "D1_")
    upstream = _first_crossings(work / "loops.xml", "D2_")
    by_id = {t.vehicle_id: t for t in trips}
    records = []
    end_s = 0.0
    for _, elem in ET.iterparse(stops_xml):
        if elem.tag == "stopinfo":
            vid = elem.get("id", "")
            trip = by_id.get(vid)
            if trip is not None and vid in reference and vid in detector and vid in upstream:
                started = float(elem.get("started", "nan"))
                ended = float(elem.get("ended", "nan"))
                records.append(
                    VehicleRecord(
                        trip, reference[vid], detector[vid], started, ended, upstream[vid]
                    )
                )
                end_s = max(end_s, ended)
        elem.clear()
    records.sort(key=lambda r: r.departure_s)
    return SimulationResult(records, len(trips), _teleports(statistics_xml), end_s)


def simulate(scenario: Scenario, work: Path) -> SimulationResult:
    """Generate the scenario's demand and simulate it."""
    return run_sumo(work, scenario.layout, generate_trips(scenario), scenario.seed, scenario.step_s)


@dataclass(frozen=True, slots=True)
class FreeFlowTimes:
    """Calibrated free-flow seconds to the barrier stop, per (vehicle type, booth)."""

    from_reference_s: dict[tuple[str, str], float]
    from_detector_s: dict[tuple[str, str], float]
    from_upstream_s: dict[tuple[str, str], float]

    def detector_mean_s(self) -> float:
        """Demand-weighted detector-to-barrier time: what a survey would configure."""
        return _demand_weighted(self.from_detector_s)

    def upstream_mean_s(self) -> float:
        """The same from the second loop, D2."""
        return _demand_weighted(self.from_upstream_s)


def _demand_weighted(by_type_and_booth: dict[tuple[str, str], float]) -> float:
    total = 0.0
    weight = 0.0
    for (vtype, _), tau in by_type_and_booth.items():
        share = next(v.share for v in VEHICLE_TYPES if v.sumo_id == vtype)
        total += share * tau
        weight += share
    return total / weight


def calibrate(work: Path, layout: Layout, step_s: float) -> FreeFlowTimes:
    """Send each vehicle type alone through each booth and time its undisturbed trip."""
    trips: list[Trip] = []
    spacing_s = 120.0
    for vtype in VEHICLE_TYPES:
        for booth in layout.booths:
            trips.append(_solo_trip(len(trips), len(trips) * spacing_s, vtype, booth))
    result = run_sumo(work, layout, trips, seed=1, step_s=step_s)
    from_reference: dict[tuple[str, str], float] = {}
    from_detector: dict[tuple[str, str], float] = {}
    from_upstream: dict[tuple[str, str], float] = {}
    for r in result.records:
        key = (r.trip.vtype.sumo_id, r.trip.booth.lane_id)
        from_reference[key] = r.service_start_s - r.reference_s
        from_detector[key] = r.service_start_s - r.detector_s
        from_upstream[key] = r.service_start_s - r.upstream_s
    if len(from_reference) != len(trips):
        raise RuntimeError("calibration lost vehicles: the plaza network is broken")
    return FreeFlowTimes(from_reference, from_detector, from_upstream)


def _solo_trip(index: int, depart_s: float, vtype: VehicleType, booth: Booth) -> Trip:
    return Trip(f"cal{index:03d}", depart_s, vtype, booth.kind, False, booth, 3.0)
