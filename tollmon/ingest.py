"""The one place of the error policy: decode, validate, dedup; dead-letter, count, continue."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from tollmon.dedup import RecentIds
from tollmon.errors import InvalidEventError
from tollmon.events import EVENT_TYPES, Event, event_type
from tollmon.metrics import Metrics
from tollmon.validation import EventValidator

DEADLETTER_TOPIC = "toll.deadletter"


class Source(NamedTuple):
    """Where a message came from, as the dead letter must record (one per message)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A rejected message: its original bytes and key, with the reason in headers."""

    value: bytes
    key: bytes | None
    reason: str
    detail: str
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Covered:
    """A valid event that a restored plaza's state already holds (a take-over's read-back).

    Its previous owner detected and counted it: here it is only remembered as seen.
    """

    plaza_id: str


class Ingest:
    """Accepts raw messages and returns a valid event or the dead letter to send.

    Never raises on input. `clock` returns processing time in seconds since the epoch.
    """

    def __init__(
        self,
        validator: EventValidator,
        metrics: Metrics,
        clock: Callable[[], float],
        *,
        time_mode: Literal["live", "replay"] = "live",
        allowed_lateness_ms: int = 30_000,
        dedup_capacity: int = 1_000_000,
    ) -> None:
        self._validator = validator
        self._metrics = metrics
        self._clock = clock
        self._replay = time_mode == "replay"
        self._lateness_ms = allowed_lateness_ms
        # One memory per input partition number: it moves with the partition's checkpoint.
        self._dedup_capacity = dedup_capacity
        self._recent: dict[int, RecentIds] = {}
        self._watermarks: dict[tuple[str, int], int] = {}
        self._max_watermark: int | None = None
        # Label children looked up once: `labels()` per event costs more than the count.
        self._counted = {kind: metrics.events.labels(kind) for kind in EVENT_TYPES}
        self._late = {kind: metrics.events_late.labels(kind) for kind in EVENT_TYPES}

    def accept(self, raw: bytes | None, source: Source) -> Event | DeadLetter:
        """Validate one message; count it either way."""
        outcome = self._check(raw, source)
        if not isinstance(outcome, DeadLetter):
            self._observe(outcome, source)
        return outcome

    def accept_restored(
        self, raw: bytes | None, source: Source, covered: Mapping[str, int]
    ) -> Event | DeadLetter | Covered:
        """`accept`, in a partition taken over from a checkpoint.

        `covered` gives, per restored plaza, the last offset of the message's topic its
        state holds: an event at or before it is `Covered`, remembered by the dedup
        memory and not counted again.
        """
        outcome = self._check(raw, source)
        if isinstance(outcome, DeadLetter):
            return outcome
        if covered.get(outcome.plaza_id, -1) >= source.offset:
            return Covered(outcome.plaza_id)
        self._observe(outcome, source)
        return outcome

    def dedup_ids(self, partition: int) -> list[str]:
        """The ids remembered for an input partition number, oldest first."""
        recent = self._recent.get(partition)
        return [] if recent is None else recent.ids()

    def restore_dedup_ids(self, partition: int, ids: list[str]) -> None:
        """Remember `ids` (from `dedup_ids`) for a partition taken over by this worker."""
        self._recent[partition] = RecentIds.of(self._dedup_capacity, ids)

    def forget_partition(self, partition: int) -> None:
        """The partition moved to another worker, its ids with it."""
        self._recent.pop(partition, None)

    def _check(self, raw: bytes | None, source: Source) -> Event | DeadLetter:
        """Decode, validate and dedup one message; rejections are counted here."""
        now_ms = self._now_ms()
        try:
            if not raw:
                raise InvalidEventError("not_json", "empty message")
            event = self._validator.validate(raw, now_ms)
            if self._recent_ids(source.partition).seen_before(event.event_id):
                raise InvalidEventError(
                    "duplicate", f"event_id {event.event_id!r} already processed"
                )
        except InvalidEventError as exc:
            self._metrics.events_invalid.labels(exc.reason).inc()
            return _dead_letter(raw or b"", source, exc, now_ms)
        return event

    def _recent_ids(self, partition: int) -> RecentIds:
        recent = self._recent.get(partition)
        if recent is None:
            recent = self._recent[partition] = RecentIds(self._dedup_capacity)
        return recent

    def _now_ms(self) -> int | None:
        if self._replay:
            return self._max_watermark
        return int(self._clock() * 1000)

    def _observe(self, event: Event, source: Source) -> None:
        kind = event_type(event)
        self._counted[kind].inc()
        self._metrics.event_lag_seconds.observe(max(0.0, self._clock() - event.ts / 1000))
        where = (source.topic, source.partition)
        watermark = self._watermarks.get(where)
        if watermark is not None and event.ts < watermark - self._lateness_ms:
            self._late[kind].inc()
        if watermark is None or event.ts > watermark:
            self._watermarks[where] = event.ts
            if self._max_watermark is None or event.ts > self._max_watermark:
                self._max_watermark = event.ts


def _dead_letter(
    raw: bytes, source: Source, exc: InvalidEventError, now_ms: int | None
) -> DeadLetter:
    headers = (
        ("tollmon.reason", exc.reason.encode()),
        ("tollmon.detail", exc.detail.encode()),
        ("tollmon.source.topic", source.topic.encode()),
        ("tollmon.source.partition", str(source.partition).encode()),
        ("tollmon.source.offset", str(source.offset).encode()),
        ("tollmon.rejected_at_ms", str(now_ms if now_ms is not None else -1).encode()),
    )
    return DeadLetter(
        value=raw, key=source.key, reason=exc.reason, detail=exc.detail, headers=headers
    )
