"""How open trips are laid out in an ordered key-value store, so expiry reads only what is due.

A trip's open record is kept under `record_key(pass_id)`. Next to it, an empty entry
under `deadline_key(station, ts, pass_id)` indexes it by station and opening time:
keys sort bytewise, and the time is big-endian, so the index of one station reads
oldest first. Expiry seeks to the station's first deadline and stops at the first one
not yet due, however many trips are open. Record and deadline are written and deleted
together, so the index lives in the store and its changelog: a worker that recovers
the store recovers the deadlines with it (an index kept in memory beside a store on
disk is lost on a restart, and its trips would never expire).
"""

from __future__ import annotations

from typing import Protocol

_RECORD = b"r"
_DEADLINE = b"d"
_STATIONS = {"entry": b"e", "exit": b"x"}
_TS_BYTES = 8  # epoch milliseconds, unsigned: until the year 584,556,019
_PREFIX = len(_DEADLINE) + 1 + _TS_BYTES


def record_key(pass_id: str) -> bytes:
    return _RECORD + pass_id.encode()


def deadline_key(station: str, ts: int, pass_id: str) -> bytes:
    return _DEADLINE + _STATIONS[station] + ts.to_bytes(_TS_BYTES, "big") + pass_id.encode()


class OrderedCursor(Protocol):
    """A cursor over a store's keys in bytewise order (rocksdict's `RdictIter`)."""

    def seek(self, key: bytes) -> None: ...
    def valid(self) -> bool: ...
    def key(self) -> bytes: ...
    def next(self) -> None: ...


def due_deadlines(
    cursor: OrderedCursor, station: str, before_ts: int, from_ts: int = 0
) -> tuple[list[tuple[str, int]], int | None]:
    """(pass_id, ts) of the `station` records opened before `before_ts`, oldest first, and
    the opening time of the first one not yet due (None: no other record of `station`).

    `from_ts` is a time no open record of `station` is older than: the read starts there.
    Keys deleted lately stay in RocksDB as tombstones until a compaction, and a read from
    the start of the index would step over every one of them again; they sit behind the
    oldest open record, so a read from there steps over none.
    """
    start = _DEADLINE + _STATIONS[station]
    end = start + max(before_ts, 0).to_bytes(_TS_BYTES, "big")  # earlier times sort below
    due: list[tuple[str, int]] = []
    cursor.seek(start + max(from_ts, 0).to_bytes(_TS_BYTES, "big"))
    while cursor.valid():
        key = cursor.key()
        if not key.startswith(start):
            return due, None
        ts = int.from_bytes(key[len(start) : _PREFIX], "big")
        if key >= end:
            return due, ts
        due.append((key[_PREFIX:].decode(), ts))
        cursor.next()
    return due, None
