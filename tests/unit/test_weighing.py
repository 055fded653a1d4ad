"""Weighing pairs, discrepancies and admitted overloads (SPEC §4.3)."""

from __future__ import annotations

import msgspec
import pytest

from detectors.overload import OverloadJoin, OverloadThresholds
from detectors.scales import ScaleBiasEstimate, ScaleInfo
from detectors.weighing import (
    HOUR_MS,
    NO_EXIT_PLAZA,
    PairingOutput,
    TripBook,
    WeighingRecord,
    WeighingThresholds,
    WeighPair,
    assess_pair,
    expired_entries,
    pair_weighing,
)
from tollmon import checkpoint
from tollmon.events import LaneTransaction, TxResult, WeighMeasurement, WeighQuality

SCALES = {
    s.scale_id: s
    for s in (
        ScaleInfo("A-EN", "PLAZA-A", "entry", "02", 5),
        ScaleInfo("B-EX", "PLAZA-B", "exit", "03", 5),
        ScaleInfo("C-EN", "PLAZA-C", "entry", "01", 0.5),
        ScaleInfo("D-EX", "PLAZA-D", "exit", "01", 0.5),
    )
}


def weighing(
    station: str = "entry",
    gross_kg: int = 30_000,
    *,
    pass_id: str = "P1",
    scale_id: str | None = None,
    plaza_id: str | None = None,
    ts: int = 0,
    axles: int = 5,
    quality: WeighQuality = "OK",
) -> WeighMeasurement:
    scale_id = scale_id or ("A-EN" if station == "entry" else "B-EX")
    return WeighMeasurement(
        event_id=f"{pass_id}-{station}-{ts}",
        ts=ts,
        plaza_id=plaza_id or SCALES[scale_id].plaza_id,
        scale_id=scale_id,
        station="entry" if station == "entry" else "exit",
        lane_id="02",
        pass_id=pass_id,
        plate_hash="h",
        axles=axles,
        gross_kg=gross_kg,
        quality=quality,
    )


def pair_of(
    entry_kg: int,
    exit_kg: int,
    *,
    entry_scale: str = "A-EN",
    exit_scale: str = "B-EX",
    entry_axles: int = 5,
    exit_axles: int = 5,
) -> WeighPair:
    book = TripBook()
    book.add(weighing("entry", entry_kg, scale_id=entry_scale, axles=entry_axles))
    out = book.add(weighing("exit", exit_kg, scale_id=exit_scale, ts=HOUR_MS, axles=exit_axles))
    assert out.pair is not None
    return out.pair


# ---- pairing ---------------------------------------------------------------------------------


def test_an_entry_and_an_exit_at_different_plazas_pair_by_pass_id() -> None:
    book = TripBook()
    assert book.add(weighing("entry", 30_000)) == book.add(weighing("entry", 9_000, pass_id="P2"))
    out = book.add(weighing("exit", 30_400, ts=2 * HOUR_MS))
    assert out.pair is not None
    assert (out.pair.entry.plaza_id, out.pair.exit.plaza_id) == ("PLAZA-A", "PLAZA-B")
    assert (out.pair.entry.gross_kg, out.pair.exit.gross_kg) == (30_000, 30_400)
    assert list(book.open_entries) == ["P2"]


def test_the_open_entry_round_trips_through_a_changelog() -> None:
    new_open, _ = pair_weighing(None, weighing("entry", 30_000, ts=5), 72 * HOUR_MS)
    assert new_open is not None
    data = msgspec.json.encode(new_open)
    assert msgspec.json.decode(data, type=WeighingRecord) == new_open
    assert len(data) < 120


def test_an_entry_older_than_the_horizon_expires_as_unmatched() -> None:
    book = TripBook(horizon_ms=72 * HOUR_MS)
    book.add(weighing("entry", 30_000, pass_id="OLD", ts=0))
    assert book.add(weighing("entry", 20_000, pass_id="NEW", ts=72 * HOUR_MS)).unmatched == ()
    out = book.add(weighing("entry", 20_000, pass_id="NEWER", ts=72 * HOUR_MS + 1))
    assert [(u.pass_id, u.reason, u.exit_plaza) for u in out.unmatched] == [
        ("OLD", "expired", NO_EXIT_PLAZA)
    ]
    assert "OLD" not in book.open_entries


