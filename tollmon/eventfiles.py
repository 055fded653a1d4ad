"""Read event files as the raw messages Kafka would carry, each with where it came from.

JSONL (optionally gzip-compressed) lines are taken byte for byte, so that a backtest
validates exactly what a replay would send. CSV and Parquet rows with the contract's
column names are turned into JSON objects first: empty cells are absent fields, and
numeric columns are converted so that a well-formed row validates like its JSON twin.
National lane-record exports go through `tollmon.lanerecords`.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

import msgspec

from tollmon.errors import InvalidEventError

InputFormat = Literal["events", "lane-records"]

_INT_FIELDS = frozenset({"ts", "axles", "gross_kg", "service_ms", "count"})
_FLOAT_FIELDS = frozenset({"speed_kmh"})
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class RawLine:
    """One input message: its bytes, or why it could not even become a message.

    `line` is the 1-based line of a JSONL or CSV file (the header is line 1) or the
    1-based row of a Parquet file.
    """

    source: str
    line: int
    raw: bytes
    error: InvalidEventError | None = None


# A record adapter turns one row into messages, or raises InvalidEventError.
RecordAdapter = Callable[[dict[str, Any]], list[bytes]]
# The redacted form of a rejected row, safe to write where people read it.
RecordRedactor = Callable[[dict[str, Any]], bytes]


def read_event_files(paths: Iterable[Path]) -> Iterator[RawLine]:
    """Every message of the contract event files, in file order."""
    for path in paths:
        yield from _read_events(path)


def read_record_files(
    paths: Iterable[Path], adapter: RecordAdapter, redact: RecordRedactor
) -> Iterator[RawLine]:
    """Every message an adapter makes of the rows of record files (CSV, JSONL, Parquet)."""
    for path in paths:
        for line, row in _rows(path, typed=False):
            if isinstance(row, bytes):
                yield RawLine(path.name, line, row, InvalidEventError("not_json", "unreadable row"))
                continue
            try:
                messages = adapter(row)
            except InvalidEventError as exc:
                yield RawLine(path.name, line, redact(row), exc)
                continue
            for raw in messages:
                yield RawLine(path.name, line, raw)


def _read_events(path: Path) -> Iterator[RawLine]:
    if _kind(path) == "jsonl":
        with _open_binary(path) as stream:
            for number, raw in enumerate(stream, start=1):
                stripped = raw.rstrip(b"\r\n")
                # A blank line holds no message (files often end with one).
                if stripped.strip():
                    yield RawLine(path.name, number, stripped)
        return
    for line, row in _rows(path, typed=True):
        raw = row if isinstance(row, bytes) else _encode(row)
        yield RawLine(path.name, line, raw)


def _kind(path: Path) -> Literal["jsonl", "csv", "parquet"]:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last == ".csv":
        return "csv"
    if last in (".parquet", ".pq"):
        return "parquet"
    return "jsonl"


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix.lower() == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _rows(path: Path, *, typed: bool) -> Iterator[tuple[int, dict[str, Any] | bytes]]:
    """(line, row) pairs; a JSONL line that is not a JSON object comes back as bytes."""
    kind = _kind(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        for number, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield number, _cleaned(row, typed)
    elif kind == "csv":
        with _open_binary(path) as binary:
            # utf-8-sig: exports from Windows tools start with a byte-order mark.
            text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
            reader = csv.DictReader(text)
            for row in reader:
                yield reader.line_num, _cleaned(row, typed)
    else:
        with _open_binary(path) as stream:
            for number, raw in enumerate(stream, start=1):
                if not raw.strip():
                    continue
                try:
                    value = msgspec.json.decode(raw)
                except msgspec.DecodeError:
                    value = None
                yield number, value if isinstance(value, dict) else raw.rstrip(b"\r\n")


def _cleaned(row: dict[str, Any], typed: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key is None or value is None or value == "":
            continue
        if isinstance(value, float) and math.isnan(value):
            continue
        out[key] = _typed(key, value) if typed else value
    return out


def _typed(key: str, value: Any) -> Any:
    # CSV cells are text and Parquet integer columns with gaps come back as floats;
    # a value that does not convert is kept, for the validator to name its field.
    try:
        if key in _INT_FIELDS:
            number = float(value)
            return int(number) if number.is_integer() else value
        if key in _FLOAT_FIELDS and isinstance(value, str):
            return float(value)
        if key == "axle_kg" and isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return msgspec.json.decode(text)
            return [int(part) for part in text.split(";")]
    except (ValueError, msgspec.DecodeError):
        return value
    return value
