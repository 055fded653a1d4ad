"""Run the detectors in-process over recorded events: the offline twin of a replay worker.

The same objects serve here and in the stream (`Ingest` for validation and dedup,
`Pipeline` for queues and lane health, the weighing flow for pairs and scale bias),
so a backtest gives the estimates and alerts a worker in replay time mode gives on
the same input. Two things are decided on processing time in the stream and on
event time here, because a recorded day has no other clock: the idle feeds of the
reorder buffer and DATA_GAP silences (a backtest shows the gaps the day really had).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from detectors.alerts import Alert
from detectors.queue import QueueEstimate
from detectors.scales import ScaleBiasEstimate
from tollmon.eventfiles import RawLine
from tollmon.events import Event, WeighMeasurement, event_type
from tollmon.ingest import DeadLetter, Ingest, Source
from tollmon.metrics import Metrics
from tollmon.network import Network
from tollmon.pipeline import Outputs, Pipeline, PipelineConfig
from tollmon.validation import validator_for
from tollmon.weighing_flow import InProcessWeighing

# The input is sorted before the detectors see it, so nothing needs holding back;
# a whole day of hold keeps the reorder buffer from ever forcing events out.
REPLAY_CONFIG = PipelineConfig(max_hold_s=24 * 3600.0)
TICK_MS = 1_000  # as often as a worker's tick timer, on event time here
DEFAULT_HORIZON_S = 72 * 3600

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class InvalidLine:
    """An input line that did not become an event, and why."""

    source: str
    line: int
    reason: str
    detail: str
    raw: bytes


@dataclass
class BacktestResult:
    """Everything a backtest run produced, in the order the detectors produced it."""

    estimates: list[QueueEstimate] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    scale_biases: list[ScaleBiasEstimate] = field(default_factory=list)
    invalid: list[InvalidLine] = field(default_factory=list)
    events_by_type: Counter[str] = field(default_factory=Counter)
    late_events: int = 0

    @property
    def invalid_by_reason(self) -> Counter[str]:
        return Counter(line.reason for line in self.invalid)

    def collect(self, out: Outputs) -> None:
        self.estimates.extend(out.estimates)
        self.alerts.extend(out.alerts)


def validate_lines(lines: Iterable[RawLine], ingest: Ingest, result: BacktestResult) -> list[Event]:
    """The valid, first-seen events of `lines`; every other line is recorded in `result`."""
    events: list[Event] = []
    for item in lines:
        if item.error is not None:
            result.invalid.append(
                InvalidLine(item.source, item.line, item.error.reason, item.error.detail, item.raw)
            )
            continue
        outcome = ingest.accept(item.raw, Source(item.source, 0, item.line))
        if isinstance(outcome, DeadLetter):
            result.invalid.append(
                InvalidLine(item.source, item.line, outcome.reason, outcome.detail, item.raw)
            )
            continue
        result.events_by_type[event_type(outcome)] += 1
        events.append(outcome)
    return events


def run_backtest(
    network: Network,
    lines: Iterable[RawLine],
    *,
    metrics: Metrics | None = None,
    horizon_s: int = DEFAULT_HORIZON_S,
    config: PipelineConfig = REPLAY_CONFIG,
) -> BacktestResult:
    """Validate, dedup and sort the input, then run every detector over it."""
    result = BacktestResult()
    ingest = Ingest(
        validator_for(network, horizon_s * 1000, "replay"),
        metrics if metrics is not None else Metrics.create(),
        clock=lambda: 0.0,  # only feeds the lag histogram, meaningless offline
        time_mode="replay",
    )
    events = validate_lines(lines, ingest, result)
    events.sort(key=lambda event: event.ts)  # stable: equal times keep file order
    pipeline = Pipeline(network, config)
    weighing = InProcessWeighing(network)
    next_tick_ms: int | None = None
    for event in events:
        if next_tick_ms is None:
            next_tick_ms = (event.ts // TICK_MS + 1) * TICK_MS
        while next_tick_ms <= event.ts:
            result.collect(pipeline.tick(next_tick_ms / 1000))
            next_tick_ms += TICK_MS
        result.collect(pipeline.process(event, event.ts / 1000))
        if isinstance(event, WeighMeasurement):
            result.alerts.extend(weighing.on_pairing(weighing.book.add(event)).alerts)
    result.collect(pipeline.finish())
    result.late_events = pipeline.late_events()
    # The fit over every pair seen: what the scale-bias gauges would show at the end.
    result.scale_biases = weighing.assessor.estimator.estimate()
    return result


def write_outputs(result: BacktestResult, out_dir: Path) -> None:
    """Write queue_estimates.jsonl, alerts.jsonl, scale_bias.jsonl and invalid.jsonl."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_lines(out_dir / "queue_estimates.jsonl", (_encode(e) for e in result.estimates))
    _write_lines(out_dir / "alerts.jsonl", (_encode(a) for a in result.alerts))
    _write_lines(
        out_dir / "scale_bias.jsonl", (_encode(scale_bias_row(b)) for b in result.scale_biases)
    )
    _write_lines(out_dir / "invalid.jsonl", (_encode(invalid_row(i)) for i in result.invalid))


def scale_bias_row(b: ScaleBiasEstimate) -> dict[str, object]:
    return {
        "scale_id": b.scale_id,
        "plaza_id": b.plaza_id,
        "station": b.station,
        "bias_ratio": b.bias_ratio,
        "stderr_ratio": b.stderr_ratio,
        "pairs": b.pairs,
    }


def invalid_row(item: InvalidLine) -> dict[str, object]:
    return {
        "source": item.source,
        "line": item.line,
        "reason": item.reason,
        "detail": item.detail,
        # The original text where it is text, so a person can see what was wrong.
        "raw": item.raw.decode("utf-8", errors="replace"),
    }


def _write_lines(path: Path, lines: Iterable[bytes]) -> None:
    with path.open("wb") as out:
        for line in lines:
            out.write(line)
            out.write(b"\n")