def test_an_exit_after_the_horizon_is_unmatched_even_before_a_sweep() -> None:
    open_entry, _ = pair_weighing(None, weighing("entry", ts=0), 72 * HOUR_MS)
    _, out = pair_weighing(open_entry, weighing("exit", ts=73 * HOUR_MS), 72 * HOUR_MS)
    assert out.pair is None
    assert [u.reason for u in out.unmatched] == ["entry_too_old", "no_entry"]


def test_an_exit_arriving_before_its_entry_waits_and_still_pairs() -> None:
    # Re-keyed from other partitions, the entry can arrive after the exit in a replay.
    waiting, out = pair_weighing(None, weighing("exit", ts=3_600_000), 72 * HOUR_MS)
    assert waiting is not None
    assert out == PairingOutput()
    closed, out = pair_weighing(waiting, weighing("entry", ts=0), 72 * HOUR_MS)
    assert closed is None
    assert out.pair is not None
    assert (out.pair.entry.station, out.pair.exit.station) == ("entry", "exit")


def test_an_exit_whose_entry_never_comes_is_unmatched_at_its_exit_plaza() -> None:
    book = TripBook(horizon_ms=72 * HOUR_MS)
    assert book.add(weighing("exit", ts=0)) == PairingOutput()
    out = book.add(weighing("entry", ts=3 * HOUR_MS, pass_id="other-trip"))
    assert [(u.reason, u.exit_plaza) for u in out.unmatched] == [("no_entry", "PLAZA-B")]


def test_a_reweighing_at_entry_replaces_the_open_entry() -> None:
    first, _ = pair_weighing(None, weighing("entry", 52_000, ts=0), 72 * HOUR_MS)
    second, out = pair_weighing(first, weighing("entry", 41_000, ts=600_000), 72 * HOUR_MS)
    assert second is not None
    assert second.gross_kg == 41_000
    assert out == type(out)()


def test_expired_entries_sweeps_a_table_of_open_trips() -> None:
    table = {
        "P1": WeighingRecord(scale_id="A-EN", plaza_id="PLAZA-A", gross_kg=1, axles=2, ts=0),
        "P2": WeighingRecord(scale_id="A-EN", plaza_id="PLAZA-A", gross_kg=1, axles=2, ts=HOUR_MS),
    }
    gone = list(expired_entries(table.items(), watermark_ts=2 * HOUR_MS - 1, horizon_ms=HOUR_MS))
    assert [u.pass_id for u in gone] == ["P1"]


# ---- discrepancy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry_kg", "exit_kg", "outcome"),
    [
        pytest.param(30_000, 32_900, "matched", id="class-5-pair-9.7pct-within-widened-10pct"),
        pytest.param(30_000, 33_100, "discrepant", id="class-5-pair-10.3pct-beyond-10pct"),
        pytest.param(30_000, 26_900, "discrepant", id="lighter-at-exit-also-counts"),
        pytest.param(8_000, 8_950, "matched", id="11.9pct-but-under-1000kg"),
    ],
)
def test_discrepancy_tolerance_is_widened_by_both_scale_classes(
    entry_kg: int, exit_kg: int, outcome: str
) -> None:
    assessment = assess_pair(pair_of(entry_kg, exit_kg), SCALES)
    assert assessment.tolerance_ratio == pytest.approx(0.05 + 0.025 + 0.025)
    assert assessment.outcome == outcome
    assert (assessment.alert is not None) == (outcome == "discrepant")


def test_precise_scales_keep_the_tolerance_near_the_base() -> None:
    pair = pair_of(30_000, 31_700, entry_scale="C-EN", exit_scale="D-EX")
    assessment = assess_pair(pair, SCALES)
    assert assessment.tolerance_ratio == pytest.approx(0.055)
    assert assessment.outcome == "discrepant"


def test_base_tolerance_and_minimum_delta_are_configurable() -> None:
    loose = WeighingThresholds(pair_tolerance_ratio=0.10, min_discrepancy_kg=500)
    assert assess_pair(pair_of(30_000, 33_100), SCALES, loose).outcome == "matched"


def test_an_axle_change_is_discrepant_whatever_the_weight() -> None:
    assessment = assess_pair(pair_of(30_000, 30_000, entry_axles=5, exit_axles=6), SCALES)
    assert assessment.outcome == "discrepant"
    assert assessment.alert is not None
    assert assessment.alert.evidence["suspect"] == "axle count changed"


