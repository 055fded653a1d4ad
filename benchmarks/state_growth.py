"""What an hour of traffic leaves in a worker's memory, per plaza.

The detectors keep up to an hour of event time (the queue curves; plates for half an
hour, overload joins for a quarter) and open trips for up to 72 h. The live trials last
90 s, so their peak RSS holds little of that state, and a worker that passes them may
still outgrow its memory an hour into service.

This feeds `plazas` standard plazas' traffic, over an hour of event time, through the
worker's own code in this process (validation and the detectors) and counts the Python
memory still allocated at the end with `tracemalloc`: the state, without transient
buffers. The dedup memory is left out: it has a fixed size whatever the plazas
(`TOLLMON_DEDUP_CAPACITY`), and the live trials at the rating already fill it. Open
trips are left out too: a worker keeps them on disk (streams/open_trips.py). How many
stay open is counted in a second pass, outside the measurement, with `TripBook`.

Measured in-process rather than as a worker's RSS: a worker draining a backlog also
grows by its fetch buffers and allocator slack, in proportion to the events drained
rather than to the plazas (drains of 10 and of 100 plazas over an hour grew by 54 and
330 MiB), which would swamp the state.
"""

from __future__ import annotations

import gc
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import msgspec

from benchmarks.synthetic import TOPIC_WEIGHINGS, TOPICS, Load, generate_load, write_network
from detectors.weighing import TripBook
from tollmon.events import WeighMeasurement
from tollmon.ingest import DeadLetter, Ingest, Source
from tollmon.metrics import Metrics
from tollmon.network import load_network
from tollmon.pipeline import Pipeline
from tollmon.validation import validator_for

SECONDS = 3_900.0  # the curves' hour, and some
_HOUR_MS = 3_600_000
_weighing = msgspec.json.Decoder(WeighMeasurement).decode


@dataclass(frozen=True)
class StateGrowth:
    plazas: int
    seconds: float  # event time fed
    events: int
    state_bytes: int  # Python memory still allocated after feeding, beyond before it
    open_trips: int  # unpaired entry and exit weighings still waiting at the end

    @property
    def per_plaza_bytes(self) -> float:
        return self.state_bytes / self.plazas

    @property
    def open_trips_per_plaza_hour(self) -> float:
        return self.open_trips / self.plazas / (self.seconds / 3600)


def measure(plazas: int, end_ms: int, seconds: float = SECONDS) -> StateGrowth:
    """Feed `seconds` of event time ending at `end_ms` for `plazas` plazas; count what stays."""
    load = generate_load(plazas, end_ms - int(seconds * 1000), seconds, seed=3)
    with tempfile.TemporaryDirectory() as tmp:
        network = load_network(write_network(plazas, Path(tmp) / "network.json"))
    ingest = Ingest(
        validator_for(network, 72 * _HOUR_MS, "replay"),
        Metrics.create(),
        time.time,
        time_mode="replay",
        dedup_capacity=1,
    )
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        pipeline = Pipeline(network)
        for offset, (value, key, topic) in enumerate(
            zip(load.values, load.keys, load.topic, strict=True)
        ):
            event = ingest.accept(value, Source(TOPICS[topic], 0, offset, key))
            if isinstance(event, DeadLetter):
                raise RuntimeError(f"the benchmark load has an invalid event: {event.detail}")
            pipeline.process(event, time.time())
        del event, value, key
        gc.collect()
        state = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return StateGrowth(plazas, seconds, len(load), state, _open_trips(load))


def _open_trips(load: Load) -> int:
    """How many weighings of `load` are still waiting for the other end of their trip."""
    book = TripBook(horizon_ms=72 * _HOUR_MS)
    for value, topic in zip(load.values, load.topic, strict=True):
        if topic == TOPIC_WEIGHINGS:
            book.add(_weighing(value))
    return len(book.open_entries)
