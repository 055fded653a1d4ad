"""The lock-free per-event metrics expose exactly what prometheus-client's own would."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tollmon.tallies import BatchHistogram, TallyCounter, TallyGauge

BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


def _exposition(registry: CollectorRegistry) -> list[str]:
    # prometheus-client adds `_created` samples to its own metrics; they are not ours.
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=0, max_value=7200, allow_nan=False),
            st.sampled_from(BOUNDS),  # exactly on a bound: counted in that bucket (`le`)
        ),
        max_size=10_000,
    )
)
def test_a_batch_histogram_exposes_what_a_histogram_observing_the_same_values_would(
    values: list[float],
) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("lag_seconds", "Lag", buckets=BOUNDS, registry=theirs)
    batched = BatchHistogram("lag_seconds", "Lag", BOUNDS, ours)
    for value in values:
        reference.observe(value)
        batched.observe(value)
    mine, expected = _exposition(ours), _exposition(theirs)
    # The sum may differ in its last digits (numpy adds in another order).
    assert [s for s in mine if "_sum" not in s] == [s for s in expected if "_sum" not in s]
    summed = ours.get_sample_value("lag_seconds_sum")
    assert summed is not None
    assert abs(summed - sum(values)) <= 1e-9 * max(1.0, sum(values))


def test_a_tally_counter_exposes_what_a_counter_incremented_the_same_way_would() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Counter("events", "Valid input events", ("type",), registry=theirs)
    tallied = TallyCounter("events", "Valid input events", ("type",), ours)
    for kind, times in (("lane_transaction", 7), ("approach_detection", 3)):
        for _ in range(times):
            reference.labels(kind).inc()
            tallied.labels(kind).inc()
    reference.labels("weigh_measurement").inc(5)
    tallied.labels("weigh_measurement").inc(5)
    assert _exposition(ours) == _exposition(theirs)
    assert ours.get_sample_value("events_total", {"type": "lane_transaction"}) == 7


def test_a_tally_counter_refuses_the_wrong_number_of_labels() -> None:
    tallied = TallyCounter("events", "Valid input events", ("type",), CollectorRegistry())
    with pytest.raises(ValueError, match="takes labels"):
        tallied.labels("a", "b")


def test_a_tally_gauge_exposes_what_a_gauge_set_and_removed_the_same_way_would() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    labels = ("plaza", "direction", "lane")
    reference = Gauge("etc_failure_ratio", "ETC failure ratio", labels, registry=theirs)
    tallied = TallyGauge("etc_failure_ratio", "ETC failure ratio", labels, ours)
    for lane, ratio in (("01", 0.5), ("02", 0.02), ("01", 0.25), ("03", 1.0)):
        reference.labels("P1", "entry", lane).set(ratio)
        tallied.labels("P1", "entry", lane).set(ratio)
    reference.remove("P1", "entry", "03")
    tallied.remove("P1", "entry", "03")
    assert _exposition(ours) == _exposition(theirs)
    assert (
        ours.get_sample_value(
            "etc_failure_ratio", dict(zip(labels, ("P1", "entry", "01"), strict=True))
        )
        == 0.25
    )
    with pytest.raises(ValueError, match="takes labels"):
        tallied.labels("P1", "entry")


LABEL_VALUES = st.text(alphabet=st.sampled_from('aZ09_-./ "\\\n收费站'), max_size=12)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            LABEL_VALUES,
            LABEL_VALUES,
            st.one_of(st.integers(0, 10**12), st.floats(allow_nan=False), st.just(float("nan"))),
        ),
        max_size=30,
    )
)
def test_the_tallies_own_lines_are_those_prometheus_client_writes_for_them(
    series: list[tuple[str, str, float]],
) -> None:
    registry = CollectorRegistry()
    # Label names out of order: the text format sorts them.
    gauge = TallyGauge("queue_vehicles", "Queue\\ by \n approach", ("plaza", "direction"), registry)
    counter = TallyCounter("arrivals", "Arrivals", ("zone", "plaza"), registry)
    for first, second, value in series:
        gauge.labels(first, second).set(value)
        if math.isfinite(value) and value >= 0:
            counter.labels(first, second).inc(int(min(value, 10**12)))
    if series:
        gauge.remove(series[0][0], series[0][1])
    mine = (gauge.exposition() + counter.exposition()).splitlines()
    assert mine == generate_latest(registry).decode().splitlines()


def test_a_page_written_in_parts_leaves_out_a_series_removed_between_them() -> None:
    registry = CollectorRegistry()
    gauge = TallyGauge("queue_vehicles", "Queue", ("plaza",), registry)
    for n in range(10):
        gauge.labels(f"P{n}").set(n)
    parts = gauge.exposition_parts(series_per_part=4)
    written = [next(parts), next(parts)]  # the header, then P0..P3
    gauge.remove("P7")  # the event loop ran between two parts
    gauge.labels("P10").set(10)
    gauge.labels("P5").set(55)
    written += list(parts)
    lines = "".join(written).splitlines()
    assert lines[2:] == [f'queue_vehicles{{plaza="P{n}"}} {n}.0' for n in range(5)] + [
        'queue_vehicles{plaza="P5"} 55.0',
        'queue_vehicles{plaza="P6"} 6.0',
        'queue_vehicles{plaza="P8"} 8.0',
        'queue_vehicles{plaza="P9"} 9.0',
    ]
    assert gauge.exposition().count("\n") == 2 + 10  # the next page: P10 in, P7 out