def test_the_discrepancy_alert_names_trip_scales_and_plazas() -> None:
    alert = assess_pair(pair_of(30_000, 36_000), SCALES).alert
    assert alert is not None
    assert (alert.kind, alert.severity, alert.status) == ("WEIGHT_DISCREPANCY", "warning", "firing")
    assert alert.plaza_id == "PLAZA-B"
    assert "P1" in alert.subject
    assert {
        k: alert.evidence[k] for k in ("entry_scale", "exit_scale", "entry_plaza", "exit_plaza")
    } == {
        "entry_scale": "A-EN",
        "exit_scale": "B-EX",
        "entry_plaza": "PLAZA-A",
        "exit_plaza": "PLAZA-B",
    }
    assert alert.evidence["suspect"] == "undetermined, likely load change"


def bias(scale_id: str, ratio: float, se: float = 0.002) -> ScaleBiasEstimate:
    s = SCALES[scale_id]
    return ScaleBiasEstimate(scale_id, s.plaza_id, s.station, ratio, se, 200, ratio, se)


@pytest.mark.parametrize(
    ("biases", "suspect"),
    [
        pytest.param([bias("A-EN", -0.04)], "entry scale A-EN", id="entry-reads-light"),
        pytest.param([bias("B-EX", +0.04)], "exit scale B-EX", id="exit-reads-heavy"),
        pytest.param(
            [bias("A-EN", -0.02), bias("B-EX", 0.05)],
            "exit scale B-EX",
            id="larger-confident-bias-wins",
        ),
        pytest.param(
            [bias("A-EN", +0.04)],
            "undetermined, likely load change",
            id="bias-in-the-other-direction-explains-nothing",
        ),
        pytest.param(
            [bias("A-EN", -0.04, se=0.03)],
            "undetermined, likely load change",
            id="unconfident-bias-explains-nothing",
        ),
    ],
)
def test_the_suspect_side_follows_confident_scale_bias(
    biases: list[ScaleBiasEstimate], suspect: str
) -> None:
    by_scale = {b.scale_id: b for b in biases}
    alert = assess_pair(pair_of(30_000, 36_000), SCALES, biases=by_scale).alert
    assert alert is not None
    assert alert.evidence["suspect"] == suspect


def test_a_flagged_reading_is_the_suspect() -> None:
    book = TripBook()
    book.add(weighing("entry", 30_000, quality="UNSTABLE"))
    pair = book.add(weighing("exit", 36_000, ts=HOUR_MS)).pair
    assert pair is not None
    assert not pair.both_ok
    alert = assess_pair(pair, SCALES).alert
    assert alert is not None
    assert alert.evidence["suspect"] == "entry reading flagged UNSTABLE"


# ---- admitted overload ------------------------------------------------------------------------


def transaction(
    result: TxResult, *, pass_id: str = "P1", ts: int = 5_000, direction: str = "entry"
) -> LaneTransaction:
    return LaneTransaction(
        event_id=f"{pass_id}-tx",
        ts=ts,
        plaza_id="PLAZA-A",
        lane_id="02",
        direction="entry" if direction == "entry" else "exit",
        payment="MTC",
        result=result,
        vehicle_class="H5",
        axles=5,
        pass_id=pass_id,
        plate_hash="h",
    )


@pytest.mark.parametrize(
    ("axles", "gross_kg", "overloaded"),
    [
        pytest.param(2, 18_900, False, id="2-axles-18t-within-5pct"),
        pytest.param(2, 18_901, True, id="2-axles-18t-beyond-5pct"),
        pytest.param(3, 26_250, False, id="3-axles-25t-at-tolerance"),
        pytest.param(3, 26_300, True, id="3-axles-25t-over"),
        pytest.param(4, 32_600, True, id="4-axles-31t-over"),
        pytest.param(5, 45_100, False, id="5-axles-43t-within"),
        pytest.param(5, 45_200, True, id="5-axles-43t-over"),
        pytest.param(6, 51_400, False, id="6-axles-49t-within"),
        pytest.param(6, 51_500, True, id="6-axles-49t-over"),
        pytest.param(8, 51_500, True, id="8-axles-use-the-6-plus-limit"),
    ],
)
def test_overload_limit_depends_on_axle_count(axles: int, gross_kg: int, overloaded: bool) -> None:
    assert OverloadThresholds().is_overloaded(gross_kg, axles) == overloaded


