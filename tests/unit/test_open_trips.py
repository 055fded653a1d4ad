"""Open trips on disk: expiry reads the deadline index in order, and the index follows the
records it points at (a paired or re-weighed trip leaves no stale deadline behind)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import faust.stores.rocksdb
import pytest
from faust.types import TP
from faust.types.tuples import RecordMetadata
from hypothesis import given, settings
from hypothesis import strategies as st
from rocksdict import Options, Rdict

from detectors.weighing import ORPHAN_EXIT_WAIT_MS, WeighingRecord
from streams.app import create_app
from streams.open_trips import ROCKSDB_OPTIONS, OpenTrips, open_trips_table
from tollmon.network import load_network
from tollmon.settings import Settings
from tollmon.trip_keys import deadline_key, due_deadlines

REPO = Path(__file__).resolve().parents[2]

HOUR_MS = 3_600_000
HORIZON_MS = 72 * HOUR_MS


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Rdict]:
    options = Options(raw_mode=True)  # as Faust's RocksDB store opens it
    options.create_if_missing(True)
    opened = Rdict(str(tmp_path / "trips"), options=options)
    yield opened
    opened.close()


class RdictTable:
    """The part of a Faust table on the RocksDB store that OpenTrips uses, over one partition."""

    def __init__(self, db: Rdict) -> None:
        self._db = db
        self.data = self

    def _db_for_partition(self, partition: int) -> Rdict:
        assert partition == 0
        return self._db

    def get(self, key: bytes) -> Any:
        return self._db.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)

    def __delitem__(self, key: bytes) -> None:
        self._db.delete(key)


def record(station: str, ts: int) -> WeighingRecord:
    return WeighingRecord(
        scale_id="S",
        plaza_id="P",
        gross_kg=20_000,
        axles=3,
        ts=ts,
        station=station,  # type: ignore[arg-type]  # tests pass valid literals
    )


deadlines = st.lists(
    st.tuples(
        st.sampled_from(["entry", "exit"]),
        st.integers(0, 2**40),
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=64),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(deadlines, st.integers(0, 2**40 + 1), st.floats(0, 1))
def test_a_station_reads_its_due_deadlines_oldest_first(
    tmp_path_factory: pytest.TempPathFactory,
    entries: list[tuple[str, int, str]],
    before: int,
    start_share: float,
) -> None:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(tmp_path_factory.mktemp("trips")), options=options)
    try:
        for station, ts, pass_id in entries:
            db.put(deadline_key(station, ts, pass_id), b"")
        db.put(b"r" + b"\xff" * 9, b"a record, not a deadline")
        for station in ("entry", "exit"):
            kept = sorted({(ts, p.encode()) for s, ts, p in entries if s == station})
            # Any time no record is older than: the oldest's, or earlier.
            from_ts = int(kept[0][0] * start_share) if kept else 0
            due, next_ts = due_deadlines(db.iter(), station, before, from_ts)
            assert due == [(p.decode(), ts) for ts, p in kept if ts < before]
            assert next_ts == next((ts for ts, _ in kept if ts >= before), None)
    finally:
        db.close()


def test_an_open_entry_expires_after_the_horizon(db: Rdict) -> None:
    trips = OpenTrips(RdictTable(db))
    trips.put(0, "A", record("entry", 1_000), replaces=None)
    assert trips.expire(0, 1_000 + HORIZON_MS, HORIZON_MS) == []
    assert trips.expire(0, 1_001 + HORIZON_MS, HORIZON_MS) == [("A", record("entry", 1_000))]
    assert trips.get("A") is None
    assert list(db.keys()) == []


def test_an_orphan_exit_waits_less_than_an_entry(db: Rdict) -> None:
    trips = OpenTrips(RdictTable(db))
    trips.put(0, "entry", record("entry", 0), replaces=None)
    trips.put(0, "exit", record("exit", 0), replaces=None)
    assert trips.expire(0, ORPHAN_EXIT_WAIT_MS + 1, HORIZON_MS) == [("exit", record("exit", 0))]
    assert trips.get("entry") == record("entry", 0)


def test_a_paired_trip_leaves_nothing_in_the_store(db: Rdict) -> None:
    trips = OpenTrips(RdictTable(db))
    trips.put(0, "A", record("entry", 0), replaces=None)
    trips.remove("A", record("entry", 0))
    assert list(db.keys()) == []


def test_a_reweighed_entry_waits_from_its_new_weighing(db: Rdict) -> None:
    trips = OpenTrips(RdictTable(db))
    trips.put(0, "A", record("entry", 0), replaces=None)
    trips.put(0, "A", record("entry", HOUR_MS), replaces=record("entry", 0))
    assert trips.expire(0, HORIZON_MS + 1, HORIZON_MS) == []
    due = trips.expire(0, HOUR_MS + HORIZON_MS + 1, HORIZON_MS)
    assert due == [("A", record("entry", HOUR_MS))]
    assert list(db.keys()) == []


def test_expiry_reads_no_further_than_what_is_due(db: Rdict) -> None:
    """A store of many open trips costs expiry only the due ones, not a scan."""
    trips = OpenTrips(RdictTable(db))
    for i in range(1_000):
        trips.put(0, f"P{i:04d}", record("entry", i * 1_000), replaces=None)
    read: list[bytes] = []

    class CountingCursor:
        def __init__(self) -> None:
            self._it = db.iter()

        def seek(self, key: bytes) -> None:
            self._it.seek(key)

        def valid(self) -> bool:
            return bool(self._it.valid())

        def key(self) -> bytes:
            key: bytes = self._it.key()
            read.append(key)
            return key

        def next(self) -> None:
            self._it.next()

    due, next_ts = due_deadlines(CountingCursor(), "entry", 5_000)
    assert [p for p, _ in due] == ["P0000", "P0001", "P0002", "P0003", "P0004"]
    assert next_ts == 5_000
    assert len(read) == 6  # the five due, and the first one not due


class CountingTable(RdictTable):
    """Counts the reads of the store in key order; `reopen` stands for a rebalance."""

    def __init__(self, db: Rdict) -> None:
        super().__init__(db)
        self.reads = 0
        self.store: Any = self

    def _db_for_partition(self, partition: int) -> Any:
        return self.store

    def iter(self) -> Any:
        self.reads += 1
        return self._db.iter()

    def reopen(self) -> None:
        self.store = CountingTable(self._db)
        self.store.reads = self.reads


def test_expiry_reads_the_store_only_when_something_may_be_due(db: Rdict) -> None:
    table = CountingTable(db)
    trips = OpenTrips(table)
    for i in range(1_000):
        trips.put(0, f"P{i:04d}", record("entry", i * 1_000), replaces=None)
    assert len(trips.expire(0, 4_500 + HORIZON_MS, HORIZON_MS)) == 5
    reads = table.reads
    for step in range(100):  # the watermark creeps on, short of the next deadline
        assert trips.expire(0, 4_501 + step + HORIZON_MS, HORIZON_MS) == []
    assert table.reads == reads
    # A late weighing older than every open record is still expired on time.
    trips.put(0, "late", record("entry", 4_700), replaces=None)
    assert trips.expire(0, 4_701 + HORIZON_MS, HORIZON_MS) == [("late", record("entry", 4_700))]
    # A rebalance: another worker held the partition meanwhile and opened an older trip;
    # the partition's store is reopened as another object, and is read afresh.
    OpenTrips(RdictTable(db)).put(0, "moved", record("entry", 4_800), replaces=None)
    table.reopen()
    due = trips.expire(0, 4_801 + HORIZON_MS, HORIZON_MS)
    assert due == [("moved", record("entry", 4_800))]


def test_the_worker_keeps_open_trips_in_rocksdb_under_its_data_dir(tmp_path: Path) -> None:
    app = faust.App("t", broker="kafka://localhost:9092", store="memory://", datadir=tmp_path)
    store = open_trips_table(app, partitions=4).data
    assert isinstance(store, faust.stores.rocksdb.Store)
    assert store.use_rocksdict
    assert store.partition_path(3).is_relative_to(tmp_path)
    assert store.rocksdb_options.block_cache_size == ROCKSDB_OPTIONS["block_cache_size"]


def test_apps_of_different_prefixes_keep_their_stores_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store remembers the changelog offsets it holds: Faust refuses to start a worker on
    a store made for another prefix's changelog (seen when the benchmark's trials shared a
    data directory)."""
    network = load_network(REPO / "config" / "network.yaml")
    monkeypatch.setenv("TOLLMON_DATA_DIR", str(tmp_path))
    paths = []
    for prefix in ("a.", "b."):
        monkeypatch.setenv("TOLLMON_TOPIC_PREFIX", prefix)
        app = create_app(Settings(), network)
        paths.append(app.tables["open_trips_v2"].data.partition_path(0))
    assert paths[0] != paths[1]
    assert all(path.is_relative_to(tmp_path) for path in paths)


