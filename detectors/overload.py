"""Entry overload control (入口治超) of SPEC §4.3: an overweight truck that was let in.

The entry weighing and the lane transaction of one vehicle come on different topics, so they
are joined on (plaza_id, pass_id): the same trip id at the same plaza. Both sources are keyed
by plaza, so the stream layer keeps one `PendingOverload` per `overload_join_key(...)` (a
table with a changelog) and calls `join_overload(pending, event, thresholds)` with each entry
weighing and each entry lane transaction, whichever arrives first. Pending states older
than the join window are dropped with `is_join_expired(...)`; a weighing whose transaction
never comes raises nothing, since admission was never observed.
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
    """An entry lane transaction's result, waiting for its weighing."""

    lane_id: str
    result: TxResult
    ts: int


class PendingOverload(msgspec.Struct, frozen=True, kw_only=True):
    """One side of the weighing/transaction join, held until the other side arrives."""

    plaza_id: str
    pass_id: str
    weighing: OverweightEntry | None = None
    admission: AdmissionResult | None = None

    @property
    def first_ts(self) -> int:
        """Event time of the side that arrived."""
        sides = [s.ts for s in (self.weighing, self.admission) if s is not None]
        return min(sides)


def overload_join_key(event: WeighMeasurement | LaneTransaction) -> str:
    """The join key of an entry weighing or transaction: plaza and trip id."""
    return f"{event.plaza_id}/{event.pass_id}"


def join_overload(
    pending: PendingOverload | None,
    event: WeighMeasurement | LaneTransaction,
    thresholds: OverloadThresholds = OverloadThresholds(),
) -> tuple[PendingOverload | None, Alert | None]:
    """Advance one (plaza, pass_id) join by one entry weighing or transaction.

    Exit-side events leave the state unchanged. A weighing within its limit ends the join,
    as does a completed pair; an admitted overweight pair raises `OVERLOAD_ADMITTED`.
    """
    if isinstance(event, WeighMeasurement):
        return _join_weighing(pending, event, thresholds)
    if event.direction != "entry":
        return pending, None
    admission = AdmissionResult(lane_id=event.lane_id, result=event.result, ts=event.ts)
    if pending is not None and pending.weighing is not None:
        return None, overload_alert(
            event.plaza_id, event.pass_id, pending.weighing, admission, thresholds
        )
    return PendingOverload(
        plaza_id=event.plaza_id, pass_id=event.pass_id, admission=admission
    ), None


def _join_weighing(
    pending: PendingOverload | None, event: WeighMeasurement, thresholds: OverloadThresholds
) -> tuple[PendingOverload | None, Alert | None]:
    if event.station != "entry":
        return pending, None
    if not thresholds.is_overloaded(event.gross_kg, event.axles):
        return None, None
    weighing = OverweightEntry(
        scale_id=event.scale_id,
        lane_id=event.lane_id,
        gross_kg=event.gross_kg,
        axles=event.axles,
        ts=event.ts,
    )
    if pending is not None and pending.admission is not None:
        return None, overload_alert(
            event.plaza_id, event.pass_id, weighing, pending.admission, thresholds
        )
    return PendingOverload(plaza_id=event.plaza_id, pass_id=event.pass_id, weighing=weighing), None


def is_join_expired(
    pending: PendingOverload, watermark_ts: int, thresholds: OverloadThresholds
) -> bool:
    """Whether a half-joined state has waited past the join window at this watermark."""
    return watermark_ts - pending.first_ts > thresholds.join_window_s * 1000


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
