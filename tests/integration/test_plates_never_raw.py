"""Plates never raw (SPEC §2): after a full run over lane records that carry raw plates,
no plate-shaped string is in the worker's log, its /metrics, any topic of the run
(inputs, outputs, dead letters, changelogs: keys, values and headers), the tools'
console output, or the backtest's files and report.

The records are the sample export with extra plate shapes: 新A12345-style, the
eight-character new-energy form (新AD12345), and ASCII-only plates, plus rows the
adapter rejects, whose redacted copy goes to the invalid-lines output.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
import psutil
import pytest
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient

from tests.integration.conftest import REPO, Stack, WorkerProcess, wait_until

pytestmark = pytest.mark.integration

SAMPLE = REPO / "tests" / "data" / "lane_records_sample.csv"
EXTRA_PLATES = ("新AD12345", "新A12345", "新F8K2M7", "AD82345", "B12345")
# Chinese plates: province character, issuing-office letter, 5 (6 for new energy) more.
CHINESE_PLATE = re.compile(r"[\u4e00-\u9fff][A-Z][A-Z0-9]{5,6}")
# The same without the province, as ASCII-only systems write them.
ASCII_PLATE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{1,2}[0-9][A-Z0-9]{3,5}(?![A-Za-z0-9])")


# The report's plots are embedded PNGs: base64 is no text a plate could be read from,
# and it is long enough to hold plate-shaped runs by chance.
EMBEDDED_IMAGE = re.compile(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+")


def plates_in(text: str, known: Iterable[str]) -> set[str]:
    """Plate-shaped strings in `text`, and every known plate or its ASCII tail in it."""
    text = EMBEDDED_IMAGE.sub("", text)
    found = set(CHINESE_PLATE.findall(text)) | set(ASCII_PLATE.findall(text))
    for plate in known:
        tail = plate[1:] if not plate[0].isascii() else plate
        if plate in text or re.search(rf"(?<![A-Za-z0-9]){tail}(?![A-Za-z0-9])", text):
            found.add(plate)
    return found


def records_with_plates(out: Path) -> list[str]:
    """The sample export with more plate shapes and two rows the adapter rejects."""
    with SAMPLE.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for row, plate in zip(rows, EXTRA_PLATES, strict=False):
        row["VLP"] = plate
    rows[-1]["VEHICLETYPE"] = "99"  # not a JT/T 489 code: rejected, plate and all
    rows[-2]["TRANSFLAG"] = "7"
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return sorted({row["VLP"] for row in rows})


def tollmon(*args: str, env: dict[str, str]) -> str:
    """Run a `tollmon` command; everything it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "tollmon", *args],
        check=False,  # the assertion shows the output
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def reported_count(output: str, what: str) -> int:
    match = re.search(rf"(\d+) {what}", output)
    assert match is not None, output
    return int(match.group(1))


def topics_text(bootstrap: str, prefixes: tuple[str, ...]) -> str:
    """Keys, values and headers of every message on the run's topics, as text."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        topics = sorted(t for t in admin.list_topics() if t.startswith(prefixes))
    finally:
        admin.close()
    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    parts: list[bytes] = []
    try:
        for m in consumer:
            parts += [m.key or b"", m.value or b""]
            parts += [v for _, v in m.headers]
    finally:
        consumer.close()
    assert topics, "the run made no topics"
    assert parts, "the run left nothing on its topics"
    return b"\n".join(parts).decode("utf-8", errors="replace")


def test_a_full_run_over_lane_records_leaves_no_raw_plate_anywhere(
    stack: Stack,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    records = tmp_path / "lane_records.csv"
    plates = records_with_plates(records)
    # The check can fail: the export itself is full of plates.
    assert set(plates) <= plates_in(records.read_text(encoding="utf-8"), plates)

    worker = start_worker(TOLLMON_TIME_MODE="replay", TOLLMON_ALERTMANAGER_URL="")
    env = {
        "TOLLMON_PLATE_KEY": "test-key-" + worker.prefix,
        "TOLLMON_KAFKA_BOOTSTRAP": stack.bootstrap,
    }
    replayed = tollmon(
        "replay", str(records), "--format", "lane-records", "--prefix", worker.prefix, "--fast",
        env=env,
    )  # fmt: skip
    sent = reported_count(replayed, "events")

    def counted() -> float:
        return worker.total("tollmon_events_total") + worker.total("tollmon_events_invalid_total")

    wait_until(lambda: counted() == sent, 60, f"{sent} replayed messages counted", counted)
    out = tmp_path / "backtest"
    backtested = tollmon(
        "backtest", str(records), "--format", "lane-records", "--out", str(out), env=env
    )
    metrics = httpx.get(worker.metrics_url, timeout=5).text
    # /metrics listens on loopback only (TOLLMON_WEB_HOST unset), where plates never are.
    listening = {
        c.laddr.ip
        for c in psutil.Process(worker.process.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == worker.port
    }
    assert listening == {"127.0.0.1"}
    worker.stop()

    app_topics = worker.prefix.replace(".", "-")  # Faust's changelogs and internal topics
    places = {
        "worker log": worker.log_path.read_text(errors="replace"),
        "/metrics": metrics,
        "topics": topics_text(stack.bootstrap, (worker.prefix, app_topics)),
        "replay output": replayed,
        "backtest output": backtested,
        **{
            f"backtest {f.name}": f.read_text(encoding="utf-8", errors="replace")
            for f in sorted(out.iterdir())
        },
    }
    assert {"backtest report.html", "backtest invalid.jsonl"} <= places.keys()
    assert "<redacted>" in places["backtest invalid.jsonl"]  # the rejected rows are there
    leaks = {where: found for where, text in places.items() if (found := plates_in(text, plates))}
    assert leaks == {}
