"""Entry/exit weighing pairs of SPEC §4.3: pairing by pass_id and the weight-discrepancy check.

The stream layer re-keys weigh measurements by `pass_id` and keeps one `WeighingRecord`
per open trip (a Faust table with a changelog serialises it with msgspec). For each
measurement it calls `pair_weighing(open_entry, measurement, horizon_ms)` and stores the
returned open entry (or deletes the key on None). Open entries are swept with
`expired_entries(...)` as the event-time watermark advances. `TripBook` does the same in
memory for backtests and tests.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from detectors.alerts import Alert, EvidenceValue, new_alert
from detectors.scales import ScaleBiasEstimate, ScaleInfo
from tollmon.events import WeighMeasurement, WeighQuality

PairOutcome = Literal["matched", "discrepant", "unmatched"]
UnmatchedReason = Literal["expired", "no_entry", "entry_too_old"]

# `tollmon_weight_pairs_total{exit_plaza}` value for entries that never met an exit:
# an empty label would read as "label absent" in PromQL.
NO_EXIT_PLAZA = "none"

# Confidence multiplier for "the scale is known to be biased in this direction" (99 %).
SUSPECT_BIAS_Z = 2.58

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class WeighingThresholds:
    """§4.3 pair thresholds (field names match the network config's `thresholds`)."""

    pair_tolerance_ratio: float = 0.05
    min_discrepancy_kg: float = 1000.0
    unpaired_horizon_s: float = 72 * 3600.0

    @property
    def horizon_ms(self) -> int:
        """The unpaired-entry horizon in event-time milliseconds."""
        return int(self.unpaired_horizon_s * 1000)


class WeighingRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The part of a weighing that pairing and the checks need; small enough for a changelog."""

    scale_id: str
    plaza_id: str
    gross_kg: int
    axles: int
    ts: int
    quality: WeighQuality = "OK"
    station: Literal["entry", "exit"] = "entry"

    @classmethod
    def of(cls, measurement: WeighMeasurement) -> WeighingRecord:
        """The record kept for one weigh measurement."""
        return cls(
            scale_id=measurement.scale_id,
            plaza_id=measurement.plaza_id,
            gross_kg=measurement.gross_kg,
            axles=measurement.axles,
            ts=measurement.ts,
            quality=measurement.quality,
            station=measurement.station,
        )


class WeighPair(msgspec.Struct, frozen=True, kw_only=True):
    """One trip's entry and exit weighing."""

    pass_id: str
    entry: WeighingRecord
    exit: WeighingRecord

    @property
    def ratio(self) -> float:
        """r = exit/entry - 1."""
        return self.exit.gross_kg / self.entry.gross_kg - 1.0

    @property
    def delta_kg(self) -> int:
        """Exit minus entry gross weight."""
        return self.exit.gross_kg - self.entry.gross_kg

    @property
    def both_ok(self) -> bool:
        """Whether both readings were of good quality (only those may feed scale bias)."""
        return self.entry.quality == "OK" and self.exit.quality == "OK"


class UnmatchedWeighing(msgspec.Struct, frozen=True, kw_only=True):
    """A weighing that will never be paired: an expired entry, or an exit without its entry."""

    pass_id: str
    record: WeighingRecord
    reason: UnmatchedReason

    @property
    def exit_plaza(self) -> str:
        """The `exit_plaza` label to count this under (`none` for an entry that never exited)."""
        exited = self.reason == "no_entry"
        return self.record.plaza_id if exited else NO_EXIT_PLAZA


class PairingOutput(msgspec.Struct, frozen=True, kw_only=True):
    """What one pairing step emits: at most one pair and any weighings now known unmatched."""

    pair: WeighPair | None = None
    unmatched: tuple[UnmatchedWeighing, ...] = ()


def pair_weighing(
    open_entry: WeighingRecord | None, measurement: WeighMeasurement, horizon_ms: int
) -> tuple[WeighingRecord | None, PairingOutput]:
    """Advance one trip's pairing state by one weighing of that trip.

    Either end may arrive first: trips are re-keyed from many plaza partitions, and in a
    fast replay one partition can run hours of event time ahead of another. The first
    weighing waits as the open record; the other end closes it into a pair, unless the
    two are more than the horizon apart (then both are unmatched). A second weighing at
    the same end replaces the first (a re-weigh).
    """
    record = WeighingRecord.of(measurement)
    pass_id = measurement.pass_id
    if open_entry is None or open_entry.station == record.station:
        return record, PairingOutput()
    entry, exit_ = (open_entry, record) if record.station == "exit" else (record, open_entry)
    if exit_.ts - entry.ts > horizon_ms:
        stale = UnmatchedWeighing(pass_id=pass_id, record=entry, reason="entry_too_old")
        exit_alone = UnmatchedWeighing(pass_id=pass_id, record=exit_, reason="no_entry")
        return None, PairingOutput(unmatched=(stale, exit_alone))
    return None, PairingOutput(pair=WeighPair(pass_id=pass_id, entry=entry, exit=exit_))


# An exit whose entry plaza has no scale never pairs; it waits only this long for an
# entry that is merely late (partitions drifting apart), not the whole trip horizon.
ORPHAN_EXIT_WAIT_MS = 2 * HOUR_MS


def wait_limit_ms(station: str, horizon_ms: int) -> int:
    """How long an open record of this station waits for the other end of its trip."""
    return min(horizon_ms, ORPHAN_EXIT_WAIT_MS) if station == "exit" else horizon_ms


def is_expired(open_entry: WeighingRecord, watermark_ts: int, horizon_ms: int) -> bool:
    """Whether an open record has waited too long at this event-time watermark."""
    return watermark_ts - open_entry.ts > wait_limit_ms(open_entry.station, horizon_ms)


def expired_entries(
    open_entries: Iterable[tuple[str, WeighingRecord]], watermark_ts: int, horizon_ms: int
) -> Iterator[UnmatchedWeighing]:
    """The open entries (pass_id, record) that expire at this watermark; the caller drops them."""
    for pass_id, record in open_entries:
        if is_expired(record, watermark_ts, horizon_ms):
            yield expired_record(pass_id, record)


def expired_record(pass_id: str, record: WeighingRecord) -> UnmatchedWeighing:
    """The unmatched outcome of an open record dropped for waiting too long."""
    reason: UnmatchedReason = "no_entry" if record.station == "exit" else "expired"
    return UnmatchedWeighing(pass_id=pass_id, record=record, reason=reason)


@dataclass
class TripBook:
    """Open weighings keyed by pass_id, in memory (the backtest's stand-in for a table)."""

    horizon_ms: int = 72 * HOUR_MS
    open_entries: dict[str, WeighingRecord] = field(default_factory=dict)
    watermark_ts: int = 0
    # (ts, pass_id) per station in arrival order, so expiry never scans the whole book.
    _queues: dict[str, deque[tuple[int, str]]] = field(
        default_factory=lambda: {"entry": deque(), "exit": deque()}
    )

    def add(self, measurement: WeighMeasurement) -> PairingOutput:
        """Pair one weighing, then expire records too old at the new watermark."""
        pass_id = measurement.pass_id
        new_open, output = pair_weighing(
            self.open_entries.pop(pass_id, None), measurement, self.horizon_ms
        )
        if new_open is not None:
            self.open_entries[pass_id] = new_open
            self._queues[new_open.station].append((new_open.ts, pass_id))
        self.watermark_ts = max(self.watermark_ts, measurement.ts)
        expired = self.expire(self.watermark_ts)
        if not expired:
            return output
        return PairingOutput(pair=output.pair, unmatched=output.unmatched + tuple(expired))

    def expire(self, watermark_ts: int) -> list[UnmatchedWeighing]:
        """Drop and return the open records too old at `watermark_ts`."""
        # Arrival order is event-time order up to the input's disorder: a late-queued old
        # record expires a little late, which `pair_weighing`'s horizon check makes harmless.
        expired: list[UnmatchedWeighing] = []
        for queue in self._queues.values():
            while queue:
                ts, pass_id = queue[0]
                record = self.open_entries.get(pass_id)
                if record is not None and record.ts == ts:
                    if not is_expired(record, watermark_ts, self.horizon_ms):
                        break
                    del self.open_entries[pass_id]
                    expired.append(expired_record(pass_id, record))
                queue.popleft()  # expired, or stale (paired or re-weighed since)
        return expired


@dataclass(frozen=True, slots=True)
class PairAssessment:
    """The verdict on one pair: its counter outcome and, when discrepant, the alert."""

    outcome: PairOutcome
    ratio: float
    delta_kg: int
    tolerance_ratio: float
    alert: Alert | None


def pair_tolerance_ratio(
    entry_scale: ScaleInfo | None, exit_scale: ScaleInfo | None, base_ratio: float
) -> float:
    """The pair tolerance: the base plus both scales' MPEs.

    Two scales each within their MPE can disagree by the sum of the MPEs, so the MPEs add
    linearly (the worst case), not in quadrature. An unknown scale is taken as class 10.
    """
    entry_mpe = entry_scale.mpe_ratio if entry_scale is not None else 0.05
    exit_mpe = exit_scale.mpe_ratio if exit_scale is not None else 0.05
    return base_ratio + entry_mpe + exit_mpe


def assess_pair(
    pair: WeighPair,
    scales: Mapping[str, ScaleInfo],
    thresholds: WeighingThresholds = WeighingThresholds(),
    biases: Mapping[str, ScaleBiasEstimate] | None = None,
) -> PairAssessment:
    """Check one pair for a weight discrepancy or an axle change (SPEC §4.3)."""
    entry_scale = scales.get(pair.entry.scale_id)
    exit_scale = scales.get(pair.exit.scale_id)
    tolerance = pair_tolerance_ratio(entry_scale, exit_scale, thresholds.pair_tolerance_ratio)
    ratio, delta = pair.ratio, pair.delta_kg
    weight_changed = abs(ratio) > tolerance and abs(delta) >= thresholds.min_discrepancy_kg
    axles_changed = pair.entry.axles != pair.exit.axles
    if not (weight_changed or axles_changed):
        return PairAssessment("matched", ratio, delta, tolerance, None)
    suspect = suspect_side(pair, biases or {}) if weight_changed else "axle count changed"
    alert = _discrepancy_alert(pair, ratio, tolerance, suspect, weight_changed, axles_changed)
    return PairAssessment("discrepant", ratio, delta, tolerance, alert)


def suspect_side(pair: WeighPair, biases: Mapping[str, ScaleBiasEstimate]) -> str:
    """Which weighing to doubt: a flagged reading, else a scale confidently biased that way.

    Exit heavier than entry is explained by an entry scale reading light or an exit scale
    reading heavy; the side whose confident bias (|b| - z·SE, in that direction) is larger
    is suspect. With neither, the trip's load most likely changed.
    """
    flagged = [
        f"{side} reading flagged {record.quality}"
        for side, record in (("entry", pair.entry), ("exit", pair.exit))
        if record.quality != "OK"
    ]
    if flagged:
        return "; ".join(flagged)
    direction = 1.0 if pair.ratio > 0 else -1.0
    candidates: list[tuple[float, str]] = []
    for side, record, sign in (("entry", pair.entry, -1.0), ("exit", pair.exit, 1.0)):
        estimate = biases.get(record.scale_id)
        if estimate is None:
            continue
        toward = sign * direction * estimate.bias_log
        confident = toward - SUSPECT_BIAS_Z * estimate.stderr_log
        if toward > 0 and confident > 0:
            candidates.append((confident, f"{side} scale {record.scale_id}"))
    if not candidates:
        return "undetermined, likely load change"
    return max(candidates)[1]


def _discrepancy_alert(
    pair: WeighPair,
    ratio: float,
    tolerance: float,
    suspect: str,
    weight_changed: bool,
    axles_changed: bool,
) -> Alert:
    entry, exit_ = pair.entry, pair.exit
    what_en = []
    what_zh = []
    if weight_changed:
        what_en.append(
            f"gross {entry.gross_kg} kg at entry vs {exit_.gross_kg} kg at exit "
            f"({ratio:+.1%}, tolerance ±{tolerance:.1%})"
        )
        what_zh.append(
            f"入口{entry.gross_kg}kg、出口{exit_.gross_kg}kg（{ratio:+.1%}，容差±{tolerance:.1%}）"
        )
    if axles_changed:
        what_en.append(f"axles {entry.axles} at entry vs {exit_.axles} at exit")
        what_zh.append(f"轴数入口{entry.axles}、出口{exit_.axles}")
    evidence: dict[str, EvidenceValue] = {
        "pass_id": pair.pass_id,
        "entry_scale": entry.scale_id,
        "entry_plaza": entry.plaza_id,
        "entry_gross_kg": entry.gross_kg,
        "entry_axles": entry.axles,
        "entry_quality": entry.quality,
        "entry_ts": entry.ts,
        "exit_scale": exit_.scale_id,
        "exit_plaza": exit_.plaza_id,
        "exit_gross_kg": exit_.gross_kg,
        "exit_axles": exit_.axles,
        "exit_quality": exit_.quality,
        "ratio": round(ratio, 5),
        "delta_kg": pair.delta_kg,
        "tolerance_ratio": round(tolerance, 5),
        "suspect": suspect,
    }
    route = f"{entry.plaza_id}/{entry.scale_id} → {exit_.plaza_id}/{exit_.scale_id}"
    return new_alert(
        kind="WEIGHT_DISCREPANCY",
        severity="warning",
        plaza_id=exit_.plaza_id,
        subject=f"trip:{pair.pass_id}",
        started_at=exit_.ts,
        summary_zh=f"通行标识{pair.pass_id}出入口称重不一致：{'；'.join(what_zh)}"
        f"（{route}）；可疑：{suspect}",
        summary_en=f"Trip {pair.pass_id} weighed inconsistently: {'; '.join(what_en)} "
        f"({route}); suspect: {suspect}",
        evidence=evidence,
        recommendation=_discrepancy_recommendation(suspect),
    )


def _discrepancy_recommendation(suspect: str) -> str:
    if "scale" in suspect and "flagged" not in suspect:
        return f"Check the {suspect} (see its SCALE_BIAS estimate) before charging or refusing."
    if "flagged" in suspect:
        return "Re-weigh if the vehicle is still on site; do not act on the flagged reading."
    return "Review the trip's lane video and records for a load change or axle manipulation."


def log_ratio(pair: WeighPair) -> float:
    """y = ln(exit/entry), the scale-bias observation of one pair."""
    return math.log(pair.exit.gross_kg / pair.entry.gross_kg)
