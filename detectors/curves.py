"""Bounded cumulative-count curves over event time: the A(t) and D(t) of input-output analysis."""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right

# Compact the backing arrays once this many entries, and an eighth of them, have been
# pruned off the front: at most an eighth of the storage holds forgotten points.
_COMPACT_AFTER = 1024


class CumulativeCurve:
    """A non-decreasing step curve of counts over time, forgetting points older than a horizon.

    Points are kept in typed arrays (8 bytes a value): an hour of a busy approach is
    thousands of points per curve, and boxed ints in lists took 4-5 times the memory.
    """

    __slots__ = ("_cum", "_head", "_horizon_ms", "_pruned_total", "_ts", "total")

    def __init__(self, horizon_s: float) -> None:
        self._horizon_ms = round(horizon_s * 1000)
        self._ts = array("q")
        self._cum = array("q")
        self._head = 0
        self._pruned_total = 0
        self.total = 0

    def add(self, ts_ms: int, count: int = 1) -> int:
        """Add `count` at ts_ms and return the cumulative total including them."""
        # A slightly late point is kept at the curve's last time so that the curve stays sorted.
        if self._ts and ts_ms < self._ts[-1]:
            ts_ms = self._ts[-1]
        self.total += count
        if self._ts and self._ts[-1] == ts_ms:
            self._cum[-1] = self.total
        else:
            self._ts.append(ts_ms)
            self._cum.append(self.total)
        return self.total

    def count_at(self, ts_ms: int) -> int:
        """The cumulative count at ts_ms (points at exactly ts_ms included)."""
        idx = bisect_right(self._ts, ts_ms, lo=self._head) - 1
        return self._cum[idx] if idx >= self._head else self._pruned_total

    def time_of(self, index: int) -> int | None:
        """When the count first reached `index` (the index-th unit's time); None if not yet."""
        if index > self.total:
            return None
        k = bisect_left(self._cum, index, lo=self._head)
        if k >= len(self._ts):
            return None
        # Points before the horizon are gone; the oldest kept time is the best lower bound.
        return self._ts[k]

    def last_time(self) -> int | None:
        """Time of the latest point, if any."""
        return self._ts[-1] if len(self._ts) > self._head else None

    def prune(self, now_ms: int) -> None:
        """Forget points older than the horizon before now_ms (amortised O(1))."""
        horizon = now_ms - self._horizon_ms
        head = self._head
        last = len(self._ts) - 1
        while head < last and self._ts[head] < horizon:
            head += 1
        if head > self._head:
            self._pruned_total = self._cum[head - 1]
            self._head = head
        if self._head >= _COMPACT_AFTER and self._head * 8 >= len(self._ts):
            del self._ts[: self._head]
            del self._cum[: self._head]
            self._head = 0

    def __len__(self) -> int:
        return len(self._ts) - self._head
