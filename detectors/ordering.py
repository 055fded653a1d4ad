"""Merge one plaza's input streams into event-time order before the detectors see them.

The four input topics are consumed independently, so one plaza's detections can
arrive behind its transactions. Events wait in a heap until every *active* blocking
source (approach detections, lane transactions) has passed their timestamp: then the
detectors see the same order whatever the interleaving, which is what makes a replay
at any speed equal the live run. Sparse sources (lane status, weighings) never hold
the others back.

A blocking source that has delivered nothing for `idle_after_s` of processing time
is idle and no longer waited for (a dead detector feed must not freeze its plaza).
Feeds that fell silent together (a broker outage, a quiet night) are waited for
again when the first of them resumes, so that topics resuming seconds apart do not
make each other late. A feed whose own events arrive out of order (a lane
controller's buffer, several detector loops behind one gateway) is held back by
`disorder_s` of event time.

A feed that delivers but lags (a detector clock running behind) holds its plaza back
by at most `max_hold_s` of processing time: events the leading feed had passed that
long ago are released whatever the laggard says. The bound is in processing time,
not event time, so that catching up on a backlog (topics read hours of event time
apart within seconds) never forces events out of order.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from mypy_extensions import mypyc_attr

from tollmon.events import ApproachDetection, Event, LaneStatus, LaneTransaction

# Same-timestamp events are taken in this order: a lane opens before its
# departures count, and arrivals are on the curve before departures at the same ms.
_RANK: dict[type, int] = {LaneStatus: 0, ApproachDetection: 1, LaneTransaction: 2}
_BLOCKING = (ApproachDetection, LaneTransaction)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
@dataclass(slots=True)
class _Source:
    watermark: int
    last_seen_s: float | None  # None: expected, not heard from yet


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class EventTimeMerger:
    """Reorders one plaza's events; `push` and `release` return the events now safe to use.

    `expected` names the blocking feeds the plaza has (transactions always, detections
    where a detector is configured): they are waited for from the first event on, so
    even the first seconds come out in order. `disorder_s` is how far a feed's own
    events may arrive out of order: each feed's watermark trails its newest event by
    that much, which adds as much to the latency.
    """

    def __init__(
        self,
        idle_after_s: float = 10.0,
        max_hold_s: float = 30.0,
        expected: tuple[type, ...] = (),
        disorder_s: float = 0.0,
    ) -> None:
        self._idle_after_s = idle_after_s
        self._disorder_ms = int(disorder_s * 1000)
        self._max_hold_s = max_hold_s
        # (processing time, leading watermark) samples, at most one per second.
        self._leading: deque[tuple[float, int]] = deque()
        self._heap: list[tuple[int, int, str, Event]] = []
        self._sources: dict[type, _Source] = {kind: _Source(-1, None) for kind in expected}
        self._started_s: float | None = None
        self._last_heard_s: float | None = None  # the newest blocking event's arrival
        self._newest = -1
        self._newest_blocking = -1
        self._released_before = -1
        self.late_events = 0  # arrived after their time had been released

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, event: Event, now_s: float) -> list[Event]:
        """Take one event (processing time `now_s`); return what can be released."""
        kind = type(event)
        ts = event.ts
        if self._started_s is None:
            self._started_s = now_s
        if kind in _BLOCKING:
            heard = self._last_heard_s
            if heard is not None and now_s - heard >= self._idle_after_s:
                self._rearm_silenced(now_s)
            self._last_heard_s = now_s
            source = self._sources.get(kind)
            if source is None:
                self._sources[kind] = _Source(ts - self._disorder_ms, now_s)
            else:
                source.watermark = max(source.watermark, ts - self._disorder_ms)
                source.last_seen_s = now_s
            # Only the dense feeds define "newest": a sparse topic read far ahead in a
            # replay must not push the others' events out early through the hold limit.
            if ts > self._newest_blocking:
                self._newest_blocking = ts
                if not self._leading or now_s - self._leading[-1][0] >= 1.0:
                    self._leading.append((now_s, ts))
                else:
                    self._leading[-1] = (self._leading[-1][0], ts)
        self._newest = max(self._newest, ts)
        if ts < self._released_before:
            self.late_events += 1
        heapq.heappush(self._heap, (ts, _RANK.get(kind, 3), event.event_id, event))
        return self.release(now_s)

    def release(self, now_s: float) -> list[Event]:
        """Every buffered event whose time every active blocking source has passed.

        Strictly before the release point: a source at watermark T may still send
        another event stamped T.
        """
        point = self._release_point(now_s)
        self._released_before = max(self._released_before, point)
        out: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] < point:
            out.append(heapq.heappop(heap)[3])
        return out

    def rearm(self, now_s: float) -> None:
        """Restart the processing-time clocks at `now_s` (state restored in a new process).

        Every feed heard from before counts as just heard from, and nothing buffered has
        waited yet: a restart neither idles a feed nor forces events out early.
        """
        if self._started_s is not None:
            self._started_s = now_s
        for source in self._sources.values():
            if source.last_seen_s is not None:
                source.last_seen_s = now_s
        if self._last_heard_s is not None:
            self._last_heard_s = now_s
        if self._leading:
            self._leading = deque([(now_s, self._leading[-1][1])])

    def _rearm_silenced(self, now_s: float) -> None:
        """The plaza wakes from silence: wait again for the feeds that went quiet with it.

        Feeds that fell silent together (a broker outage, a worker paused, a quiet night)
        resume seconds apart; without this, the first back would find its partner idle
        and make the partner's events late. A feed already dead before the plaza went
        quiet stays idle.
        """
        last = self._last_heard_s
        assert last is not None
        for source in self._sources.values():
            if source.last_seen_s is not None and last - source.last_seen_s < self._idle_after_s:
                source.last_seen_s = now_s

    def flush(self) -> list[Event]:
        """Everything still buffered, in order (end of input)."""
        out = [item[3] for item in sorted(self._heap)]
        self._heap.clear()
        return out

    def _release_point(self, now_s: float) -> int:
        # Once per event: a plain loop over the (at most two) blocking sources.
        started = self._started_s if self._started_s is not None else now_s
        idle_after_s = self._idle_after_s
        slowest: int | None = None
        for source in self._sources.values():
            last_seen_s = started if source.last_seen_s is None else source.last_seen_s
            if now_s - last_seen_s < idle_after_s and (
                slowest is None or source.watermark < slowest
            ):
                slowest = source.watermark
        if slowest is None:
            return self._newest + 1
        held = self._held_too_long(now_s)
        return slowest if slowest >= held else held

    def _held_too_long(self, now_s: float) -> int:
        """The leading watermark of `max_hold_s` ago: everything before it has waited enough."""
        leading = self._leading
        cutoff = now_s - self._max_hold_s
        point = -1
        while leading and leading[0][0] <= cutoff:
            point = leading[0][1]
            if len(leading) > 1 and leading[1][0] <= cutoff:
                leading.popleft()
            else:
                break
        return point