def test_overload_tolerance_is_configurable() -> None:
    strict = OverloadThresholds(overload_tolerance_ratio=0.0)
    assert strict.is_overloaded(43_001, 5)


@pytest.mark.parametrize("result", ["OK", "ETC_FAIL"])
def test_an_overweight_truck_let_in_raises_overload_admitted(result: TxResult) -> None:
    join = OverloadJoin()
    assert join.observe(weighing("entry", 50_000, ts=1_000)) is None
    alert = join.observe(transaction(result))
    assert alert is not None
    assert (alert.kind, alert.plaza_id, alert.started_at) == ("OVERLOAD_ADMITTED", "PLAZA-A", 5_000)
    assert alert.evidence["limit_kg"] == 43_000
    assert alert.evidence["result"] == result
    assert len(join) == 0


def test_a_rejected_overweight_truck_is_not_an_admitted_overload() -> None:
    join = OverloadJoin()
    join.observe(weighing("entry", 50_000))
    assert join.observe(transaction("REJECTED")) is None
    assert len(join) == 0


@pytest.mark.parametrize("result", ["OK", "ETC_FAIL", "REJECTED"])
def test_the_join_works_whichever_side_arrives_first(result: TxResult) -> None:
    join = OverloadJoin()
    assert join.observe(transaction(result, ts=1_000)) is None
    assert len(join) == 1
    alert = join.observe(weighing("entry", 50_000, ts=2_000))
    assert len(join) == 0
    if result == "REJECTED":
        assert alert is None
    else:
        assert alert is not None
        assert alert.started_at == 1_000
        assert (alert.evidence["lane"], alert.evidence["result"]) == ("02", result)


def test_only_the_same_trip_joins() -> None:
    join = OverloadJoin()
    join.observe(transaction("OK", pass_id="P2"))
    assert join.observe(weighing("entry", 50_000, pass_id="P1")) is None
    assert len(join) == 2


def test_a_legal_weighing_ends_the_join_without_an_alert() -> None:
    join = OverloadJoin()
    join.observe(transaction("OK"))
    assert join.observe(weighing("entry", 40_000)) is None
    assert len(join) == 0
    assert join.observe(weighing("entry", 40_000, pass_id="P2")) is None
    assert len(join) == 0


def test_a_legal_weighing_again_clears_an_overweight_one() -> None:
    join = OverloadJoin()
    join.observe(weighing("entry", 50_000, ts=0))
    join.observe(weighing("entry", 40_000, ts=60_000))
    assert join.observe(transaction("OK", ts=90_000)) is None


def test_exit_events_do_not_touch_the_join() -> None:
    join = OverloadJoin()
    join.observe(weighing("entry", 50_000))
    assert join.observe(weighing("exit", 50_000)) is None
    assert join.observe(transaction("OK", direction="exit")) is None
    assert len(join) == 1
    assert join.observe(transaction("OK")) is not None


@pytest.mark.parametrize("first", ["weighing", "admission"])
def test_a_half_join_expires_after_the_window(first: str) -> None:
    join = OverloadJoin(OverloadThresholds(join_window_s=60))
    if first == "weighing":
        join.observe(weighing("entry", 50_000, ts=0))
    else:
        join.observe(transaction("OK", ts=0))
    join.observe(transaction("OK", pass_id="LATER", ts=30_000))
    join.expire(60_000)
    assert len(join) == 2
    join.expire(60_001)
    assert len(join) == 1
    late = transaction("OK", ts=60_001) if first == "weighing" else weighing("entry", 50_000)
    assert join.observe(late) is None


def test_a_held_join_survives_a_checkpoint() -> None:
    join = OverloadJoin()
    join.observe(transaction("ETC_FAIL", ts=1_000))
    join.observe(weighing("entry", 50_000, pass_id="P2", ts=2_000))
    restored = checkpoint.loads(checkpoint.dumps({"PLAZA-A": join}), OverloadJoin)["PLAZA-A"]
    first = restored.observe(weighing("entry", 50_000, ts=3_000))
    second = restored.observe(transaction("OK", pass_id="P2", ts=4_000))
    assert first is not None
    assert second is not None
    assert (first.started_at, first.evidence["result"]) == (1_000, "ETC_FAIL")
    assert (second.started_at, second.evidence["weighed_at"]) == (4_000, 2_000)
