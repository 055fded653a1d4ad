"""ETC_LANE_DEGRADED of SPEC.md §4.2: a lane whose ETC transactions fail far more than its peers'.

Reading of the window ("its last 200 ETC attempts (or 15 min)"): a lane's window
holds its last `window_attempts` ETC attempts and, of those, only the ones within
`window_s` of the plaza's event-time watermark. A busy lane is judged on its last
200 attempts; a quiet lane on the last 15 minutes, so a failure burst an hour ago
no longer counts against a lane that has barely been used since.

An attempt is a lane_transaction with payment ETC or result ETC_FAIL (a failed OBU
transaction may be recorded with the manual payment that finished it); a failure
is result ETC_FAIL. "The plaza's other lanes" pools every other lane of the plaza,
both directions: the OBU population and the RSU make are shared, and a single
direction often has too few ETC lanes to form a reference.

Significance ("a binomial test at p < 0.001"): the window slides, so a lane is
tested after every attempt, and a per-test level of 0.001 would make healthy lanes
raise often. Simulated on 3,200 lane-hours with every lane at the same ratio, the
per-test level gave 85 false alerts at a 2 % failure ratio and 136 at 3 %; a
typical 12-lane plaza would page a few times a day. `p_value` is therefore read as
the chance that a healthy lane raises within one window, split Bonferroni-style
over the window's `window_attempts` looks (each test at 0.001 / 200 = 5e-6). The
same simulation then gives 0 false alerts at 1 %, 6 at 2 % and 4 at 3 %, and a
lane failing 20 % among lanes at 1 % is still named within its first 30-40 attempts.

Cost: O(1) amortised per transaction. The binomial test only runs when the
cheap conditions (attempts, ratio above 5 % and above 3x the others) hold and
the probability of exactly the observed failures, a lower bound of the p-value,
does not already rule significance out.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from mypy_extensions import mypyc_attr
from scipy.stats import binomtest

from detectors.alerts import Alert, EvidenceValue, new_alert
from tollmon.events import Direction, LaneTransaction

LaneKey = tuple[str, str, str]
"""(plaza_id, direction, lane_id)."""

DIRECTION_ZH: Mapping[str, str] = {"entry": "入口", "exit": "出口"}


@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class EtcHealthConfig:
    """Thresholds of ETC_LANE_DEGRADED; the defaults are those of SPEC.md §4.2."""

    window_attempts: int = 200
    window_s: float = 900.0
    min_attempts: int = 30
    min_ratio: float = 0.05
    others_multiple: float = 3.0
    # Chance that a healthy lane raises within one window (see the module note).
    p_value: float = 0.001
    # The binomial test's reference ratio never drops below this, so that a plaza
    # whose other lanes happen to show no failure (or that has no other ETC lane)
    # still holds a lane to a realistic healthy ratio rather than to perfection.
    reference_floor: float = 0.01
    # How often (event time) every lane of a plaza is aged, so that lanes that
    # went quiet leave the pooled reference and firing lanes can resolve.
    sweep_every_s: float = 30.0

    @property
    def p_value_per_test(self) -> float:
        """The level each sliding-window test must pass: `p_value` over the window's looks."""
        return self.p_value / self.window_attempts


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class _AttemptWindow:
    """A lane's last attempts as a ring of `ts_ms * 2 + failed`, oldest first.

    A packed array keeps a full window at 1.6 kB, which matters at thousands of
    plazas of a dozen lanes each; a deque of tuples would cost about ten times more.
    """

    __slots__ = ("_buf", "_head", "attempts", "failures")

    def __init__(self, capacity: int) -> None:
        self._buf = array("q", bytes(8 * capacity))
        self._head = 0
        self.attempts = 0
        self.failures = 0

    def push(self, ts_ms: int, failed: bool) -> tuple[int, int]:
        """Append one attempt, evicting the oldest when full; returns (Δattempts, Δfailures)."""
        capacity = len(self._buf)
        d_attempts, d_failures = 1, int(failed)
        if self.attempts == capacity:
            d_attempts -= 1
            d_failures -= self._buf[self._head] & 1
            self._buf[self._head] = ts_ms * 2 + failed
            self._head = (self._head + 1) % capacity
        else:
            self._buf[(self._head + self.attempts) % capacity] = ts_ms * 2 + failed
        self.attempts += d_attempts
        self.failures += d_failures
        return d_attempts, d_failures

    def evict_before(self, cutoff_ms: int) -> tuple[int, int]:
        """Drop attempts older than `cutoff_ms`; returns (Δattempts, Δfailures), both ≤ 0."""
        capacity = len(self._buf)
        removed = removed_failures = 0
        # Slightly out-of-order events stay until the ones before them expire: the
        # window is approximate by the disorder, never by more.
        while self.attempts and (self._buf[self._head] >> 1) < cutoff_ms:
            removed_failures += self._buf[self._head] & 1
            self._head = (self._head + 1) % capacity
            self.attempts -= 1
            removed += 1
        self.failures -= removed_failures
        return -removed, -removed_failures


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
@dataclass(slots=True)
class _Lane:
    direction: Direction
    lane_id: str
    window: _AttemptWindow
    alert: Alert | None = None
    # While firing: since when (event time) and over how many attempts the lane
    # has stayed under the raise thresholds.
    clear_since_ms: int | None = None
    clear_attempts: int = 0


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
@dataclass(slots=True)
class _Plaza:
    config: EtcHealthConfig
    lanes: dict[tuple[str, str], _Lane] = field(default_factory=dict)
    # Pooled over every lane's window, so "the others" is one subtraction.
    attempts: int = 0
    failures: int = 0
    watermark_ms: int = 0
    next_sweep_ms: int = 0


