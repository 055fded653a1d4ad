"""Samples over a sliding event-time window, in flat arrays instead of deques of boxed values."""

from __future__ import annotations

from array import array
from typing import Any

from mypy_extensions import mypyc_attr

# Delete the dropped front of the arrays once it is at least this long and half of them.
_COMPACT_AFTER = 64


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class TimedSeries:
    """Samples appended in event-time order and dropped off the front.

    A window of a busy approach holds hundreds to thousands of samples, and a plaza has
    dozens of windows. In a deque, a sample of a time and two floats is a tuple and three
    boxed numbers, about 120 bytes, and as many objects for the collector and the
    checkpoint's pickle to walk; here it is 8 bytes a value in typed columns. Dropping
    from the front moves an index; the dropped part is deleted once it is half the
    storage, so each sample is moved at most once on average.
    """

    __slots__ = ("_head", "_ts", "columns")

    def __init__(self, typecodes: str = "") -> None:
        """One column of values per typecode of `array` ("d" for floats, "q" for ints)."""
        self._ts = array("q")
        self.columns: tuple[array[Any], ...] = tuple(array(code) for code in typecodes)
        self._head = 0

    def __len__(self) -> int:
        return len(self._ts) - self._head

    def positions(self) -> range:
        """The positions in `columns` (and `times`) of the samples kept, oldest first."""
        return range(self._head, len(self._ts))

    @property
    def times(self) -> array[int]:
        """The samples' times, at the same positions as `columns`."""
        return self._ts

    def append(self, ts_ms: int, value: int | float) -> None:
        """Add a sample to a series of one column.

        `int | float`, not `float`: compiled, a `float` parameter turns an int into a
        float, which an integer column ("q") refuses.
        """
        self._ts.append(ts_ms)
        self.columns[0].append(value)

    def append2(self, ts_ms: int, first: int | float, second: int | float) -> None:
        """Add a sample to a series of two columns (spelled out: this is per vehicle)."""
        self._ts.append(ts_ms)
        columns = self.columns
        columns[0].append(first)
        columns[1].append(second)

    def append3(
        self, ts_ms: int, first: int | float, second: int | float, third: int | float
    ) -> None:
        """Add a sample to a series of three columns."""
        self._ts.append(ts_ms)
        columns = self.columns
        columns[0].append(first)
        columns[1].append(second)
        columns[2].append(third)

    def oldest_ts(self) -> int:
        """Time of the oldest sample kept; the series must not be empty."""
        return self._ts[self._head]

    def oldest(self, column: int) -> float:
        """The oldest sample's value in `column`; the series must not be empty."""
        value: float = self.columns[column][self._head]
        return value

    def drop_through(self, horizon_ms: int) -> range:
        """Forget the oldest samples stamped at or before `horizon_ms`, up to the first
        later one; returns the positions in `columns` of those forgotten, oldest first.

        The positions hold the forgotten values until the next call.
        """
        if self._head >= _COMPACT_AFTER and 2 * self._head >= len(self._ts):
            self._compact()
        ts = self._ts
        start = end = self._head
        last = len(ts)
        while end < last and ts[end] <= horizon_ms:
            end += 1
        self._head = end
        return range(start, end)

    def _compact(self) -> None:
        head = self._head
        del self._ts[:head]
        for column in self.columns:
            del column[:head]
        self._head = 0
