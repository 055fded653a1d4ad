"""Weighing detectors wired for a network: trip pairing, pair assessment and scale bias.

Pairing is keyed by pass_id (the stream re-keys weighings so both ends of a trip
meet); assessment and the bias fit see every pair of the network, so they run
in one place (a single-partition topic in the stream, in-process in backtest).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from detectors.alerts import Alert
from detectors.scale_bias import ScaleBiasConfig, ScaleBiasEstimator, ScaleBiasState
from detectors.scales import ScaleBiasEstimate, ScaleInfo
from detectors.weighing import (
    PairingOutput,
    TripBook,
    UnmatchedWeighing,
    WeighingThresholds,
    WeighPair,
    assess_pair,
)
from tollmon.checkpoint import FORMAT_VERSION, versioned
from tollmon.network import Network
from tollmon.thresholds import Thresholds

# The bias fit is refreshed on this grid of event time, so a replay evaluates at the
# same instants as the live run and SCALE_BIAS alert ids come out the same.
BIAS_EVERY_MS = 60_000


def scale_infos(network: Network) -> dict[str, ScaleInfo]:
    return {
        s.scale_id: ScaleInfo(
            scale_id=s.scale_id,
            plaza_id=s.plaza_id,
            station=s.direction,
            lane_id=s.lane_id,
            accuracy_class=s.accuracy_class,
        )
        for s in network.scale_sites
    }


def network_thresholds(network: Network) -> Thresholds:
    """The network-wide thresholds: built-in defaults overridden by `defaults.thresholds`."""
    base = Thresholds()
    override = network.defaults.thresholds
    return base if override is None else base.overridden_by(override)


def weighing_thresholds(t: Thresholds) -> WeighingThresholds:
    return WeighingThresholds(
        pair_tolerance_ratio=t.pair_tolerance_ratio,
        min_discrepancy_kg=t.min_discrepancy_kg,
        unpaired_horizon_s=t.unpaired_horizon_s,
    )


@dataclass
class PairOutputs:
    """What assessing pairs produced: alerts, pair outcomes and fresh bias estimates."""

    alerts: list[Alert] = field(default_factory=list)
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (exit plaza, outcome)
    biases: list[ScaleBiasEstimate] = field(default_factory=list)


def unmatched_outcomes(unmatched: tuple[UnmatchedWeighing, ...]) -> list[tuple[str, str]]:
    return [(u.exit_plaza, "unmatched") for u in unmatched]


class BiasCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """The pair assessor's state (the bias fit's window, its alerts, the latest biases
    and the next evaluation time) and the last offset of the pairs topic it covers."""

    version: int
    pairs_offset: int
    next_eval_ms: int | None
    biases: list[ScaleBiasEstimate]
    state: ScaleBiasState


_encode_bias = msgspec.msgpack.Encoder().encode
_decode_bias = msgspec.msgpack.Decoder(BiasCheckpoint).decode


def encode_bias_checkpoint(checkpoint: BiasCheckpoint) -> bytes:
    return _encode_bias(checkpoint)


def decode_bias_checkpoint(data: bytes) -> BiasCheckpoint:
    """Raises CheckpointError for bytes that are not a bias checkpoint of this version."""
    return versioned(_decode_bias, data, "scale-bias checkpoint")


class PairAssessor:
    """Assesses each pair, feeds the bias fit and evaluates it on an event-time grid."""

    def __init__(self, network: Network, bias_config: ScaleBiasConfig | None = None) -> None:
        thresholds = network_thresholds(network)
        self._scales: Mapping[str, ScaleInfo] = scale_infos(network)
        self._thresholds = weighing_thresholds(thresholds)
        config = bias_config or ScaleBiasConfig(
            tolerance_ratio=thresholds.scale_drift_tolerance_ratio
        )
        self.estimator = ScaleBiasEstimator(self._scales, config)
        self._biases: dict[str, ScaleBiasEstimate] = {}
        self._next_eval_ms: int | None = None

    def on_pair(
        self, pair: WeighPair, fitted: list[ScaleBiasEstimate] | None = None
    ) -> PairOutputs:
        """Assess one pair, then refresh the bias fit at each grid point its time passed.

        `fitted`: the fit of the current window (`estimator.estimate()`), if the caller
        computed it elsewhere because `fits_before(pair)`.
        """
        out = PairOutputs()
        ts = pair.exit.ts
        self._evaluate_before(ts, out, fitted)
        assessment = assess_pair(pair, self._scales, self._thresholds, self._biases)
        out.outcomes.append((pair.exit.plaza_id, assessment.outcome))
        if assessment.alert is not None:
            out.alerts.append(assessment.alert)
        self.estimator.add_pair(pair)
        return out

    def checkpoint(self, pairs_offset: int) -> BiasCheckpoint:
        """Everything needed to go on from here, having assessed pairs up to `pairs_offset`."""
        return BiasCheckpoint(
            version=FORMAT_VERSION,
            pairs_offset=pairs_offset,
            next_eval_ms=self._next_eval_ms,
            biases=self.biases(),
            state=self.estimator.state(),
        )

    def restore(self, checkpoint: BiasCheckpoint) -> None:
        """Go on from a checkpoint, as the assessor that saved it would have.

        Raises ValueError for a checkpoint of scales this network does not have (the
        network config changed since): the caller starts with an empty window instead.
        """
        estimator = self.estimator
        unknown = set(checkpoint.state.scale_ids) - set(estimator.scales)
        if unknown:
            raise ValueError(f"scales not in the network: {sorted(unknown)[:5]}")
        self.estimator = ScaleBiasEstimator.from_state(
            checkpoint.state, estimator.scales, estimator.config
        )
        self._biases = {b.scale_id: b for b in checkpoint.biases}
        self._next_eval_ms = checkpoint.next_eval_ms

    def biases(self) -> list[ScaleBiasEstimate]:
        """The biases of the latest fit."""
        return list(self._biases.values())

    def fits_before(self, pair: WeighPair) -> bool:
        """Whether `on_pair(pair)` refreshes the network-wide bias fit first (the costly part)."""
        return self._next_eval_ms is not None and pair.exit.ts >= self._next_eval_ms

    def _evaluate_before(
        self, ts: int, out: PairOutputs, fitted: list[ScaleBiasEstimate] | None
    ) -> None:
        if self._next_eval_ms is None:
            self._next_eval_ms = (ts // BIAS_EVERY_MS + 1) * BIAS_EVERY_MS
            return
        if ts < self._next_eval_ms:
            return
        # One fit for all grid points passed: nothing was added in between.
        at = self._next_eval_ms
        self._next_eval_ms = (ts // BIAS_EVERY_MS + 1) * BIAS_EVERY_MS
        out.alerts.extend(self.estimator.evaluate(at, fitted))
        out.biases = self.estimator.latest_estimates()
        self._biases = {b.scale_id: b for b in out.biases}


class InProcessWeighing:
    """Pairing and assessment in one process (backtest): the stream splits the two."""

    def __init__(self, network: Network) -> None:
        t = network_thresholds(network)
        self.book = TripBook(horizon_ms=int(t.unpaired_horizon_s * 1000))
        self.assessor = PairAssessor(network)

    def on_pairing(self, output: PairingOutput) -> PairOutputs:
        out = PairOutputs(outcomes=unmatched_outcomes(output.unmatched))
        if output.pair is not None:
            assessed = self.assessor.on_pair(output.pair)
            out.alerts += assessed.alerts
            out.outcomes += assessed.outcomes
            out.biases = assessed.biases
        return out


class SourceWatermark:
    """The event time every source of one by-pass partition's weighings has reached.

    A by-pass partition mixes weighings re-keyed from every input partition (a
    source), and a worker that drains a backlog may re-key one input partition hours
    ahead of another. Expiring unpaired trips on the newest time seen would expire
    trips whose other end is still on its way from a slower source. The watermark is
    the oldest of the sources' newest times, and it never goes back.

    Silence is measured in the time the re-keyed messages were sent (their Kafka
    timestamps), not in this consumer's clock: a consumer that stalls, or reads a
    backlog, must not find every source but the next one silent. A source not heard
    for `idle_after_s` of that time stops holding the watermark back (a plaza without
    trucks, a partition whose worker fell behind). A source expected but not heard
    yet holds it back for `idle_after_s` after the first message.
    """

    def __init__(self, expected: Iterable[str], idle_after_s: float) -> None:
        self._idle_after_s = idle_after_s
        self._unheard = set(expected)
        # source -> (newest event time in ms, newest send time heard, s)
        self._sources: dict[str, tuple[int, float]] = {}
        self._first_s: float | None = None
        self._stream_s = -math.inf
        self._value = 0

    def observe(self, source: str, ts: int, sent_s: float) -> int:
        """Take a weighing of `source` stamped `ts`, sent at `sent_s`; the watermark after it."""
        if self._first_s is None:
            self._first_s = sent_s
        self._stream_s = max(self._stream_s, sent_s)
        self._unheard.discard(source)
        known = self._sources.get(source)
        if known is None:
            self._sources[source] = (ts, sent_s)
        else:
            self._sources[source] = (max(ts, known[0]), max(sent_s, known[1]))
        return self.value()

    def value(self) -> int:
        """The watermark: it rises to the oldest newest time of the sources still speaking."""
        now_s, idle_s = self._stream_s, self._idle_after_s
        if self._unheard and self._first_s is not None and now_s - self._first_s <= idle_s:
            return self._value  # a source may still bring older weighings
        newest = self._sources.values()
        live = [ts for ts, heard_s in newest if now_s - heard_s <= idle_s]
        reached = min(live) if live else max((ts for ts, _ in newest), default=0)
        self._value = max(self._value, reached)
        return self._value


class PartitionWatermarks:
    """A `SourceWatermark` per by-pass partition: each is one ordered log of every
    source's weighings. The sources are the `sources` input partitions, by number."""

    def __init__(self, sources: int, idle_after_s: float) -> None:
        self._sources = [str(p) for p in range(sources)]
        self._idle_after_s = idle_after_s
        self._by_partition: dict[int, SourceWatermark] = {}

    def observe(self, partition: int, source: str, ts: int, sent_s: float) -> int:
        """`SourceWatermark.observe` on `partition`'s watermark."""
        watermark = self._by_partition.get(partition)
        if watermark is None:
            watermark = SourceWatermark(self._sources, self._idle_after_s)
            self._by_partition[partition] = watermark
        return watermark.observe(source, ts, sent_s)

    def start_over(self) -> None:
        """Forget every partition: one given back later would find its sources long
        silent, so it waits again for every source."""
        self._by_partition.clear()