@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class _Verdict:
    attempts: int
    failures: int
    others_attempts: int
    others_failures: int

    @property
    def ratio(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0

    @property
    def others_ratio(self) -> float:
        return self.others_failures / self.others_attempts if self.others_attempts else 0.0

    def above_thresholds(self, config: EtcHealthConfig) -> bool:
        ratio = self.ratio
        return ratio > config.min_ratio and ratio > config.others_multiple * self.others_ratio

    def p_value(self, config: EtcHealthConfig) -> float | None:
        """One-sided binomial p-value against the others; None when surely not significant."""
        reference = max(self.others_ratio, config.reference_floor)
        if _binom_pmf(self.failures, self.attempts, reference) >= config.p_value_per_test:
            return None
        return float(
            binomtest(self.failures, self.attempts, reference, alternative="greater").pvalue
        )


def _binom_pmf(k: int, n: int, p: float) -> float:
    """P(X = k) for X ~ Bin(n, p) with 0 < p < 1: a cheap lower bound of P(X >= k)."""
    log_pmf = (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    return math.exp(log_pmf)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class EtcHealthMonitor:
    """Watches every lane's ETC failure ratio and raises/resolves ETC_LANE_DEGRADED."""

    def __init__(
        self,
        config: EtcHealthConfig | None = None,
        plaza_overrides: Mapping[str, EtcHealthConfig] | None = None,
    ) -> None:
        self._config = config or EtcHealthConfig()
        self._overrides = dict(plaza_overrides or {})
        self._plazas: dict[str, _Plaza] = {}

    def on_transaction(self, tx: LaneTransaction) -> list[Alert]:
        """Take one lane transaction; returns the alerts it raises or resolves."""
        plaza = self._plaza(tx.plaza_id)
        alerts = self._advance(tx.plaza_id, plaza, tx.ts)
        if tx.payment != "ETC" and tx.result != "ETC_FAIL":
            return alerts
        lane = plaza.lanes.get((tx.direction, tx.lane_id))
        if lane is None:
            lane = _Lane(tx.direction, tx.lane_id, _AttemptWindow(plaza.config.window_attempts))
            plaza.lanes[(tx.direction, tx.lane_id)] = lane
        self._apply(plaza, lane.window.evict_before(self._cutoff(plaza)))
        self._apply(plaza, lane.window.push(tx.ts, tx.result == "ETC_FAIL"))
        if _far_from_raising(lane, plaza.config):
            return alerts
        alert = self._evaluate(tx.plaza_id, plaza, lane, tx.ts, attempt=True)
        if alert is not None:
            alerts.append(alert)
        return alerts

    def advance(self, plaza_id: str, ts_ms: int) -> list[Alert]:
        """Move a plaza's event time on without a transaction (e.g. a status or detector event)."""
        plaza = self._plazas.get(plaza_id)
        return [] if plaza is None else self._advance(plaza_id, plaza, ts_ms)

    def failure_ratio(self, plaza_id: str, direction: str, lane_id: str) -> float | None:
        """A lane's windowed ETC failure ratio; None when no attempt is in its window."""
        plaza = self._plazas.get(plaza_id)
        lane = None if plaza is None else plaza.lanes.get((direction, lane_id))
        if lane is None or not lane.window.attempts:
            return None
        return lane.window.failures / lane.window.attempts

    def failure_ratios(self, plaza_id: str) -> Iterator[tuple[LaneKey, float]]:
        """Every lane of a plaza with attempts in its window, for `tollmon_etc_failure_ratio`."""
        plaza = self._plazas.get(plaza_id)
        if plaza is None:
            return
        for (direction, lane_id), lane in plaza.lanes.items():
            if lane.window.attempts:
                yield (plaza_id, direction, lane_id), lane.window.failures / lane.window.attempts

    def firing(self) -> Iterator[Alert]:
        """The alerts currently firing (for re-sending and for the firing gauge)."""
        for plaza in self._plazas.values():
            for lane in plaza.lanes.values():
                if lane.alert is not None:
                    yield lane.alert

    def _plaza(self, plaza_id: str) -> _Plaza:
        plaza = self._plazas.get(plaza_id)
        if plaza is None:
            plaza = _Plaza(self._overrides.get(plaza_id, self._config))
            self._plazas[plaza_id] = plaza
        return plaza

    @staticmethod
    def _cutoff(plaza: _Plaza) -> int:
        return plaza.watermark_ms - int(plaza.config.window_s * 1000)

    @staticmethod
    def _apply(plaza: _Plaza, delta: tuple[int, int]) -> None:
        plaza.attempts += delta[0]
        plaza.failures += delta[1]

    def _advance(self, plaza_id: str, plaza: _Plaza, ts_ms: int) -> list[Alert]:
        if ts_ms <= plaza.watermark_ms:
            return []
        plaza.watermark_ms = ts_ms
        if ts_ms < plaza.next_sweep_ms:
            return []
        plaza.next_sweep_ms = ts_ms + int(plaza.config.sweep_every_s * 1000)
        return self._sweep(plaza_id, plaza)

    def _sweep(self, plaza_id: str, plaza: _Plaza) -> list[Alert]:
        """Age every lane; resolve firing lanes that stayed clear long enough; forget idle lanes."""
        cutoff = self._cutoff(plaza)
        for lane in plaza.lanes.values():
            self._apply(plaza, lane.window.evict_before(cutoff))
        alerts: list[Alert] = []
        idle: list[tuple[str, str]] = []
        for key, lane in plaza.lanes.items():
            if lane.alert is not None:
                alert = self._evaluate(plaza_id, plaza, lane, plaza.watermark_ms, attempt=False)
                if alert is not None:
                    alerts.append(alert)
            if lane.alert is None and not lane.window.attempts:
                idle.append(key)
        # Idle lanes hold no evidence; dropping them keeps memory to lanes in use.
        for key in idle:
            del plaza.lanes[key]
        return alerts

    def _evaluate(
        self, plaza_id: str, plaza: _Plaza, lane: _Lane, ts_ms: int, *, attempt: bool
    ) -> Alert | None:
        config = plaza.config
        verdict = _Verdict(
            attempts=lane.window.attempts,
            failures=lane.window.failures,
            others_attempts=plaza.attempts - lane.window.attempts,
            others_failures=plaza.failures - lane.window.failures,
        )
        if lane.alert is None:
            if verdict.attempts < config.min_attempts or not verdict.above_thresholds(config):
                return None
            p_value = verdict.p_value(config)
            if p_value is None or p_value >= config.p_value_per_test:
                return None
            lane.alert = _degraded_alert(plaza_id, lane, ts_ms, verdict, p_value, config)
            lane.clear_since_ms, lane.clear_attempts = None, 0
            return lane.alert
        # Clearing uses the ratio thresholds only: a lane whose recent evidence is
        # too thin to be significant is not yet shown to be repaired.
        if verdict.above_thresholds(config):
            lane.clear_since_ms, lane.clear_attempts = None, 0
            return None
        if lane.clear_since_ms is None:
            lane.clear_since_ms, lane.clear_attempts = ts_ms, 0
        lane.clear_attempts += attempt
        clear_until_ms = lane.clear_since_ms + int(config.window_s * 1000)
        if ts_ms >= clear_until_ms:
            ended_at = clear_until_ms
        elif lane.clear_attempts >= config.window_attempts:
            ended_at = ts_ms
        else:
            return None
        resolved = lane.alert.resolved(ended_at, _evidence(lane, verdict, None, config))
        lane.alert, lane.clear_since_ms, lane.clear_attempts = None, None, 0
        return resolved


def _far_from_raising(lane: _Lane, config: EtcHealthConfig) -> bool:
    """The first checks of a raise, done without building a verdict: true for most lanes."""
    attempts, failures = lane.window.attempts, lane.window.failures
    return lane.alert is None and (
        attempts < config.min_attempts
        or (failures / attempts if attempts else 0.0) <= config.min_ratio
    )


def _evidence(
    lane: _Lane, verdict: _Verdict, p_value: float | None, config: EtcHealthConfig
) -> dict[str, EvidenceValue]:
    return {
        "direction": lane.direction,
        "lane_id": lane.lane_id,
        "failure_ratio": round(verdict.ratio, 4),
        "attempts": verdict.attempts,
        "failures": verdict.failures,
        "others_ratio": round(verdict.others_ratio, 4),
        "others_attempts": verdict.others_attempts,
        "others_failures": verdict.others_failures,
        "p_value": p_value,
        "p_value_threshold": config.p_value_per_test,
        "window_attempts": config.window_attempts,
        "window_s": config.window_s,
    }


def _degraded_alert(
    plaza_id: str,
    lane: _Lane,
    ts_ms: int,
    verdict: _Verdict,
    p_value: float,
    config: EtcHealthConfig,
) -> Alert:
    lane_label = f"{lane.direction} lane {lane.lane_id}"
    return new_alert(
        kind="ETC_LANE_DEGRADED",
        severity="warning",
        plaza_id=plaza_id,
        subject=lane_subject(plaza_id, lane.direction, lane.lane_id),
        started_at=ts_ms,
        summary_zh=(
            f"{plaza_id} {DIRECTION_ZH[lane.direction]}{lane.lane_id}号车道ETC交易失败率"
            f"{verdict.ratio:.1%}（最近{verdict.attempts}次中失败{verdict.failures}次），"
            f"本站其他车道为{verdict.others_ratio:.1%}"
        ),
        summary_en=(
            f"ETC failure ratio of {lane_label} at {plaza_id} is {verdict.ratio:.1%} "
            f"({verdict.failures} of its last {verdict.attempts} attempts) against "
            f"{verdict.others_ratio:.1%} on the plaza's other lanes"
        ),
        evidence=_evidence(lane, verdict, p_value, config),
        recommendation=(
            f"检查{DIRECTION_ZH[lane.direction]}{lane.lane_id}号车道RSU天线与OBU读写设备；"
            "修复前通过情报板引导ETC车辆走其他ETC车道，或在该车道安排人工处理。 / "
            f"Inspect the RSU antenna and OBU reader of {lane_label}; until repaired, "
            "route ETC traffic to the other ETC lanes (message signs) or staff the lane "
            "for manual handling."
        ),
    )


def lane_subject(plaza_id: str, direction: str, lane_id: str) -> str:
    """The alert subject naming one lane: `plaza/direction/lane`."""
    return f"{plaza_id}/{direction}/{lane_id}"
