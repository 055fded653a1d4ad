"""Event-to-output latency: which produced event let an estimate out, and percentiles.

A worker publishes the estimate of an approach for the 5 s boundary B once its plaza's
event time has moved past B (`ApproachEstimator.advance`), and a plaza's events are
released only when both dense feeds (approach detections and lane transactions) have
passed them (`detectors.ordering`). So the estimate for B can leave when, after the
plaza's first event stamped after B (t1), each of the two feeds has delivered an event
stamped after t1. The later of those two is the *closing event*: its produce time is
where the latency starts. The wait from B to the closing event is the data itself
(≈5 events/s per plaza), not the worker, and is reported apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from benchmarks.synthetic import TOPIC_DETECTIONS, TOPIC_TRANSACTIONS, Load

# Plaza and event time folded into one sortable key: plaza * _PLAZA_STRIDE + ms offset.
_PLAZA_STRIDE = 10**11

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Percentiles:
    """Latency summary in seconds; `count` samples, of which `missing` never arrived."""

    count: int
    missing: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: FloatArray, missing: int = 0) -> Percentiles:
        """Percentiles where each missing sample counts as infinitely late."""
        values = np.concatenate([np.asarray(seconds, dtype=np.float64), np.full(missing, np.inf)])
        if len(values) == 0:
            return cls(0, 0, float("nan"), float("nan"), float("nan"))
        # "inverted_cdf": a percentile is an observed sample, and an infinite one stays infinite.
        p50, p99 = np.percentile(values, [50, 99], method="inverted_cdf")
        return cls(len(values), missing, float(p50), float(p99), float(values.max()))


def _keyed(plaza: npt.NDArray[np.integer], ts: IntArray, t0: int) -> IntArray:
    return plaza.astype(np.int64) * _PLAZA_STRIDE + (ts - t0)


def closing_times(
    load: Load,
    produced_at: FloatArray,
    plaza: npt.NDArray[np.integer],
    boundary_ms: IntArray,
) -> FloatArray:
    """Produce time (s) of the event that closed each (plaza, boundary); NaN when none did."""
    t0 = int(load.ts.min(initial=0))
    order = np.lexsort((load.ts, load.plaza))
    all_key = _keyed(load.plaza[order], load.ts[order], t0)
    want = _keyed(plaza, boundary_ms, t0)
    first = np.searchsorted(all_key, want, side="right")
    inside = first < len(all_key)
    first = np.minimum(first, len(all_key) - 1)
    inside &= load.plaza[order][first] == plaza
    t1 = load.ts[order][first]
    closing = np.full(len(want), -np.inf)
    for topic in (TOPIC_DETECTIONS, TOPIC_TRANSACTIONS):
        feed = order[load.topic[order] == topic]
        feed_key = _keyed(load.plaza[feed], load.ts[feed], t0)
        nxt = np.searchsorted(feed_key, _keyed(plaza, t1, t0), side="right")
        inside &= nxt < len(feed)
        nxt = np.minimum(nxt, len(feed) - 1)
        inside &= load.plaza[feed][nxt] == plaza
        closing = np.maximum(closing, produced_at[feed][nxt])
    return np.where(inside, closing, np.nan)
