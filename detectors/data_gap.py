"""DATA_GAP of SPEC.md §4.2: a plaza that normally sends events has gone silent.

This is the one lane-health check on processing time: a dead feed produces no
event time at all. The caller passes "now" (the wall clock in the agent, a fake
clock in tests, the event-time watermark in backtest).

"Normally sends" means at least `min_events_per_hour` events in the hour before
its last event. The default, 60 (one a minute on average), makes ten silent
minutes from a live plaza a Poisson tail of e^-10 ≈ 5e-5, so a quiet rural plaza
at night is not mistaken for a dead feed, while any plaza with real traffic is
covered. A plaza that never sent anything is not watched at all.

`started_at` is the (event) time of the last event seen, so the alert id does not
change while the gap lasts, and a restart that re-reads the same events gives
the same id.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from mypy_extensions import mypyc_attr

from detectors.alerts import Alert, new_alert

_BUCKETS = 60


@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True)
class DataGapConfig:
    """Thresholds of DATA_GAP; `silence_s` is SPEC.md §4.2's 10 minutes."""

    silence_s: float = 600.0
    history_s: float = 3600.0
    min_events_per_hour: int = 60


@dataclass(slots=True)
class _Feed:
    last_seen_s: float
    last_event_ms: int
    # Events per history_s / _BUCKETS of processing time: bounded memory per plaza
    # and O(1) amortised per event, unlike a list of timestamps.
    buckets: list[int] = field(default_factory=lambda: [0] * _BUCKETS)
    newest_bucket: int = 0
    history_count: int = 0
    alert: Alert | None = None


class DataGapMonitor:
    """Tracks when each plaza last sent anything and raises DATA_GAP on long silences."""

    def __init__(self, config: DataGapConfig | None = None) -> None:
        self._config = config or DataGapConfig()
        self._bucket_s = self._config.history_s / _BUCKETS
        # Plazas still inside their silence allowance, least recently seen first,
        # so `check` touches only the plazas whose allowance has run out.
        self._live: OrderedDict[str, _Feed] = OrderedDict()
        # Plazas past the allowance (firing, or too quiet to be watched); bounded
        # by the network's plazas, since unknown plaza ids never reach detectors.
        self._silent: dict[str, _Feed] = {}

    def seen(self, plaza_id: str, now_s: float, event_ts_ms: int | None = None) -> list[Alert]:
        """An event from `plaza_id` arrived at processing time `now_s`; resolves its gap if any."""
        event_ms = int(now_s * 1000) if event_ts_ms is None else event_ts_ms
        feed = self._live.get(plaza_id)
        if feed is not None:
            # The common case, once per event: a live feed (never firing) is seen again.
            self._live.move_to_end(plaza_id)
            self._touch(feed, now_s, event_ms)
            return []
        feed = self._silent.pop(plaza_id, None)
        alerts: list[Alert] = []
        if feed is None:
            feed = _Feed(last_seen_s=now_s, last_event_ms=event_ms)
            feed.newest_bucket = self._bucket(now_s)
        elif feed.alert is not None:
            evidence = {**feed.alert.evidence, "silent_s": round(now_s - feed.last_seen_s, 1)}
            alerts.append(feed.alert.resolved(int(now_s * 1000), evidence))
            feed.alert = None
        self._touch(feed, now_s, event_ms)
        self._live[plaza_id] = feed
        return alerts

    def _touch(self, feed: _Feed, now_s: float, event_ms: int) -> None:
        self._count(feed, now_s)
        feed.last_seen_s = max(feed.last_seen_s, now_s)
        feed.last_event_ms = max(feed.last_event_ms, event_ms)

    def forget(self, plaza_id: str) -> None:
        """Stop watching a plaza whose feed now goes to another worker (a rebalance)."""
        self._live.pop(plaza_id, None)
        self._silent.pop(plaza_id, None)

    def check(self, now_s: float) -> list[Alert]:
        """Raise DATA_GAP for each watched plaza silent `silence_s` at processing time `now_s`."""
        alerts: list[Alert] = []
        while self._live:
            plaza_id, feed = next(iter(self._live.items()))
            silent_s = now_s - feed.last_seen_s
            if silent_s < self._config.silence_s:
                break
            del self._live[plaza_id]
            self._silent[plaza_id] = feed
            if feed.history_count >= self._config.min_events_per_hour:
                feed.alert = _gap_alert(plaza_id, feed, silent_s)
                alerts.append(feed.alert)
        return alerts

    def firing(self) -> Iterator[Alert]:
        """The alerts currently firing (for re-sending and for the firing gauge)."""
        for feed in self._silent.values():
            if feed.alert is not None:
                yield feed.alert

    def _bucket(self, now_s: float) -> int:
        return int(now_s // self._bucket_s)

    def _count(self, feed: _Feed, now_s: float) -> None:
        bucket = self._bucket(now_s)
        if bucket == feed.newest_bucket:
            feed.buckets[bucket % _BUCKETS] += 1
            feed.history_count += 1
            return
        # Zero the buckets that fell out of the hour; at most _BUCKETS of them.
        stale = min(bucket - feed.newest_bucket, _BUCKETS)
        for step in range(1, stale + 1):
            slot = (feed.newest_bucket + step) % _BUCKETS
            feed.history_count -= feed.buckets[slot]
            feed.buckets[slot] = 0
        feed.newest_bucket = max(feed.newest_bucket, bucket)
        # A processing time behind the newest bucket (a clock step back) counts as newest.
        feed.buckets[feed.newest_bucket % _BUCKETS] += 1
        feed.history_count += 1


def _gap_alert(plaza_id: str, feed: _Feed, silent_s: float) -> Alert:
    minutes = silent_s / 60
    return new_alert(
        kind="DATA_GAP",
        severity="critical",
        plaza_id=plaza_id,
        subject=plaza_id,
        started_at=feed.last_event_ms,
        summary_zh=(
            f"收费站{plaza_id}已{minutes:.0f}分钟未上传任何数据"
            f"（此前一小时{feed.history_count}条），排队与设备监测对该站失效"
        ),
        summary_en=(
            f"No events from plaza {plaza_id} for {minutes:.0f} min "
            f"({feed.history_count} in the hour before); queue and lane monitoring are blind there"
        ),
        evidence={
            "silent_s": round(silent_s, 1),
            "last_event_at": feed.last_event_ms,
            "events_last_hour": feed.history_count,
        },
        recommendation=(
            "检查该站车道系统与数据上传链路（站级服务器、网络、消息生产端）；"
            "恢复前请通过视频或电话确认现场通行情况。 / "
            "Check the plaza's lane system and uplink (plaza server, network, Kafka "
            "producer); until data resumes, confirm traffic on site by CCTV or phone."
        ),
    )
