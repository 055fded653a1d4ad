"""ETC_LANE_DEGRADED (SPEC §4.2) on fake timelines of ETC attempts."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from detectors import etc_health
from detectors.alerts import Alert
from detectors.etc_health import EtcHealthConfig, EtcHealthMonitor
from tollmon.events import LaneTransaction, Payment, TxResult

T0 = 1_700_000_000_000
LANES = ("01", "02", "03", "04", "05", "06")

FailRule = Callable[[str, int, int], bool]
"""(lane_id, attempt index on that lane, ts_ms) -> did this attempt fail?"""


def attempt(
    lane_id: str,
    ts: int,
    *,
    failed: bool,
    plaza_id: str = "URC-E01",
    payment: Payment = "ETC",
    direction: str = "entry",
) -> LaneTransaction:
    result: TxResult = "ETC_FAIL" if failed else "OK"
    return LaneTransaction(
        event_id=f"{plaza_id}-{lane_id}-{ts}",
        ts=ts,
        plaza_id=plaza_id,
        lane_id=lane_id,
        direction="entry" if direction == "entry" else "exit",
        payment=payment,
        result=result,
        vehicle_class="K1",
        axles=2,
        pass_id=f"p{ts}",
        plate_hash=f"h{ts}",
    )


def timeline(
    fails: FailRule,
    *,
    minutes: float,
    every_s: float = 4.0,
    lanes: tuple[str, ...] = LANES,
    plaza_id: str = "URC-E01",
) -> Iterator[LaneTransaction]:
    """Each lane takes an ETC attempt every `every_s`, lanes staggered within the period."""
    steps = int(minutes * 60 / every_s)
    for i in range(steps):
        for offset, lane in enumerate(lanes):
            ts = T0 + int((i * every_s + offset * every_s / len(lanes)) * 1000)
            yield attempt(lane, ts, failed=fails(lane, i, ts), plaza_id=plaza_id)


def run(monitor: EtcHealthMonitor, events: Iterator[LaneTransaction]) -> list[Alert]:
    return [alert for tx in events for alert in monitor.on_transaction(tx)]


def one_percent(lane: str, i: int, ts: int) -> bool:
    return i % 100 == 50


def lane_03_at_20_percent_for(minutes: float) -> FailRule:
    def fails(lane: str, i: int, ts: int) -> bool:
        if lane == "03" and ts < T0 + minutes * 60_000:
            return i % 5 == 0
        return i % 100 == 50

    return fails


def test_a_lane_failing_20_percent_among_lanes_at_1_percent_raises_for_that_lane_only() -> None:
    alerts = run(EtcHealthMonitor(), timeline(lane_03_at_20_percent_for(60), minutes=60))

    assert [a.status for a in alerts] == ["firing"]
    alert = alerts[0]
    assert alert.kind == "ETC_LANE_DEGRADED"
    assert alert.severity == "warning"
    assert alert.subject == "URC-E01/entry/03"
    assert alert.alert_id == f"ETC_LANE_DEGRADED:URC-E01/entry/03:{alert.started_at}"
    # Named within its first few dozen attempts (one every 4 s).
    assert alert.started_at - T0 < 40 * 4000
    evidence = alert.evidence
    assert evidence["failure_ratio"] == pytest.approx(0.2, abs=0.05)
    assert isinstance(evidence["attempts"], int)
    assert evidence["attempts"] >= 30
    assert isinstance(evidence["others_ratio"], float)
    assert evidence["others_ratio"] < 0.02
    assert isinstance(evidence["p_value"], float)
    assert evidence["p_value"] < 0.001
    assert "03" in alert.summary_zh
    assert "lane 03" in alert.summary_en
    assert "RSU" in alert.recommendation


def test_a_degraded_lane_resolves_a_full_window_after_it_recovers() -> None:
    repaired_at = T0 + 30 * 60_000
    alerts = run(EtcHealthMonitor(), timeline(lane_03_at_20_percent_for(30), minutes=120))

    assert [a.status for a in alerts] == ["firing", "resolved"]
    firing, resolved = alerts
    assert resolved.alert_id == firing.alert_id
    assert resolved.ended_at is not None
    # Old failures must first leave the window, then the lane stays clear for a
    # full window (200 attempts or 15 min) before the alert resolves.
    assert resolved.ended_at > repaired_at + 15 * 60_000
    assert resolved.ended_at < repaired_at + 45 * 60_000
    assert isinstance(resolved.evidence["failure_ratio"], float)
    assert resolved.evidence["failure_ratio"] <= 0.05


def test_the_failure_ratio_gauge_follows_the_window() -> None:
    monitor = EtcHealthMonitor()
    run(monitor, timeline(lane_03_at_20_percent_for(60), minutes=20))

    ratios = dict(monitor.failure_ratios("URC-E01"))
    assert ratios[("URC-E01", "entry", "03")] == pytest.approx(0.2, abs=0.01)
    assert ratios[("URC-E01", "entry", "01")] == pytest.approx(0.01, abs=0.01)
    assert monitor.failure_ratio("URC-E01", "entry", "03") == ratios[("URC-E01", "entry", "03")]
    assert monitor.failure_ratio("URC-E01", "exit", "03") is None
    assert monitor.failure_ratio("nowhere", "entry", "03") is None


def test_lanes_all_at_1_percent_raise_nothing() -> None:
    assert run(EtcHealthMonitor(), timeline(one_percent, minutes=240)) == []


def test_a_plaza_wide_failure_rate_is_not_blamed_on_one_lane() -> None:
    # Every lane at 20 %: an OBU population or back-office problem, not an antenna.
    alerts = run(EtcHealthMonitor(), timeline(lambda lane, i, ts: i % 5 == 0, minutes=60))
    assert alerts == []


def test_a_healthy_plaza_never_runs_the_binomial_test(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return binomtest(*args, **kwargs)  # type: ignore[arg-type]  # a pass-through spy

    monkeypatch.setattr(etc_health, "binomtest", counting)
    run(EtcHealthMonitor(), timeline(one_percent, minutes=60))
    assert calls == 0


@pytest.mark.parametrize("attempts", [1, 10, 29], ids=lambda n: f"{n}-attempts")
def test_fewer_than_30_attempts_never_raise(attempts: int) -> None:
    monitor = EtcHealthMonitor()
    run(monitor, timeline(one_percent, minutes=30))
    start = T0 + 31 * 60_000
    failing = [attempt("07", start + k * 1000, failed=True) for k in range(attempts)]
    assert run(monitor, iter(failing)) == []
    # The 30th consecutive failure is enough evidence.
    if attempts == 29:
        last = attempt("07", start + 29 * 1000, failed=True)
        assert [a.status for a in monitor.on_transaction(last)] == ["firing"]


def test_a_quiet_lane_is_judged_on_15_minutes_only() -> None:
    # One attempt every 40 s: 22 per 15 min, always below the 30-attempt minimum,
    # however badly it fails, so stale failures never accumulate into an alert.
    monitor = EtcHealthMonitor()
    busy = timeline(one_percent, minutes=180)
    quiet = (attempt("09", T0 + k * 40_000, failed=True) for k in range(180 * 60 // 40))
    events = sorted([*busy, *quiet], key=lambda tx: tx.ts)
    assert run(monitor, iter(events)) == []
    ratio = monitor.failure_ratio("URC-E01", "entry", "09")
    assert ratio == 1.0


def test_manual_payments_count_only_when_their_etc_attempt_failed() -> None:
    monitor = EtcHealthMonitor()
    monitor.on_transaction(attempt("02", T0, failed=False, payment="MTC"))
    assert monitor.failure_ratio("URC-E01", "entry", "02") is None
    monitor.on_transaction(attempt("02", T0 + 1000, failed=True, payment="MTC"))
    assert monitor.failure_ratio("URC-E01", "entry", "02") == 1.0


def test_entry_and_exit_lanes_with_the_same_id_are_different_lanes() -> None:
    monitor = EtcHealthMonitor()
    monitor.on_transaction(attempt("01", T0, failed=True, direction="entry"))
    monitor.on_transaction(attempt("01", T0 + 1, failed=False, direction="exit"))
    assert monitor.failure_ratio("URC-E01", "entry", "01") == 1.0
    assert monitor.failure_ratio("URC-E01", "exit", "01") == 0.0


def test_alert_ids_are_the_same_on_two_identical_runs() -> None:
    first = run(EtcHealthMonitor(), timeline(lane_03_at_20_percent_for(30), minutes=120))
    second = run(EtcHealthMonitor(), timeline(lane_03_at_20_percent_for(30), minutes=120))
    assert first == second
    assert [a.alert_id for a in first] == [a.alert_id for a in second]


def test_per_plaza_thresholds_override_the_defaults() -> None:
    strict = EtcHealthConfig(min_attempts=1000)
    monitor = EtcHealthMonitor(plaza_overrides={"URC-E01": strict})
    assert run(monitor, timeline(lane_03_at_20_percent_for(60), minutes=60)) == []


def random_plaza_alerts(seed: int, ratio: float, lanes: int, every_s: float) -> list[Alert]:
    rng = random.Random(seed)
    lane_ids = tuple(f"{n:02d}" for n in range(1, lanes + 1))
    monitor = EtcHealthMonitor()
    events = timeline(
        lambda lane, i, ts: rng.random() < ratio,
        minutes=120,
        every_s=every_s,
        lanes=lane_ids,
        plaza_id=f"P{seed}",
    )
    return run(monitor, events)


def test_many_plazas_at_an_equal_low_failure_ratio_raise_nothing() -> None:
    # 40 plazas x 8 lanes x 2 h at 1 %, seeded: no lane stands out, none may be named.
    for seed in range(40):
        assert random_plaza_alerts(seed, 0.01, lanes=8, every_s=6.0) == [], f"seed {seed}"


# Derandomized: a statistical property must not flake in CI.
@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    ratio=st.sampled_from([0.0, 0.002, 0.005, 0.01]),
    lanes=st.integers(2, 12),
    every_s=st.sampled_from([3.0, 10.0, 30.0]),
)
def test_equal_low_failure_ratios_raise_nothing(
    seed: int, ratio: float, lanes: int, every_s: float
) -> None:
    assert random_plaza_alerts(seed, ratio, lanes, every_s) == []
