"""Bounded memory of recent event ids, so a duplicate is processed once."""

from __future__ import annotations


class RecentIds:
    """Remembers the last `capacity` ids; older ones are forgotten first-in first-out.

    A plain dict keeps insertion order, which makes it an O(1) bounded ordered set.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._ids: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def seen_before(self, event_id: str) -> bool:
        """True if `event_id` was already seen; otherwise remember it and return False."""
        if event_id in self._ids:
            return True
        self._ids[event_id] = None
        if len(self._ids) > self._capacity:
            del self._ids[next(iter(self._ids))]
        return False

    def ids(self) -> list[str]:
        """The remembered ids, oldest first (for a checkpoint)."""
        return list(self._ids)

    @classmethod
    def of(cls, capacity: int, ids: list[str]) -> RecentIds:
        """A memory holding `ids` (oldest first), as `ids()` returned them."""
        recent = cls(capacity)
        recent._ids = dict.fromkeys(ids[-capacity:])
        return recent
