"""The national lane-record export (入口/出口车道流水) turned into contract events.

One record is one vehicle passing one lane: it becomes a `lane_transaction` and, when
the vehicle was weighed on a lane that has a scale in the network configuration, a
`weigh_measurement`. The plate (`VLP`) and its colour (`VLPC`) are replaced by an
HMAC-SHA256 under the operator's key, so the same vehicle gets the same hash across
records and files, while nobody without the key can reverse or test a guessed plate.
The mapping of the export's codes is documented in docs/replay.md.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from tollmon.errors import ConfigError, InvalidEventError
from tollmon.events import (
    Direction,
    Event,
    LaneTransaction,
    Payment,
    TxResult,
    WeighMeasurement,
    encode,
)
from tollmon.network import Network

PLATE_KEY_ENV = "TOLLMON_PLATE_KEY"
REDACTED = "<redacted>"
PLATE_FIELDS = ("VLP", "VLPC")

# Exports are stamped in China Standard Time, which has no daylight saving.
CHINA_TIME = timezone(timedelta(hours=8))

# MEDIATYPE: 1 OBU, 2 CPC card, 3 paper pass, 9 none. Only an OBU is an ETC passage.
_ETC_MEDIA = frozenset({"1"})
# TRANSFLAG: 1 normal; 2 the OBU/ETC transaction failed and the lane finished it by
# hand (特情/ETC 转人工); 3 refused at the barrier (e.g. 入口治超 overload, blacklist).
_RESULTS: dict[str, TxResult] = {"1": "OK", "2": "ETC_FAIL", "3": "REJECTED"}
# VEHICLETYPE (JT/T 489 codes): 1-4 客一..客四, 11-16 货一..货六, 21-26 专一..专六.
_CLASS_LETTERS = {0: "K", 1: "H", 2: "Z"}


class PlateHasher:
    """Keyed hash of plate and colour; the key never leaves this object."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ConfigError(PLATE_KEY_ENV, ["must be set to a non-empty secret key"])
        self._key = key

    def __repr__(self) -> str:
        return "PlateHasher(<key hidden>)"

    def __call__(self, plate: str, colour: str) -> str:
        message = f"{plate.strip().upper()}|{colour.strip()}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def plate_hasher_from_env(environ: Mapping[str, str]) -> PlateHasher:
    """The hasher keyed by TOLLMON_PLATE_KEY; ConfigError (refuse to run) when it is unset."""
    key = environ.get(PLATE_KEY_ENV, "")
    if not key:
        raise ConfigError(
            PLATE_KEY_ENV,
            [
                "is not set: lane records carry raw plates, which are hashed with this key "
                "before anything is stored or sent (set it to the operator's secret)"
            ],
        )
    return PlateHasher(key.encode())


