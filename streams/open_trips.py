"""Open trips on disk: a changelogged Faust table in RocksDB, indexed by deadline.

A trip stays open until its other end is weighed, for up to the unpaired horizon
(72 h by default). Trucks that never reach a weighing exit pile up over that horizon:
at the benchmark's load, 810 per standard plaza and hour, several GB at a few thousand
plazas, which a table in memory cannot hold. RocksDB keeps them on disk, with a small
write buffer and block cache of its own per partition, and Faust's changelog still
restores them on another worker. The deadlines are kept in the same table
(tollmon/trip_keys.py), so expiry reads only what is due, and a restored store
expires its trips on time.
"""

from __future__ import annotations

from typing import Any

import faust
import msgspec

from detectors.weighing import WeighingRecord, wait_limit_ms
from tollmon.trip_keys import deadline_key, due_deadlines, record_key

_encode = msgspec.json.Encoder().encode
_record = msgspec.json.Decoder(WeighingRecord)

MIB = 1024 * 1024
# The oldest open record's time when none is open: later than any record's.
NONE_OPEN = 2**63 - 1
# Per input partition's store. RocksDB's defaults (64 MiB write buffers, three of
# them, and a 2 GiB block cache) are sized for a database that owns its machine.
ROCKSDB_OPTIONS = {
    "driver": "rocksdict",
    "write_buffer_size": 8 * MIB,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 * MIB,
    "target_file_size_base": 16 * MIB,
}


# v2: keys prefixed, deadlines indexed (see above)
OPEN_TRIPS_TABLE = "open_trips_v2"


def changelog_topic(app_id: str) -> str:
    """The open-trips table's changelog, as Faust names it for the app `app_id`."""
    return f"{app_id}-{OPEN_TRIPS_TABLE}-changelog"


class _OpenTripsTable(faust.Table[bytes, bytes]):
    """A table whose changelog writes all reach the broker before its stores close.

    Faust stops its tables right after its consumer, while the producer still holds the
    pairing agent's last changelog messages (up to `CHANGELOG_BUFFER_MESSAGES`). Each
    one sent after its store had closed made Faust reopen the store to record the
    offset, which RocksDB refused ("No locks available"): after a backlog, hundreds of
    errors at every shutdown (docs/operations.md). The streams are empty by then, so
    the flush ends; the offsets of sends whose callbacks come after it are not recorded.
    """

    _closing = False

    async def on_stop(self) -> None:
        await self.app.producer.flush()
        # From here the stores close: a send whose callback comes later leaves its
        # offset unrecorded, and a restart reads that message again (a repeated put).
        self._closing = True
        await super().on_stop()

    def _on_changelog_sent(self, fut: Any) -> None:
        if not self._closing:
            super()._on_changelog_sent(fut)


def open_trips_table(app: faust.App, partitions: int) -> Any:
    """The open-trips table: bytes keys and values, in RocksDB, changelogged."""
    # What `app.Table(...)` does, with the table class above.
    return app.tables.add(
        _OpenTripsTable(
            app,
            name=OPEN_TRIPS_TABLE,
            beacon=app.tables.beacon,
            default=None,
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,
            # Not "rocksdb://": Faust reads a URL without a path as no store given (memory).
            store=f"rocksdb:{OPEN_TRIPS_TABLE}",
            # A copy: Faust's store takes its own keys (the driver) out of the mapping.
            options=dict(ROCKSDB_OPTIONS),
        )
    )


class OpenTrips:
    """Open weighing records by pass id, in the partition of the event being processed.

    Every write and delete goes through the table (and its changelog) while an event of
    the partition is current, as Faust requires of a table co-partitioned with its stream.
    """

    def __init__(self, table: Any) -> None:
        self._table = table
        # Per partition, the store it was read from and, per station, a time no open
        # record is older than (absent: not known yet). Reopened on a rebalance, a
        # partition's store is another object, and what was known of it is dropped.
        self._oldest: dict[int, tuple[Any, dict[str, int]]] = {}

    def get(self, pass_id: str) -> WeighingRecord | None:
        stored = self._table.get(record_key(pass_id))
        return _record.decode(stored) if stored is not None else None

    def put(
        self, partition: int, pass_id: str, record: WeighingRecord, replaces: WeighingRecord | None
    ) -> None:
        if replaces is not None:
            self._drop_deadline(pass_id, replaces)
        self._table[record_key(pass_id)] = _encode(record)
        self._table[deadline_key(record.station, record.ts, pass_id)] = b""
        known = self._oldest.get(partition)
        if known is not None and record.station in known[1]:
            oldest = known[1]
            oldest[record.station] = min(oldest[record.station], record.ts)

    def remove(self, pass_id: str, record: WeighingRecord) -> None:
        del self._table[record_key(pass_id)]
        self._drop_deadline(pass_id, record)

    def expire(
        self, partition: int, watermark_ts: int, horizon_ms: int
    ) -> list[tuple[str, WeighingRecord]]:
        """Remove and return the records of `partition` that waited too long.

        Called for every weighing, so it reads the store only when the oldest open record
        it knows of may be due: most calls read nothing.
        """
        db = self._table.data._db_for_partition(partition)
        known = self._oldest.get(partition)
        if known is None or known[0] is not db:
            known = self._oldest[partition] = (db, {})
        oldest = known[1]
        expired: list[tuple[str, WeighingRecord]] = []
        for station in ("entry", "exit"):
            before_ts = watermark_ts - wait_limit_ms(station, horizon_ms)
            from_ts = oldest.get(station)
            if from_ts is not None and from_ts >= before_ts:
                continue
            due, next_ts = due_deadlines(db.iter(), station, before_ts, from_ts or 0)
            oldest[station] = next_ts if next_ts is not None else NONE_OPEN
            for pass_id, ts in due:
                del self._table[deadline_key(station, ts, pass_id)]
                record = self.get(pass_id)
                if record is not None and record.ts == ts and record.station == station:
                    del self._table[record_key(pass_id)]
                    expired.append((pass_id, record))
        return expired

    def _drop_deadline(self, pass_id: str, record: WeighingRecord) -> None:
        del self._table[deadline_key(record.station, record.ts, pass_id)]
