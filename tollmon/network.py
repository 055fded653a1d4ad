"""The toll network (SPEC §3): plazas, their lanes, approach detectors and scales.

Read once at start-up into frozen, typed objects. Every problem in the file is
reported at once, each with its YAML path, so that an operator fixes the file
in one pass instead of one error per restart.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self, TypeGuard

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PositiveFloat,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tollmon.configfile import (
    ID_PATTERN,
    Loc,
    Problem,
    duplicate,
    mapping_items,
    misspelt_keys,
    operator_message,
    read_yaml,
    yaml_path,
)
from tollmon.errors import ConfigError
from tollmon.thresholds import Thresholds

__all__ = [
    "MPE_RATIO_BY_CLASS",
    "Approach",
    "Defaults",
    "Detector",
    "DetectorSite",
    "DirectionName",
    "Directions",
    "Lane",
    "LaneType",
    "Network",
    "Plaza",
    "Scale",
    "ScaleSite",
    "Thresholds",
    "VehicleLengths",
    "load_network",
    "mpe_ratio",
    "parse_network",
    "summarize",
]

DirectionName = Literal["entry", "exit"]
LaneType = Literal["ETC", "MTC", "MIXED"]
DIRECTION_NAMES: tuple[DirectionName, ...] = ("entry", "exit")

# OIML R134 / GB/T 21296 in-motion maximum permissible error, as a fraction of gross weight.
MPE_RATIO_BY_CLASS: Mapping[float, float] = MappingProxyType(
    {0.2: 0.001, 0.5: 0.0025, 1.0: 0.005, 2.0: 0.01, 5.0: 0.025, 10.0: 0.05}
)


def mpe_ratio(accuracy_class: float) -> float:
    """Maximum permissible in-motion error of a scale of this accuracy class, as a fraction."""
    return MPE_RATIO_BY_CLASS[float(accuracy_class)]


def _known_accuracy_class(value: float) -> float:
    if value not in MPE_RATIO_BY_CLASS:
        raise ValueError("must be one of 0.2, 0.5, 1, 2, 5, 10")
    return value


def _within(low: float, high: float) -> AfterValidator:
    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
        return value

    return AfterValidator(check)


Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Text = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
AccuracyClass = Annotated[float, AfterValidator(_known_accuracy_class)]
Latitude = Annotated[float, _within(-90, 90)]
Longitude = Annotated[float, _within(-180, 180)]


class _Node(BaseModel):
    # Operators annotate their files (stake numbers, notes), so unknown keys are kept.
    model_config = ConfigDict(frozen=True, extra="allow", allow_inf_nan=False)


class Lane(_Node):
    id: Identifier
    type: LaneType


class Detector(_Node):
    """An approach detector (loop or ANPR camera) upstream of the barriers."""

    id: Identifier
    distance_m: PositiveFloat
    free_flow_s: PositiveFloat | None = None
    # Road lanes the queue stands in where it passes the detector (the approach usually has
    # fewer lanes than the plaza); unset, the queue's length is spread over the open toll lanes.
    approach_lanes: Annotated[int, Field(ge=1, le=64)] | None = None


class Scale(_Node):
    """A weigh-in-motion scale on one lane."""

    id: Identifier
    lane: Identifier
    accuracy_class: AccuracyClass

    @property
    def mpe_ratio(self) -> float:
        return mpe_ratio(self.accuracy_class)


class Approach(_Node):
    """One side (entry or exit) of a plaza: its lanes, approach detectors and scales."""

    lanes: tuple[Lane, ...] = Field(min_length=1)
    detectors: tuple[Detector, ...] = ()
    scales: tuple[Scale, ...] = ()

    @field_validator("detectors", "scales", mode="before")
    @classmethod
    def _blank_is_empty(cls, value: object) -> object:
        # `detectors:` with nothing after it is YAML null; the operator meant "none".
        return () if value is None else value

    def lane(self, lane_id: str) -> Lane | None:
        return next((lane for lane in self.lanes if lane.id == lane_id), None)


class Directions(_Node):
    entry: Approach | None = None
    exit: Approach | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Self:
        if self.entry is None and self.exit is None:
            raise ValueError("needs an entry or an exit direction (or both)")
        return self


class Plaza(_Node):
    id: Identifier
    name: Text
    road: Text
    lat: Latitude
    lon: Longitude
    thresholds: Thresholds | None = None
    directions: Directions

    def approach(self, name: DirectionName) -> Approach | None:
        return self.directions.entry if name == "entry" else self.directions.exit

    def approaches(self) -> tuple[tuple[DirectionName, Approach], ...]:
        """The configured directions with their approach, entry first."""
        pairs = ((name, self.approach(name)) for name in DIRECTION_NAMES)
        return tuple((name, d) for name, d in pairs if d is not None)


class VehicleLengths(_Node):
    """Queue metres taken by one vehicle, per JT/T 489 class letter."""

    model_config = ConfigDict(extra="forbid")

    K: PositiveFloat = 7.5
    H: PositiveFloat = 15.0
    Z: PositiveFloat = 12.0

    def length_m(self, vehicle_class: str) -> float:
        """Length for a class such as `H3`; KeyError for an unknown class letter."""
        lengths = {"K": self.K, "H": self.H, "Z": self.Z}
        return lengths[vehicle_class[:1].upper()]


class Defaults(_Node):
    vehicle_length_m: VehicleLengths = Field(default_factory=VehicleLengths)
    thresholds: Thresholds | None = None


@dataclass(frozen=True, slots=True)
class DetectorSite:
    """Where an approach detector is: what an approach_detection's `detector_id` resolves to."""

    plaza_id: str
    direction: DirectionName
    detector_id: str
    distance_m: float
    free_flow_s: float | None


