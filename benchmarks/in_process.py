"""The worker's own code without Kafka or Faust: ingest and detectors over the same bytes.

Its rate is the ceiling the per-event Python work puts on a worker; the gap between it
and the worker's drain rate is what the stream machinery (Faust, aiokafka, sends) costs.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.synthetic import TOPICS, Load
from tollmon.ingest import DeadLetter, Ingest, Source
from tollmon.metrics import Metrics
from tollmon.network import load_network
from tollmon.pipeline import Pipeline
from tollmon.recorder import MetricsRecorder
from tollmon.settings import Settings
from tollmon.validation import validator_for


def in_process_rate(load: Load, network_file: Path) -> float:
    """Events/s through validation, dedup, metrics and the detectors, in this process."""
    settings = Settings(time_mode="replay")
    network = load_network(network_file)
    metrics = Metrics.create()
    ingest = Ingest(
        validator_for(network, settings.event_horizon_s * 1000, "replay"),
        metrics,
        time.time,
        time_mode="replay",
        allowed_lateness_ms=settings.allowed_lateness_s * 1000,
        dedup_capacity=settings.dedup_capacity,
    )
    pipeline = Pipeline(network)
    recorder = MetricsRecorder(metrics)
    started = time.perf_counter()
    for offset, (value, key, topic) in enumerate(
        zip(load.values, load.keys, load.topic, strict=True)
    ):
        outcome = ingest.accept(value, Source(TOPICS[topic], 0, offset, key))
        if isinstance(outcome, DeadLetter):
            raise RuntimeError(f"the benchmark load has an invalid event: {outcome.detail}")
        recorder.event(outcome)
        out = pipeline.process(outcome, time.time())
        for estimate in out.estimates:
            recorder.estimate(estimate)
    return len(load) / (time.perf_counter() - started)
