"""The expiry watermark of one by-pass partition: the event time all its sources reached.

Times are event times in ms (`ts`) and the send times of the re-keyed messages in
seconds (`sent_s`, their Kafka timestamps); the consumer's own clock plays no part.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tollmon.weighing_flow import PartitionWatermarks, SourceWatermark

IDLE_S = 10.0


def test_it_waits_for_the_slowest_source() -> None:
    watermark = SourceWatermark(["0", "1"], IDLE_S)
    assert watermark.observe("0", ts=1_000, sent_s=0.0) == 0  # "1" not heard yet
    assert watermark.observe("1", ts=9_000_000, sent_s=1.0) == 1_000
    assert watermark.observe("0", ts=5_000, sent_s=2.0) == 5_000


def test_a_source_not_heard_yet_holds_it_back_for_the_allowance() -> None:
    """A backlog drained one source after another: the second one's trips are still coming."""
    watermark = SourceWatermark(["0", "1"], IDLE_S)
    for minute in range(120):
        reached = watermark.observe("0", ts=minute * 60_000, sent_s=minute / 100)
    assert reached == 0
    assert watermark.observe("1", ts=30_000, sent_s=1.3) == 30_000


def test_a_source_never_heard_stops_holding_it_back_after_the_allowance() -> None:
    """An input partition whose plazas have no scales: nothing of it ever comes."""
    watermark = SourceWatermark(["0", "1"], IDLE_S)
    watermark.observe("0", ts=1_000, sent_s=100.0)
    assert watermark.observe("0", ts=2_000, sent_s=110.0) == 0
    assert watermark.observe("0", ts=3_000, sent_s=110.5) == 3_000


def test_a_silent_source_stops_holding_it_back() -> None:
    watermark = SourceWatermark(["0", "1"], IDLE_S)
    watermark.observe("0", ts=1_000, sent_s=0.0)
    assert watermark.observe("1", ts=50_000, sent_s=5.0) == 1_000
    assert watermark.observe("1", ts=60_000, sent_s=10.5) == 60_000


def test_a_stalled_consumer_does_not_make_its_sources_silent() -> None:
    """Minutes may pass on the consumer's clock between two messages sent together."""
    watermark = SourceWatermark(["0", "1"], IDLE_S)
    watermark.observe("0", ts=1_000, sent_s=0.0)
    watermark.observe("1", ts=2_000, sent_s=0.1)
    # The consumer stalls for minutes here; the next message was sent a second later.
    assert watermark.observe("1", ts=9_000_000, sent_s=1.0) == 1_000


def test_it_never_goes_back() -> None:
    watermark = SourceWatermark(["0"], IDLE_S)
    watermark.observe("0", ts=50_000, sent_s=0.0)
    assert watermark.observe("1", ts=1_000, sent_s=0.5) == 50_000  # a source not expected


def test_a_source_not_expected_is_waited_for_once_heard() -> None:
    watermark = SourceWatermark(["0"], IDLE_S)
    watermark.observe("", ts=1_000, sent_s=0.0)  # re-keyed by a worker that did not say
    assert watermark.observe("0", ts=60_000, sent_s=1.0) == 1_000


@st.composite
def backlogs(draw: st.DrawFn) -> tuple[int, list[tuple[str, int]]]:
    """Several sources' weighings, each in its own time order, interleaved at random."""
    n = draw(st.integers(1, 4))
    streams = [sorted(draw(st.lists(st.integers(0, 10**7), max_size=30))) for _ in range(n)]
    cursors = [0] * n
    merged: list[tuple[str, int]] = []
    while any(c < len(s) for c, s in zip(cursors, streams, strict=True)):
        ready = [i for i in range(n) if cursors[i] < len(streams[i])]
        i = draw(st.sampled_from(ready))
        merged.append((str(i), streams[i][cursors[i]]))
        cursors[i] += 1
    return n, merged


@given(backlogs(), st.floats(0.0, IDLE_S))
def test_no_weighing_still_to_come_is_behind_it(
    backlog: tuple[int, list[tuple[str, int]]], span_s: float
) -> None:
    """Sent within the allowance, in any interleaving: nothing to come is ever late."""
    n, merged = backlog
    watermark = SourceWatermark([str(i) for i in range(n)], IDLE_S)
    for k, (source, ts) in enumerate(merged):
        reached = watermark.observe(source, ts, sent_s=span_s * k / len(merged))
        still_to_come = [t for _, t in merged[k + 1 :]]
        assert reached <= min(still_to_come, default=reached)


def test_each_by_pass_partition_has_its_own() -> None:
    """A partition read ahead of another must not expire the other's trips."""
    watermarks = PartitionWatermarks(sources=1, idle_after_s=IDLE_S)
    assert watermarks.observe(0, "0", ts=9_000_000, sent_s=0.0) == 9_000_000
    assert watermarks.observe(1, "0", ts=1_000, sent_s=0.1) == 1_000


def test_after_a_rebalance_every_source_is_waited_for_again() -> None:
    watermarks = PartitionWatermarks(sources=2, idle_after_s=IDLE_S)
    watermarks.observe(0, "0", ts=1_000, sent_s=0.0)
    watermarks.observe(0, "1", ts=2_000, sent_s=0.0)
    watermarks.start_over()
    # Given back an hour later: source "1" has not spoken yet since.
    assert watermarks.observe(0, "0", ts=3_600_000, sent_s=3_600.0) == 0