@dataclass(frozen=True, slots=True)
class ScaleSite:
    """Where a scale is and how accurate it is: what a weighing's `scale_id` resolves to."""

    plaza_id: str
    direction: DirectionName
    scale_id: str
    lane_id: str
    accuracy_class: float

    @property
    def mpe_ratio(self) -> float:
        return mpe_ratio(self.accuracy_class)


class Network(_Node):
    """The whole validated network, with the lookups the detectors need."""

    defaults: Defaults = Field(default_factory=Defaults)
    plazas: tuple[Plaza, ...] = Field(min_length=1)

    _plazas: dict[str, Plaza] = PrivateAttr(default_factory=dict)
    _detectors: dict[str, DetectorSite] = PrivateAttr(default_factory=dict)
    _scales: dict[str, ScaleSite] = PrivateAttr(default_factory=dict)
    _thresholds: dict[str, Thresholds] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _report_every_problem(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # Field validation stops short of cross-references when a field is broken, so the
        # cross-checks run on the raw data and both sets of problems are raised together.
        problems = _cross_check(data)
        try:
            network = handler(data)
        except ValidationError as exc:
            # Pydantic counts only the valid items against min_length, so a list whose every
            # item is broken would also be called empty; the item errors say it better.
            found = [e for e in exc.errors() if not (e["type"] == "too_short" and e["input"])]
            known = [*Thresholds.model_fields, *VehicleLengths.model_fields]
            problems = [(tuple(e["loc"]), operator_message(e, known)) for e in found] + problems
        else:
            if not problems:
                return network
        problems.sort(key=lambda problem: _file_order(problem[0]))
        errors = [
            InitErrorDetails(
                type=PydanticCustomError("network_config", "{message}", {"message": message}),
                loc=loc,
                input=None,
            )
            for loc, message in problems
        ]
        raise ValidationError.from_exception_data(cls.__name__, errors)

    def model_post_init(self, context: Any, /) -> None:
        network_wide = Thresholds()
        if self.defaults.thresholds is not None:
            network_wide = network_wide.overridden_by(self.defaults.thresholds)
        for plaza in self.plazas:
            self._plazas[plaza.id] = plaza
            own = plaza.thresholds
            self._thresholds[plaza.id] = (
                network_wide if own is None else network_wide.overridden_by(own)
            )
            for name, approach in plaza.approaches():
                for d in approach.detectors:
                    self._detectors[d.id] = DetectorSite(
                        plaza.id, name, d.id, d.distance_m, d.free_flow_s
                    )
                for s in approach.scales:
                    self._scales[s.id] = ScaleSite(plaza.id, name, s.id, s.lane, s.accuracy_class)

    @property
    def plaza_ids(self) -> frozenset[str]:
        return frozenset(self._plazas)

    @property
    def detector_sites(self) -> tuple[DetectorSite, ...]:
        return tuple(self._detectors.values())

    @property
    def scale_sites(self) -> tuple[ScaleSite, ...]:
        return tuple(self._scales.values())

    def plaza(self, plaza_id: str) -> Plaza | None:
        return self._plazas.get(plaza_id)

    def detector(self, detector_id: str) -> DetectorSite | None:
        return self._detectors.get(detector_id)

    def scale(self, scale_id: str) -> ScaleSite | None:
        return self._scales.get(scale_id)

    def lane_type(self, plaza_id: str, direction: DirectionName, lane_id: str) -> LaneType | None:
        """The lane's type, or None when the plaza, direction or lane is not configured."""
        plaza = self._plazas.get(plaza_id)
        side = plaza.approach(direction) if plaza is not None else None
        lane = side.lane(lane_id) if side is not None else None
        return lane.type if lane is not None else None

    def thresholds_for(self, plaza_id: str) -> Thresholds:
        """Built-in defaults, overridden by `defaults.thresholds`, then by the plaza's own.

        Raises KeyError for a plaza that is not in the network.
        """
        return self._thresholds[plaza_id]


# --- loading ---------------------------------------------------------------------------


def load_network(path: str | os.PathLike[str]) -> Network:
    """Read and validate a network YAML file; ConfigError lists every problem found."""
    data, duplicate_keys = read_yaml(path)
    try:
        network = parse_network(data, str(path))
    except ConfigError as exc:
        raise ConfigError(str(path), duplicate_keys + exc.problems) from None
    if duplicate_keys:
        raise ConfigError(str(path), duplicate_keys)
    return network


def parse_network(data: object, source: str) -> Network:
    """Validate already-loaded data; ConfigError lists every problem as `path: message`."""
    try:
        return Network.model_validate(data)
    except ValidationError as exc:
        problems = [f"{yaml_path(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(source, problems) from None


# --- cross-checks ----------------------------------------------------------------------


def _file_order(loc: Loc) -> tuple[int, int]:
    """Group problems by plaza, in file order; within a plaza keep the order found."""
    if not loc:
        return (0, 0)
    if loc[0] == "plazas":
        return (2, loc[1] if len(loc) > 1 and isinstance(loc[1], int) else -1)
    return (1, 0)


def _cross_check(data: object) -> list[Problem]:
    """Problems that span entries: duplicate ids, dangling lane references, misspelt keys."""
    if not isinstance(data, Mapping):
        return []
    problems = misspelt_keys(data, Network, ())
    base = Thresholds()
    defaults = data.get("defaults")
    if isinstance(defaults, Mapping):
        problems += misspelt_keys(defaults, Defaults, ("defaults",))
        base, found = _layer_thresholds(base, defaults.get("thresholds"))
        problems += [(("defaults", "thresholds"), message) for message in found]
        if found:
            base = Thresholds()  # so that each plaza reports only its own contradictions
    plazas: dict[str, Loc] = {}
    detectors: dict[str, Loc] = {}
    scales: dict[str, Loc] = {}
    for i, plaza in mapping_items(data.get("plazas")):
        loc: Loc = ("plazas", i)
        problems += misspelt_keys(plaza, Plaza, loc)
        problems += duplicate(plaza.get("id"), (*loc, "id"), plazas, "plaza id")
        _, found = _layer_thresholds(base, plaza.get("thresholds"))
        problems += [((*loc, "thresholds"), message) for message in found]
        directions = plaza.get("directions")
        if not isinstance(directions, Mapping):
            continue
        problems += misspelt_keys(directions, Directions, (*loc, "directions"))
        for name in DIRECTION_NAMES:
            direction = directions.get(name)
            if isinstance(direction, Mapping):
                where: Loc = (*loc, "directions", name)
                problems += _check_direction(direction, where, detectors, scales)
    return problems


def _check_direction(
    direction: Mapping[Any, Any], loc: Loc, detectors: dict[str, Loc], scales: dict[str, Loc]
) -> list[Problem]:
    problems = misspelt_keys(direction, Approach, loc)
    lanes: dict[str, Loc] = {}
    # A missing or broken lane id is reported already; checking scales against it adds noise.
    lane_ids_usable = bool(mapping_items(direction.get("lanes")))
    for j, lane in mapping_items(direction.get("lanes")):
        problems += misspelt_keys(lane, Lane, (*loc, "lanes", j))
        problems += duplicate(lane.get("id"), (*loc, "lanes", j, "id"), lanes, "lane id")
        lane_ids_usable = lane_ids_usable and isinstance(lane.get("id"), str)
    timed: list[tuple[float, float, Loc]] = []  # (distance_m, free_flow_s, where)
    for j, detector in mapping_items(direction.get("detectors")):
        where: Loc = (*loc, "detectors", j)
        problems += misspelt_keys(detector, Detector, where)
        problems += duplicate(detector.get("id"), (*where, "id"), detectors, "detector id")
        distance, free_flow = detector.get("distance_m"), detector.get("free_flow_s")
        if _positive_number(distance) and _positive_number(free_flow):
            timed.append((float(distance), float(free_flow), (*where, "free_flow_s")))
    problems += _check_free_flow_order(timed)
    for j, scale in mapping_items(direction.get("scales")):
        where = (*loc, "scales", j)
        problems += misspelt_keys(scale, Scale, where)
        problems += duplicate(scale.get("id"), (*where, "id"), scales, "scale id")
        lane_id = scale.get("lane")
        if lane_ids_usable and isinstance(lane_id, str) and lane_id not in lanes:
            problems.append(((*where, "lane"), f"no lane {lane_id!r} in this direction"))
    return problems


def _positive_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _check_free_flow_order(timed: list[tuple[float, float, Loc]]) -> list[Problem]:
    """A detector farther from the barriers takes longer to reach them at free flow."""
    problems: list[Problem] = []
    ordered = sorted(timed)
    for (near_m, near_s, _), (far_m, far_s, where) in itertools.pairwise(ordered):
        if far_m > near_m and far_s <= near_s:
            problems.append(
                (
                    where,
                    f"must exceed {near_s:g} s, the free-flow time of the detector at"
                    f" {near_m:g} m (this one is at {far_m:g} m)",
                )
            )
    return problems


def _layer_thresholds(base: Thresholds, raw: object) -> tuple[Thresholds, list[str]]:
    """Apply one layer of overrides and list the contradictions it creates."""
    if not isinstance(raw, Mapping) or not raw:
        return base, []
    try:
        override = Thresholds.model_validate(raw)
    except ValidationError:
        return base, []  # field errors are reported by the model itself
    merged = base.overridden_by(override)
    return merged, merged.inconsistencies()


# --- summary ---------------------------------------------------------------------------


def _upstream_note(approaches: list[Approach]) -> str:
    """How many approaches have a detector farther up (SPEC §4.1 spillback), and how many
    detectors stand between an approach's nearest and farthest, unused (tollmon/wiring.py)."""
    farther = unused = 0
    for approach in approaches:
        distances = [d.distance_m for d in approach.detectors]
        if len(set(distances)) > 1:
            farther += 1
            unused += sum(1 for m in distances if min(distances) < m < max(distances))
    if not farther:
        return ""
    noun = "approach" if farther == 1 else "approaches"
    note = f" ({farther} {noun} with one farther up, for the queue behind the nearest"
    return note + (f"; {unused} between those, unused)" if unused else ")")


def summarize(network: Network) -> str:
    """A few lines for `check-config`: plazas, lanes by type, detectors and scales."""
    approaches = [d for plaza in network.plazas for _, d in plaza.approaches()]
    lane_types = Counter(lane.type for d in approaches for lane in d.lanes)
    scale_sides = Counter(site.direction for site in network.scale_sites)
    roads = sorted({plaza.road for plaza in network.plazas})
    headway = sum(1 for d in approaches if not d.detectors)
    overridden = sum(
        1 for plaza in network.plazas if plaza.thresholds and plaza.thresholds.model_fields_set
    )
    lanes = ", ".join(f"{kind} {lane_types[kind]}" for kind in ("ETC", "MTC", "MIXED"))
    return "\n".join(
        [
            f"plazas: {len(network.plazas)} on {', '.join(roads)}",
            f"approaches: {len(approaches)} ({headway} without a detector, headway method)",
            f"lanes: {lane_types.total()} ({lanes})",
            f"detectors: {len(network.detector_sites)}{_upstream_note(approaches)}",
            f"scales: {len(network.scale_sites)} "
            f"(entry {scale_sides['entry']}, exit {scale_sides['exit']})",
            f"plazas with own thresholds: {overridden}",
        ]
    )
