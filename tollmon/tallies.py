"""Per-event metrics that cost a dictionary add, not a locked update, per event.

prometheus-client's `Counter.inc` and `Histogram.observe` take a lock per call (and a
histogram one per bucket it fills); once per input event that was 8 % of a worker's
CPU (docs/profiling.md). These collectors keep plain Python numbers, written only by
the worker's event loop, and hand prometheus-client the families at scrape time (the
histogram's exposition, `_bucket{le}`, `_sum`, `_count`, is the library's own).

The labelled ones also write their own exposition lines: the series of a network grow
with plazas × lanes, and prometheus-client builds a label dictionary per sample and
escapes every label value at every scrape, about 7.5 µs a line, seconds of the worker's
CPU per scrape at a few thousand plazas. Here each series' line up to its value is
rendered once, when the series is first used.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# Observations are folded into the buckets in batches this large (and at each scrape).
_FOLD_EVERY = 4_096
# A page is written this many series at a time: a few milliseconds of the event loop.
SERIES_PER_PART = 4_096


def _escape(value: str) -> str:
    """A label value as the text format quotes it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class Tally:
    """One label set's count."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class Level:
    """One label set's gauge value."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = value


C = TypeVar("C", Tally, Level)


class _Labelled(Collector, Generic[C]):
    """Children by label values, each made by `child`; exposed as one `family`."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        child: Callable[[], C],
        family: type[CounterMetricFamily | GaugeMetricFamily],
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], C] = {}
        self._child: Callable[[], C] = child
        self._family = family
        # The text format's names and order: `_total` on counters, labels sorted by name.
        kind = "counter" if family is CounterMetricFamily else "gauge"
        self._sample_name = f"{name}_total" if kind == "counter" else name
        help_text = documentation.replace("\\", r"\\").replace("\n", r"\n")
        self._header = (
            f"# HELP {self._sample_name} {help_text}\n# TYPE {self._sample_name} {kind}\n"
        )
        self._label_order = sorted(range(len(self._labelnames)), key=self._labelnames.__getitem__)
        self._prefixes: dict[tuple[str, ...], str] = {}  # per series, its line up to the value
        registry.register(self)

    def labels(self, *values: str) -> C:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}, got {values}")
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._child()
            self._prefixes[values] = self._prefix(values)
        return child

    def exposition(self) -> str:
        """This family in the Prometheus text format, as `generate_latest` writes it."""
        return "".join(self.exposition_parts())

    def exposition_parts(self, series_per_part: int = SERIES_PER_PART) -> Iterator[str]:
        """`exposition` in parts, each series' value read as its part is written.

        The caller may let other work run between parts (the worker's event loop does):
        a series removed meanwhile is left out, one added meanwhile waits for next time.
        """
        prefixes = self._prefixes
        series = list(self._children.items())
        yield self._header
        for start in range(0, len(series), series_per_part):
            lines = []
            for values, child in series[start : start + series_per_part]:
                prefix = prefixes.get(values)
                if prefix is not None:
                    lines.append(f"{prefix}{floatToGoString(child.value)}\n")  # type: ignore[no-untyped-call]
            yield "".join(lines)

    def _prefix(self, values: tuple[str, ...]) -> str:
        if not values:
            return f"{self._sample_name} "
        names = self._labelnames
        pairs = ",".join(f'{names[i]}="{_escape(values[i])}"' for i in self._label_order)
        return f"{self._sample_name}{{{pairs}}} "

    def describe(self) -> Iterator[Metric]:
        yield self._family(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family(self._name, self._documentation, labels=self._labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


class TallyCounter(_Labelled[Tally]):
    """A labelled counter; `labels(...)` children are incremented without a lock."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        super().__init__(name, documentation, labelnames, registry, Tally, CounterMetricFamily)


class TallyGauge(_Labelled[Level]):
    """A labelled gauge; `labels(...)` children are set without a lock."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        super().__init__(name, documentation, labelnames, registry, Level, GaugeMetricFamily)

    def remove(self, *values: str) -> None:
        """Drop a label set, so the series disappears from the scrape."""
        self._children.pop(values, None)
        self._prefixes.pop(values, None)


class BatchHistogram(Collector):
    """An unlabelled histogram; `observe` appends, the buckets are filled in batches."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._counts = np.zeros(len(self._bounds) + 1, dtype=np.int64)  # last: above all
        self._sum = 0.0
        self._pending: list[float] = []
        self._fold_lock = threading.Lock()  # a scrape from another thread folds too
        registry.register(self)

    def observe(self, value: float) -> None:
        pending = self._pending
        pending.append(value)
        if len(pending) >= _FOLD_EVERY:
            self._fold()

    def _fold(self) -> None:
        with self._fold_lock:
            pending, self._pending = self._pending, []
            if not pending:
                return
            values = np.asarray(pending, dtype=np.float64)
            # Bucket i counts bounds[i-1] < v <= bounds[i] (Prometheus' `le`).
            slots = np.searchsorted(self._bounds, values, side="left")
            self._counts += np.bincount(slots, minlength=len(self._counts))
            self._sum += float(values.sum())

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation)

    def collect(self) -> Iterator[Metric]:
        self._fold()
        cumulative = np.cumsum(self._counts)
        buckets = [
            (floatToGoString(bound), int(count))  # type: ignore[no-untyped-call]
            for bound, count in zip(self._bounds, cumulative[:-1], strict=True)
        ]
        buckets.append(("+Inf", int(cumulative[-1])))
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=buckets, sum_value=self._sum
        )
