"""The national lane-record adapter: contract events out, no raw plate anywhere."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner

from tollmon.backtest import run_backtest, write_outputs
from tollmon.cli import app
from tollmon.errors import ConfigError, InvalidEventError
from tollmon.eventfiles import read_record_files
from tollmon.events import LaneTransaction, WeighMeasurement, encode
from tollmon.lanerecords import (
    LaneRecordAdapter,
    PlateHasher,
    parse_local_time,
    plate_hasher_from_env,
    redact,
    vehicle_class_of,
)
from tollmon.metrics import Metrics
from tollmon.network import Network
from tollmon.validation import EventValidator, reference_from_network

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "lane_records_sample.csv"
KEY = "test-only-plate-key"


def sample_plates() -> set[str]:
    import csv

    with SAMPLE.open(encoding="utf-8") as f:
        return {row["VLP"] for row in csv.DictReader(f)}


@pytest.fixture
def adapter(network: Network) -> LaneRecordAdapter:
    return LaneRecordAdapter(network, PlateHasher(KEY.encode()))


def entry_record(**overrides: str) -> dict[str, str]:
    record = {
        "PASSID": "016501012024050108001000000",
        "ENTOLLSTATIONID": "URC-E01",
        "ENTOLLLANEID": "G003065001001006",
        "ENTIME": "2024-05-01T08:00:10",
        "MEDIATYPE": "2",
        "VLP": "新A12345",
        "VLPC": "1",
        "VEHICLETYPE": "13",
        "ENWEIGHT": "21000",
        "ENAXLECOUNT": "3",
        "TRANSFLAG": "1",
        "DIRECTION": "1",
    }
    return {**record, **overrides}


def test_every_record_of_the_sample_export_becomes_valid_events(network: Network) -> None:
    validator = EventValidator(reference_from_network(network), horizon_ms=10**12)
    adapter = LaneRecordAdapter(network, PlateHasher(KEY.encode()))
    lines = list(read_record_files([SAMPLE], adapter.messages, lambda r: b""))
    good = [line for line in lines if line.error is None]
    assert len(good) > 60
    for line in good:
        validator.validate(line.raw, now_ms=None)
    # The one record with a garbled time is rejected, naming the reason.
    assert [(line.line, line.error.reason) for line in lines if line.error] == [
        (65, "invalid_value")
    ]


def test_a_weighed_truck_gives_its_weighing_on_the_lane_scale_and_its_transaction(
    adapter: LaneRecordAdapter,
) -> None:
    weighing, transaction = adapter.events(entry_record())
    assert isinstance(weighing, WeighMeasurement)
    assert (weighing.scale_id, weighing.station, weighing.gross_kg) == (
        "URC-E01-EN-S1",
        "entry",
        21000,
    )
    assert isinstance(transaction, LaneTransaction)
    assert (transaction.lane_id, transaction.vehicle_class, transaction.axles) == ("06", "H3", 3)
    assert transaction.plate_hash == weighing.plate_hash
    assert transaction.ts == 1714521610000  # 08:00:10 in UTC+8 is 00:00:10 UTC


def test_exit_records_are_read_from_their_exit_fields(adapter: LaneRecordAdapter) -> None:
    record = entry_record(
        EXTOLLSTATIONID="URC-E02",
        EXTOLLLANEID="G003065001002006",
        EXTIME="2024-05-01T09:14:10",
        EXWEIGHT="20800",
        AXLECOUNT="3",
    )
    weighing, transaction = adapter.events(record)
    assert isinstance(weighing, WeighMeasurement)
    assert (weighing.plaza_id, weighing.station, weighing.scale_id) == (
        "URC-E02",
        "exit",
        "URC-E02-EX-S1",
    )
    assert weighing.gross_kg == 20800
    assert transaction.ts == parse_local_time("2024-05-01T09:14:10")


@pytest.mark.parametrize(
    ("overrides", "payment", "result"),
    [
        ({"MEDIATYPE": "1", "TRANSFLAG": "1"}, "ETC", "OK"),
        ({"MEDIATYPE": "1", "TRANSFLAG": "2"}, "ETC", "ETC_FAIL"),
        ({"MEDIATYPE": "2", "TRANSFLAG": "1"}, "MTC", "OK"),
        ({"MEDIATYPE": "9", "TRANSFLAG": "3"}, "MTC", "REJECTED"),
    ],
    ids=["obu-ok", "obu-failed-finished-by-hand", "cpc-card", "refused"],
)
def test_media_and_transaction_flag_map_to_payment_and_result(
    adapter: LaneRecordAdapter, overrides: dict[str, str], payment: str, result: str
) -> None:
    transaction = adapter.events(entry_record(ENWEIGHT="0", **overrides))[-1]
    assert isinstance(transaction, LaneTransaction)
    assert (transaction.payment, transaction.result) == (payment, result)


@pytest.mark.parametrize(
    ("code", "vehicle_class"),
    [("1", "K1"), ("4", "K4"), ("11", "H1"), ("16", "H6"), ("21", "Z1"), ("26", "Z6")],
)
def test_national_vehicle_types_map_to_jtt_489_classes(code: str, vehicle_class: str) -> None:
    assert vehicle_class_of(code) == vehicle_class


@pytest.mark.parametrize("code", ["0", "5", "17", "x"])
def test_unknown_vehicle_types_are_rejected(code: str) -> None:
    with pytest.raises(InvalidEventError, match="VEHICLETYPE"):
        vehicle_class_of(code)


def test_the_adapter_refuses_to_run_without_a_plate_key() -> None:
    with pytest.raises(ConfigError, match="TOLLMON_PLATE_KEY"):
        plate_hasher_from_env({})


def test_plate_hashes_depend_on_the_key_and_the_colour() -> None:
    one, other = PlateHasher(b"k1"), PlateHasher(b"k2")
    assert one("新A12345", "0") == one("新A12345", "0")
    assert one("新A12345", "0") != other("新A12345", "0")
    assert one("新A12345", "0") != one("新A12345", "1")
    assert "新A12345" not in one("新A12345", "0")
    assert KEY not in repr(PlateHasher(KEY.encode()))


def test_redacted_records_keep_no_plate() -> None:
    assert "新A12345" not in str(redact(entry_record()))


def test_backtest_cli_on_lane_records_needs_the_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["backtest", "--format", "lane-records", "--out", str(tmp_path), str(SAMPLE)],
        env={"TOLLMON_PLATE_KEY": ""},
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)


def test_no_raw_plate_reaches_any_output_log_or_metric_of_a_backtest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, network: Network
) -> None:
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    cli = CliRunner().invoke(
        app,
        ["backtest", "--format", "lane-records", "--out", str(out), str(SAMPLE)],
        env={"TOLLMON_PLATE_KEY": KEY},
    )
    assert cli.exit_code == 0, cli.output
    registry = CollectorRegistry()
    adapter = LaneRecordAdapter(network, PlateHasher(KEY.encode()))
    lines = read_record_files([SAMPLE], adapter.messages, encode_redacted)
    result = run_backtest(network, lines, metrics=Metrics.create(registry))
    write_outputs(result, tmp_path / "again")
    written = [p.read_text(encoding="utf-8") for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 9
    seen = [*written, cli.output, caplog.text, generate_latest(registry).decode()]
    plates = sample_plates()
    assert len(plates) > 40
    leaks = {plate for plate in plates for text in seen if plate in text}
    assert not leaks


def encode_redacted(record: dict[str, object]) -> bytes:
    import msgspec

    return msgspec.json.encode(redact(record))


def test_adapted_events_encode_to_contract_json(adapter: LaneRecordAdapter) -> None:
    for event in adapter.events(entry_record()):
        assert b'"type"' in encode(event)