class _Sent:
    """A changelog send that completed, as the table's callback sees it."""

    def __init__(self, partition: int, offset: int) -> None:
        self._metadata = RecordMetadata(
            topic="t-open_trips_v2-changelog",
            partition=partition,
            topic_partition=TP("t-open_trips_v2-changelog", partition),
            offset=offset,
        )

    def result(self) -> RecordMetadata:
        return self._metadata


async def test_a_stopping_table_sends_its_changelog_before_its_stores_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust closes a table's stores right after its consumer stops, while the producer
    still holds changelog writes. Sent later, each made Faust reopen a closed store to
    record its offset, which RocksDB refuses ("No locks available")."""
    app = faust.App("t", broker="kafka://localhost:9092", store="memory://", datadir=tmp_path)
    table = open_trips_table(app, partitions=4)
    store = table.data
    flushed = []

    async def flush() -> None:
        flushed.append(dict(store._dbs))  # the stores open at the time of the flush

    monkeypatch.setattr(app.producer, "flush", flush)
    table._on_changelog_sent(_Sent(partition=1, offset=41))  # running: the offset is kept
    assert store.persisted_offset(TP("t-open_trips_v2-changelog", 1)) == 41

    await table.on_stop()

    assert len(flushed) == 1
    assert 1 in flushed[0]  # flushed while the store was open
    store._dbs.clear()  # what the store's own stop does next (Faust keeps no handle)
    table._on_changelog_sent(_Sent(partition=2, offset=7))  # a straggler after the flush
    assert store._dbs == {}  # no store reopened to record it
