"""What an hour of traffic adds to a worker's memory, per plaza.

The detectors keep up to an hour of event time (the queue curves; plates for half an
hour, overload joins for a quarter). The live trials last 90 s, so their peak RSS holds
little of that state, and a worker that passes them may still outgrow its memory an hour
into service. This drains two backlogs of the same plazas in replay mode, a short one
and one over an hour long, and compares the workers' peak RSS. Detector horizons count
event time, so the long drain ends with the state of an hour of service.

Both workers remember only a few event ids for deduplication: that memory has a fixed
size whatever the plazas (`TOLLMON_DEDUP_CAPACITY`), and the live trials at the rating
already fill it, so it would otherwise be counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.synthetic import generate_load
from benchmarks.trials import DrainResult, drain

SHORT_S = 120.0
LONG_S = 3_900.0  # the curves' hour, and some
_SMALL_DEDUP = {"TOLLMON_DEDUP_CAPACITY": "1000"}


@dataclass(frozen=True)
class StateGrowth:
    plazas: int
    short_s: float
    long_s: float
    short: DrainResult
    long: DrainResult

    @property
    def per_plaza_bytes(self) -> float:
        """Peak RSS an hour of traffic adds per plaza, beyond the short drain's."""
        grown = self.long.peak_rss_bytes[0] - self.short.peak_rss_bytes[0]
        return max(grown, 0) / self.plazas


def measure(bootstrap: str, plazas: int, end_ms: int, workdir: Path) -> StateGrowth:
    """Drain `SHORT_S` and then `LONG_S` of event time ending at `end_ms`, `plazas` plazas."""
    runs = []
    for seconds in (SHORT_S, LONG_S):
        load = generate_load(plazas, end_ms - int(seconds * 1000), seconds, seed=3)
        runs.append(drain(bootstrap, load, plazas, 1, workdir, settings=_SMALL_DEDUP))
        del load
    return StateGrowth(plazas, SHORT_S, LONG_S, runs[0], runs[1])