def redact(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record without its plate, safe to write to an invalid-lines file."""
    return {k: (REDACTED if k in PLATE_FIELDS else v) for k, v in record.items()}


class LaneRecordAdapter:
    """Turns export records into contract events for one network."""

    def __init__(self, network: Network, hasher: PlateHasher) -> None:
        self._network = network
        self._hash = hasher
        # Operators may note a plaza's national station code as `national_id` in the
        # network file; otherwise the export's station id is the plaza id.
        self._plaza_by_code: dict[str, str] = {}
        for plaza in network.plazas:
            code = getattr(plaza, "national_id", None)
            self._plaza_by_code[str(code) if code is not None else plaza.id] = plaza.id
            self._plaza_by_code.setdefault(plaza.id, plaza.id)

    def events(self, record: Mapping[str, Any]) -> list[Event]:
        """The events of one record; InvalidEventError (naming the field) when it is unusable."""
        station: Direction = "exit" if _text(record, "EXTIME", required=False) else "entry"
        prefix = "EN" if station == "entry" else "EX"
        station_code = _text(record, f"{prefix}TOLLSTATIONID")
        plaza_id = self._plaza_by_code.get(station_code, station_code)
        lane_id = self._lane(plaza_id, station, _text(record, f"{prefix}TOLLLANEID"))
        ts = parse_local_time(_text(record, f"{prefix}TIME"))
        pass_id = _text(record, "PASSID")
        plate_hash = self._hash(_text(record, "VLP"), _text(record, "VLPC", required=False))
        vehicle_class = vehicle_class_of(_text(record, "VEHICLETYPE"))
        axles = _int(record, "ENAXLECOUNT" if station == "entry" else "AXLECOUNT", default=0)
        axles = axles if axles >= 2 else 2  # cars are often exported with 0 axles
        event_id = _event_id(station, station_code, lane_id, ts, pass_id)
        transaction = LaneTransaction(
            event_id=f"{event_id}t",
            ts=ts,
            plaza_id=plaza_id,
            lane_id=lane_id,
            direction=station,
            payment=payment_of(_text(record, "MEDIATYPE", required=False)),
            result=result_of(_text(record, "TRANSFLAG")),
            vehicle_class=vehicle_class,
            axles=axles,
            pass_id=pass_id,
            plate_hash=plate_hash,
        )
        events: list[Event] = [transaction]
        gross_kg = _int(record, "ENWEIGHT" if station == "entry" else "EXWEIGHT", default=0)
        scale_id = self._scale_on(plaza_id, station, lane_id)
        if gross_kg > 0 and scale_id is not None:
            # Weighed on the approach to the barrier: before the passage is recorded.
            events.insert(
                0,
                WeighMeasurement(
                    event_id=f"{event_id}w",
                    ts=ts,
                    plaza_id=plaza_id,
                    scale_id=scale_id,
                    station=station,
                    lane_id=lane_id,
                    pass_id=pass_id,
                    plate_hash=plate_hash,
                    axles=axles,
                    gross_kg=gross_kg,
                ),
            )
        return events

    def messages(self, record: dict[str, Any]) -> list[bytes]:
        """The record's events as contract JSON messages."""
        return [encode(event) for event in self.events(record)]

    def _lane(self, plaza_id: str, station: Direction, lane_code: str) -> str:
        # National lane ids are long codes ending in the plaza's lane number.
        for candidate in (lane_code, lane_code[-2:]):
            if self._network.lane_type(plaza_id, station, candidate) is not None:
                return candidate
        return lane_code

    def _scale_on(self, plaza_id: str, station: str, lane_id: str) -> str | None:
        for site in self._network.scale_sites:
            if (site.plaza_id, site.direction, site.lane_id) == (plaza_id, station, lane_id):
                return site.scale_id
        return None


def parse_local_time(text: str) -> int:
    """Epoch ms of an export time `YYYY-MM-DDTHH:MM:SS` in China Standard Time."""
    try:
        local = datetime.fromisoformat(text.strip().replace(" ", "T"))
    except ValueError:
        message = f"time {text!r} is not YYYY-MM-DDTHH:MM:SS"
        raise InvalidEventError("invalid_value", message) from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=CHINA_TIME)
    return int(local.timestamp() * 1000)


def vehicle_class_of(code: str) -> str:
    """JT/T 489 class (K1..K4, H1..H6, Z1..Z6) of a national VEHICLETYPE code."""
    try:
        number = int(code)
    except ValueError:
        number = -1
    letter = _CLASS_LETTERS.get(number // 10)
    rank = number % 10
    limit = 4 if letter == "K" else 6
    if letter is None or not 1 <= rank <= limit:
        raise InvalidEventError("invalid_value", f"VEHICLETYPE {code!r} is not a JT/T 489 code")
    return f"{letter}{rank}"


def payment_of(media_type: str) -> Payment:
    return "ETC" if media_type in _ETC_MEDIA else "MTC"


def result_of(trans_flag: str) -> TxResult:
    result = _RESULTS.get(trans_flag)
    if result is None:
        raise InvalidEventError("invalid_value", f"TRANSFLAG {trans_flag!r} is not 1, 2 or 3")
    return result


def _text(record: Mapping[str, Any], name: str, *, required: bool = True) -> str:
    value = record.get(name)
    if value is None or str(value).strip() == "":
        if required:
            raise InvalidEventError("missing_field", f"record has no {name}")
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Parquet and pandas turn integer codes with gaps into floats
    return str(value).strip()


def _int(record: Mapping[str, Any], name: str, default: int) -> int:
    text = _text(record, name, required=False)
    if not text:
        return default
    try:
        return round(float(text))
    except ValueError:
        raise InvalidEventError("wrong_type", f"{name} {text!r} is not a number") from None


def _event_id(station: str, station_code: str, lane_id: str, ts: int, pass_id: str) -> str:
    # Re-exports of the same record must dedup, so the id is derived from what
    # identifies a passage; hashed to stay within the 64-character limit.
    identity = f"{station}|{station_code}|{lane_id}|{ts}|{pass_id}".encode()
    return "lr" + hashlib.sha256(identity).hexdigest()[:40]
