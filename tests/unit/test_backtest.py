"""Backtest: any file format, every bad line accounted for, the detectors' outputs written."""

from __future__ import annotations

import gzip
import itertools
import random
import re
from pathlib import Path

import msgspec
import pandas as pd
import pytest

from detectors.alerts import Alert
from detectors.queue import QueueEstimate
from tollmon.backtest import BacktestResult, run_backtest, write_outputs
from tollmon.eventfiles import RawLine, read_event_files
from tollmon.events import Event, encode
from tollmon.network import Network
from tollmon.report import render_report
from tollmon.simulate import Surge, TrafficProfile, generate

START_MS = 1_714_521_600_000  # 2024-05-01 08:00 UTC+8
PLAZA = "URC-E01"


@pytest.fixture(scope="module")
def surge_events(network: Network) -> list[Event]:
    """Twenty minutes at one plaza, with an entry surge that must raise and clear an alert."""
    profile = TrafficProfile(vehicles_per_hour=500, surges=(Surge(PLAZA, 10.0, 120, 600, "entry"),))
    return list(generate(network, START_MS, 1200, profile, seed=1, plazas=[PLAZA]))


@pytest.fixture(scope="module")
def surge_result(network: Network, surge_events: list[Event]) -> BacktestResult:
    return run_backtest(network, lines_of(surge_events))


def lines_of(events: list[Event]) -> list[RawLine]:
    return [RawLine("events.jsonl", n, encode(e)) for n, e in enumerate(events, start=1)]


def rows_of(events: list[Event]) -> list[dict[str, object]]:
    return [msgspec.json.decode(encode(e)) for e in events]


def outputs(result: BacktestResult) -> tuple[list[QueueEstimate], list[Alert]]:
    return result.estimates, result.alerts


def test_a_surge_raises_and_resolves_a_queue_congestion_alert(surge_result: BacktestResult) -> None:
    statuses = [(a.kind, a.status) for a in surge_result.alerts if a.plaza_id == PLAZA]
    assert ("QUEUE_CONGESTION", "firing") in statuses
    assert ("QUEUE_CONGESTION", "resolved") in statuses
    congestion = [a for a in surge_result.alerts if a.kind == "QUEUE_CONGESTION"]
    firing = next(a for a in congestion if a.status == "firing")
    resolved = next(a for a in congestion if a.status == "resolved")
    assert firing.alert_id == resolved.alert_id


def test_every_approach_reports_every_5_s_of_event_time(surge_result: BacktestResult) -> None:
    for direction in ("entry", "exit"):
        times = [e.ts for e in surge_result.estimates if e.direction == direction]
        assert times == sorted(times)
        assert {b - a for a, b in itertools.pairwise(times)} == {5000}
        assert len(times) >= 1200 / 5 - 10


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".csv", ".parquet"])
def test_every_file_format_gives_the_same_outputs(
    network: Network,
    surge_events: list[Event],
    surge_result: BacktestResult,
    tmp_path: Path,
    suffix: str,
) -> None:
    path = tmp_path / f"events{suffix}"
    lines = b"".join(encode(e) + b"\n" for e in surge_events)
    if suffix == ".jsonl":
        path.write_bytes(lines)
    elif suffix == ".jsonl.gz":
        path.write_bytes(gzip.compress(lines))
    elif suffix == ".csv":
        pd.DataFrame(rows_of(surge_events)).to_csv(path, index=False)
    else:
        pd.DataFrame(rows_of(surge_events)).to_parquet(path)
    result = run_backtest(network, read_event_files([path]))
    assert not result.invalid
    assert outputs(result) == outputs(surge_result)


def test_input_order_within_the_future_tolerance_does_not_matter(
    network: Network, surge_events: list[Event], surge_result: BacktestResult
) -> None:
    # Files concatenated from several topics are out of order by up to a minute or so;
    # lines more than 5 min ahead of the input's watermark would be rejected as future_ts.
    jitter = random.Random(3)
    shuffled = sorted(surge_events, key=lambda e: e.ts + jitter.uniform(0, 60_000))
    assert shuffled != surge_events
    assert outputs(run_backtest(network, lines_of(shuffled))) == outputs(surge_result)


def test_invalid_lines_are_kept_with_their_line_number_and_reason(
    network: Network, surge_events: list[Event], tmp_path: Path
) -> None:
    good = [encode(e) for e in surge_events[:50]]
    bad = [
        b"not json",
        b'{"type":"lane_transaction","event_id":"x","ts":1,"plaza_id":"NOWHERE"}',
        b'{"type":"parking","event_id":"x","ts":1,"plaza_id":"URC-E01"}',
        good[0],  # a duplicate
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([*good, *bad]) + b"\n\n")
    result = run_backtest(network, read_event_files([path]))
    assert [(i.line, i.reason) for i in result.invalid] == [
        (51, "not_json"),
        (52, "missing_field"),
        (53, "unknown_type"),
        (54, "duplicate"),
    ]
    assert sum(result.events_by_type.values()) == 50
    write_outputs(result, tmp_path / "out")
    written = (tmp_path / "out" / "invalid.jsonl").read_text().splitlines()
    assert [msgspec.json.decode(line)["line"] for line in written] == [51, 52, 53, 54]
    assert msgspec.json.decode(written[0])["raw"] == "not json"


def test_events_beyond_the_horizon_ahead_of_the_input_watermark_are_rejected(
    network: Network, surge_events: list[Event]
) -> None:
    first = surge_events[0]
    day_ms = 24 * 3_600_000
    # A quiet night is not the future in a replay; a timestamp days ahead is.
    night = msgspec.structs.replace(first, event_id="morning", ts=first.ts + 8 * 3_600_000)
    future = msgspec.structs.replace(first, event_id="future", ts=first.ts + 30 * day_ms)
    result = run_backtest(network, lines_of([first, night, future]))
    assert [i.reason for i in result.invalid] == ["future_ts"]


def test_the_output_files_hold_the_contract_records(
    surge_result: BacktestResult, tmp_path: Path
) -> None:
    write_outputs(surge_result, tmp_path)
    estimates = (tmp_path / "queue_estimates.jsonl").read_bytes().splitlines()
    assert [msgspec.json.decode(line, type=QueueEstimate) for line in estimates] == (
        surge_result.estimates
    )
    first = msgspec.json.decode(estimates[0])
    assert {"ts", "plaza_id", "direction", "queue_veh", "queue_m", "wait_s", "level"} <= set(first)
    alerts = (tmp_path / "alerts.jsonl").read_bytes().splitlines()
    assert [msgspec.json.decode(line, type=Alert) for line in alerts] == surge_result.alerts


def test_the_report_is_one_self_contained_page_with_plots(surge_result: BacktestResult) -> None:
    page = render_report(surge_result, "surge", tolerance_ratio=0.015)
    assert page.count("data:image/png;base64,") >= 2
    assert not re.search(r"(src|href)=['\"]https?:", page)
    for heading in ("Events by type", "Invalid lines by reason", "Alerts raised by kind"):
        assert heading in page
    assert "QUEUE_CONGESTION" in page
