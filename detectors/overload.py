"""Entry overload control (入口治超) of SPEC §4.3: an overweight truck that was let in.

The entry weighing and the lane transaction of one vehicle come on different topics, so they
are joined on (plaza_id, pass_id): the same trip id at the same plaza. Both sources are keyed
by plaza, so each plaza's events reach one `OverloadJoin`, in event time, whichever side of
a trip comes first. Sides older than the join window are dropped; a weighing whose
transaction never comes raises nothing, since admission was never observed.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from detectors.alerts import Alert, new_alert
from tollmon.events import LaneTransaction, TxResult, WeighMeasurement

# Gross-weight limits by axle count (GB 1589); the highest key covers every larger count.
DEFAULT_OVERLOAD_LIMITS_KG: tuple[tuple[int, int], ...] = (
    (2, 18_000),
    (3, 25_000),
    (4, 31_000),
    (5, 43_000),
    (6, 49_000),
)


def limit_for_axles(table: tuple[tuple[int, int], ...], axles: int) -> int:
    """The limit of the row with the most axles not above `axles` ((min_axles, kg) rows)."""
    limit = table[0][1]
    for min_axles, kg in table:
        if axles >= min_axles:
            limit = kg
    return limit


@dataclass(frozen=True, slots=True)
class OverloadThresholds:
    """Gross limits by axle count (GB 1589; the highest key covers every larger count)."""

    overload_limits_kg: tuple[tuple[int, int], ...] = DEFAULT_OVERLOAD_LIMITS_KG
    overload_tolerance_ratio: float = 0.05
    # Weighing and barrier are metres apart; minutes cover a queue between them.
    join_window_s: float = 15 * 60.0

    def limit_kg(self, axles: int) -> int:
        """The legal gross weight for a vehicle with this many axles."""
        return limit_for_axles(self.overload_limits_kg, axles)

    def is_overloaded(self, gross_kg: int, axles: int) -> bool:
        """Whether a gross weight exceeds the axle limit by more than the tolerance."""
        return gross_kg > self.limit_kg(axles) * (1.0 + self.overload_tolerance_ratio)


class OverweightEntry(msgspec.Struct, frozen=True, kw_only=True):
    """An entry weighing above its axle limit, waiting for its lane transaction."""

    scale_id: str
    lane_id: str
    gross_kg: int
    axles: int
    ts: int


class AdmissionResult(msgspec.Struct, frozen=True, kw_only=True):
    """An entry lane transaction's result, as it joins its weighing."""

    lane_id: str
    result: TxResult
    ts: int


# A held admission is one int: its time in ms times this, plus the code of its (lane,
# result). An hour at a busy plaza holds a couple of hundred trucks' admissions, most
# of them never joined (their weighing was legal, or came first), so they are kept as
# small as a dict entry can be.
_SIDE_CODES = 1 << 16


