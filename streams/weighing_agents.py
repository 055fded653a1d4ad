"""Weighing agents: pair trips by pass_id in a changelogged table, assess pairs centrally."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import faust
import msgspec

from detectors.scale_bias import ScaleBiasEstimator
from detectors.scales import ScaleBiasEstimate
from detectors.weighing import WeighPair, expired_record, pair_weighing
from streams.bias_checkpoints import SAVE_MIN_INTERVAL_S, BiasCheckpoints
from streams.emitter import Emitter
from streams.forked import SnapshotError, encode_in_child
from streams.open_trips import OpenTrips, open_trips_table
from streams.topics import Topics
from tollmon.events import WeighMeasurement
from tollmon.recorder import MetricsRecorder
from tollmon.weighing_flow import PairAssessor, PartitionWatermarks, unmatched_outcomes

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_weighing = msgspec.json.Decoder(WeighMeasurement)
_pair = msgspec.json.Decoder(WeighPair)

# Header of a re-keyed weighing naming the input partition it came from.
SOURCE_HEADER = "tollmon-source"


def source_header(partition: int) -> tuple[str, bytes]:
    return (SOURCE_HEADER, str(partition).encode())


def _source(message: Any) -> str:
    headers = message.headers or ()
    for name, value in headers.items() if isinstance(headers, Mapping) else headers:
        if name == SOURCE_HEADER:
            return bytes(value).decode()
    return ""  # re-keyed by a worker that did not say


def register_weighing_agents(
    app: faust.App,
    topics: Topics,
    recorder: MetricsRecorder,
    emitter: Emitter,
    assessor: PairAssessor,
    horizon_ms: int,
    partitions: int,
    idle_after_s: float,
    clock: Callable[[], float],
    checkpoints: BiasCheckpoints | None = None,
) -> None:
    """Open trips live on disk in a changelogged table (streams/open_trips.py), so a
    restarted worker recovers them, deadlines included; the assessor of the pairs is
    checkpointed (`checkpoints`, streams/bias_checkpoints.py).

    `partitions`: of the input topics and of the by-pass topic; each input partition
    is a source whose weighings an expiry watermark waits for.
    """
    trips = OpenTrips(open_trips_table(app, partitions))
    watermarks = PartitionWatermarks(partitions, idle_after_s)

    def start_over(*_: Any, **__: Any) -> None:
        watermarks.start_over()
        if checkpoints is not None:
            checkpoints.start_over()

    app.on_partitions_revoked.connect(start_over)

    async def pair_trips(stream: Any) -> None:
        async for record in stream.events():
            message = record.message
            measurement = _weighing.decode(record.value)
            pass_id, partition = measurement.pass_id, message.partition
            stored = trips.get(pass_id)
            new_entry, output = pair_weighing(stored, measurement, horizon_ms)
            if new_entry is not None:
                trips.put(partition, pass_id, new_entry, replaces=stored)
            elif stored is not None:
                trips.remove(pass_id, stored)
            sent_s = message.timestamp or clock()  # its Kafka timestamp, in seconds
            reached = watermarks.observe(partition, _source(message), measurement.ts, sent_s)
            expired = trips.expire(partition, reached, horizon_ms)
            unmatched = output.unmatched + tuple(expired_record(p, r) for p, r in expired)
            for exit_plaza, outcome in unmatched_outcomes(unmatched):
                recorder.weight_pair(exit_plaza, outcome)
            if output.pair is not None:
                await topics.pairs.send(key=message.key, value=_encode(output.pair))

    app.agent(topics.by_pass, name="pair_trips")(pair_trips)
    register_assessment(app, topics, emitter, assessor, checkpoints)


def register_assessment(
    app: faust.App,
    topics: Topics,
    emitter: Emitter,
    assessor: PairAssessor,
    checkpoints: BiasCheckpoints | None,
) -> None:
    """One agent assesses the pairs (the pairs topic has one partition) and saves the
    assessor when due; a timer makes a save the pairs made due but too soon after the
    last, once allowed, even if no pair follows (a replay ends, the night is quiet)."""

    async def assess(pair: WeighPair) -> None:
        if assessor.fits_before(pair):
            # The network-wide fit takes seconds on a large network: it runs in a
            # forked child, so the ingest step keeps the GIL and goes on estimating
            # queues meanwhile (in a thread, the fit's Python parts took turns with
            # it). Only this agent touches the assessor, and it waits for the result.
            fitted = await fit_in_child(assessor.estimator)
            if fitted is not None:
                out = assessor.on_pair(pair, fitted)
            else:  # no child: a thread, where it at least does not stop the loop
                out = await asyncio.to_thread(assessor.on_pair, pair)
        else:
            out = assessor.on_pair(pair)
        await emitter.emit_pair_outputs(out)

    async def assess_pairs(stream: Any) -> None:
        async for record in stream.events():
            if checkpoints is None:
                await assess(_pair.decode(record.value))
                continue
            offset = record.message.offset
            async with checkpoints.lock:
                restored = await checkpoints.restore_once(assessor, offset)
                if restored is not None:
                    await emitter.emit_pair_outputs(restored)
                if checkpoints.covers(offset):
                    continue  # the restored checkpoint has it already
                pair = _pair.decode(record.value)
                await assess(pair)
                await checkpoints.after(assessor, offset, pair.exit.ts)

    app.agent(topics.pairs, name="assess_pairs")(assess_pairs)
    if checkpoints is None:
        return
    book = checkpoints

    async def save_held() -> None:
        if book.lock.locked():
            return  # a pair is being assessed (a fit can take seconds): it saves after it
        async with book.lock:
            await book.save_held(assessor)

    app.timer(SAVE_MIN_INTERVAL_S, name="save_scale_bias")(save_held)


_encode_fit = msgspec.msgpack.Encoder().encode
_decode_fit = msgspec.msgpack.Decoder(list[ScaleBiasEstimate]).decode


async def fit_in_child(estimator: ScaleBiasEstimator) -> list[ScaleBiasEstimate] | None:
    """`estimator.estimate()`, computed in a forked child; None if that failed."""
    try:
        return _decode_fit(await encode_in_child(lambda: _encode_fit(estimator.estimate())))
    except (SnapshotError, OSError, msgspec.DecodeError) as exc:
        log.warning("scale-bias fit in a child failed (%s); fitting in a thread", exc)
        return None
