"""Bounded memory of recent event ids, so a duplicate is processed once."""

from __future__ import annotations

from collections import deque


class RecentIds:
    """Remembers the last `capacity` ids; older ones are forgotten first-in first-out.

    A set answers "seen?" and a deque keeps the order of arrival, both O(1) per id. (A
    dict used as an ordered set is not: deleting its oldest key leaves a hole at the
    front that the next `next(iter(...))` walks over, so once full every id cost a scan
    of all the holes so far; at 250,000 ids that was 2,400-16,000 ids/s.)
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._ids: set[str] = set()
        self._order: deque[str] = deque()

    def __len__(self) -> int:
        return len(self._order)

    def seen_before(self, event_id: str) -> bool:
        """True if `event_id` was already seen; otherwise remember it and return False."""
        if event_id in self._ids:
            return True
        self._ids.add(event_id)
        self._order.append(event_id)
        if len(self._order) > self._capacity:
            self._ids.remove(self._order.popleft())
        return False

    def ids(self) -> list[str]:
        """The remembered ids, oldest first (for a checkpoint)."""
        return list(self._order)

    @classmethod
    def of(cls, capacity: int, ids: list[str]) -> RecentIds:
        """A memory holding `ids` (oldest first), as `ids()` returned them."""
        recent = cls(capacity)
        # Each id once, at its first place (a checkpoint never repeats one).
        recent._order = deque(dict.fromkeys(ids[-capacity:]))
        recent._ids = set(recent._order)
        return recent