class OverloadJoin:
    """The half-joined entry weighings and admissions of one plaza, oldest first.

    `observe` takes each entry weighing and entry lane transaction of the plaza in event
    time, whichever side of a trip comes first, and returns `OVERLOAD_ADMITTED` when an
    overweight weighing meets an admission that was not REJECTED. A legal weighing ends
    its trip's join; exit-side events change nothing. `expire` drops the sides that have
    waited longer than the join window.
    """

    def __init__(self, thresholds: OverloadThresholds = OverloadThresholds()) -> None:
        self.thresholds = thresholds
        self._admissions: dict[str, int] = {}  # pass_id -> packed (ts, lane and result)
        self._weighings: dict[str, OverweightEntry] = {}  # pass_id -> overweight weighing
        self._sides: list[tuple[str, TxResult]] = []  # code -> (lane_id, result)
        self._codes: dict[tuple[str, TxResult], int] = {}

    def __len__(self) -> int:
        """Trips with one side held."""
        return len(self._admissions) + len(self._weighings)

    def observe(self, event: WeighMeasurement | LaneTransaction) -> Alert | None:
        """Advance the trip's join by one event; the alert of an admitted overload, if any."""
        if isinstance(event, WeighMeasurement):
            return self._weighing(event)
        if event.direction != "entry":
            return None
        weighing = self._weighings.pop(event.pass_id, None)
        if weighing is not None:
            admission = AdmissionResult(lane_id=event.lane_id, result=event.result, ts=event.ts)
            return overload_alert(
                event.plaza_id, event.pass_id, weighing, admission, self.thresholds
            )
        self._admissions.pop(event.pass_id, None)  # a repeat moves to the young end
        self._admissions[event.pass_id] = event.ts * _SIDE_CODES + self._code(
            event.lane_id, event.result
        )
        return None

    def expire(self, watermark_ts: int) -> None:
        """Drop every side that has waited past the join window at this watermark."""
        oldest_kept = watermark_ts - self.thresholds.join_window_s * 1000
        admissions = self._admissions
        while admissions:
            pass_id, packed = next(iter(admissions.items()))
            if packed // _SIDE_CODES >= oldest_kept:
                break
            del admissions[pass_id]
        weighings = self._weighings
        while weighings:
            pass_id, weighing = next(iter(weighings.items()))
            if weighing.ts >= oldest_kept:
                break
            del weighings[pass_id]

    def _weighing(self, event: WeighMeasurement) -> Alert | None:
        if event.station != "entry":
            return None
        packed = self._admissions.pop(event.pass_id, None)
        self._weighings.pop(event.pass_id, None)  # a weighing again replaces the first
        if not self.thresholds.is_overloaded(event.gross_kg, event.axles):
            return None
        weighing = OverweightEntry(
            scale_id=event.scale_id,
            lane_id=event.lane_id,
            gross_kg=event.gross_kg,
            axles=event.axles,
            ts=event.ts,
        )
        if packed is not None:
            ts, code = divmod(packed, _SIDE_CODES)
            lane_id, result = self._sides[code]
            admission = AdmissionResult(lane_id=lane_id, result=result, ts=ts)
            return overload_alert(
                event.plaza_id, event.pass_id, weighing, admission, self.thresholds
            )
        self._weighings[event.pass_id] = weighing
        return None

    def _code(self, lane_id: str, result: TxResult) -> int:
        code = self._codes.get((lane_id, result))
        if code is None:
            code = len(self._sides)
            if code == _SIDE_CODES:
                raise ValueError(f"more than {_SIDE_CODES} lane and result pairs at one plaza")
            self._sides.append((lane_id, result))
            self._codes[(lane_id, result)] = code
        return code


def overload_alert(
    plaza_id: str,
    pass_id: str,
    weighing: OverweightEntry,
    admission: AdmissionResult,
    thresholds: OverloadThresholds = OverloadThresholds(),
) -> Alert | None:
    """`OVERLOAD_ADMITTED` for an overweight entry weighing whose transaction was not REJECTED."""
    if admission.result == "REJECTED":
        return None
    if not thresholds.is_overloaded(weighing.gross_kg, weighing.axles):
        return None
    limit = thresholds.limit_kg(weighing.axles)
    over = weighing.gross_kg / limit - 1.0
    return new_alert(
        kind="OVERLOAD_ADMITTED",
        severity="warning",
        plaza_id=plaza_id,
        subject=f"trip:{pass_id}",
        started_at=admission.ts,
        summary_zh=f"入口超限车辆被放行：{weighing.axles}轴车总重{weighing.gross_kg}kg，"
        f"限值{limit}kg（超{over:.1%}），车道{admission.lane_id}结果{admission.result}",
        summary_en=f"Overloaded truck admitted at entry: {weighing.axles} axles, "
        f"{weighing.gross_kg} kg against a {limit} kg limit ({over:+.1%}), "
        f"lane {admission.lane_id} result {admission.result}",
        evidence={
            "pass_id": pass_id,
            "scale": weighing.scale_id,
            "weigh_lane": weighing.lane_id,
            "lane": admission.lane_id,
            "gross_kg": weighing.gross_kg,
            "axles": weighing.axles,
            "limit_kg": limit,
            "over_ratio": round(over, 4),
            "tolerance_ratio": thresholds.overload_tolerance_ratio,
            "result": admission.result,
            "weighed_at": weighing.ts,
        },
        recommendation="Stop the vehicle before it joins the expressway or notify the "
        "enforcement post downstream; review why the entry lane did not refuse it.",
    )
