"""Bounded cumulative-count curves over event time: the A(t) and D(t) of input-output analysis."""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right

from mypy_extensions import mypyc_attr

# Compact the backing array once this many entries, and an eighth of them, have been
# pruned off the front: at most an eighth of the storage holds forgotten units.
_COMPACT_AFTER = 1024
# Times are kept as 32-bit millisecond offsets from an origin, so about 24 days ahead.
_MAX_OFFSET = 2**31 - 1


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class CumulativeCurve:
    """A non-decreasing step curve of counts over time, forgetting units older than a horizon.

    Each unit counted is one entry: the time it was counted at, as a 32-bit offset in
    milliseconds from the curve's origin (4 bytes a unit). The k-th unit's time is then
    an index away, and the count at a time is a bisection. An hour of a busy approach is
    thousands of units per curve and each approach keeps four curves, so this is most of
    a plaza's memory: (time, count) pairs of 64-bit values took 16 bytes a point, and
    boxed ints in lists 4-5 times that. Detectors report small batches (SPEC §2:
    `count`), so a unit per entry costs little more than a point per batch would.
    """

    __slots__ = ("_base", "_forgotten_ms", "_head", "_horizon_ms", "_origin", "_ts", "total")

    def __init__(self, horizon_s: float) -> None:
        self._horizon_ms = round(horizon_s * 1000)
        self._ts = array("i")  # offsets from _origin (ms), non-decreasing
        self._origin = 0
        self._head = 0  # index of the oldest unit kept; those before it are forgotten
        self._base = 0  # units deleted from the front of _ts by compaction
        self._forgotten_ms: int | None = None  # time of the latest unit forgotten
        self.total = 0

    def add(self, ts_ms: int, count: int = 1) -> int:
        """Add `count` at ts_ms and return the cumulative total including them."""
        ts = self._ts
        if not ts:
            self._origin = ts_ms
        offset = ts_ms - self._origin
        # A slightly late unit is kept at the curve's last time so that the curve stays sorted.
        if ts and offset < ts[-1]:
            offset = ts[-1]
        if offset > _MAX_OFFSET:
            self._rebase(ts_ms)
            offset = ts_ms - self._origin
        if count == 1:
            self._ts.append(offset)
        else:
            self._ts.extend([offset] * count)
        self.total += count
        return self.total

    def count_at(self, ts_ms: int) -> int:
        """The cumulative count at ts_ms (units at exactly ts_ms included)."""
        # Forgotten units are counted as one step at the oldest kept time.
        return self._base + bisect_right(self._ts, ts_ms - self._origin, lo=self._head)

    def time_of(self, index: int) -> int | None:
        """When the count first reached `index` (the index-th unit's time); None if not yet."""
        if index > self.total or len(self._ts) == self._head:
            return None
        # Units before the horizon are gone; the oldest kept time is the best lower bound.
        position = max(index - self._base - 1, self._head)
        return self._origin + self._ts[position]

    def latest_at(self, ts_ms: int) -> int | None:
        """Time of the latest unit at or before ts_ms, forgotten or not; None if none.

        Exact from the last horizon on. Before the kept units it is the last unit
        forgotten, as `count_at` counts every forgotten unit there.
        """
        position = bisect_right(self._ts, ts_ms - self._origin, lo=self._head)
        if position > self._head:
            return self._origin + self._ts[position - 1]
        return self._forgotten_ms

    def last_time(self) -> int | None:
        """Time of the latest unit, if any."""
        return self._origin + self._ts[-1] if len(self._ts) > self._head else None

    def prune(self, now_ms: int, horizon_ms: int | None = None) -> None:
        """Forget units older than the horizon before now_ms, always keeping the latest.

        `horizon_ms` overrides the curve's own horizon for this call. Counts at times
        before a horizon are no longer exact (see `count_at`), so a reader that looks
        back further than it must say so here.
        """
        last = len(self._ts) - 1
        if last <= self._head:
            return
        keep_ms = self._horizon_ms if horizon_ms is None else horizon_ms
        horizon = now_ms - keep_ms - self._origin
        head = bisect_left(self._ts, horizon, lo=self._head, hi=last)
        if head == self._head:
            return
        self._forgotten_ms = self._origin + self._ts[head - 1]
        self._head = head
        if self._head >= _COMPACT_AFTER and self._head * 8 >= len(self._ts):
            self._compact()

    def __len__(self) -> int:
        """Units kept (not yet forgotten)."""
        return len(self._ts) - self._head

    def _compact(self) -> None:
        del self._ts[: self._head]
        self._base += self._head
        self._head = 0

    def _rebase(self, ts_ms: int) -> None:
        """Move the origin so that ts_ms fits (a curve fed for weeks outgrows 32 bits)."""
        self._compact()
        oldest = self._origin + self._ts[0]
        if ts_ms - oldest > _MAX_OFFSET:
            # Every kept unit is weeks older than this one, far past any horizon.
            self._forgotten_ms = self._origin + self._ts[-1]
            self._base += len(self._ts)
            self._ts = array("i")
            self._origin = ts_ms
            return
        self._ts = array("i", [self._origin + offset - oldest for offset in self._ts])
        self._origin = oldest
