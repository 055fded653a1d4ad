"""A `tollmon worker` subprocess for the benchmark, and what it costs (RSS, CPU time).

Peak RSS and CPU time come from Linux's /proc: VmHWM is the kernel's own record of the
process's resident high-water mark, so no sampling can miss a peak.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tollmon import native

REPO = Path(__file__).resolve().parents[1]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def peak_rss_bytes(self) -> int:
        """The process's resident-set high-water mark so far."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc: peak RSS needs Linux")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def hot_path(self) -> str | None:
        """What the worker said it runs (`native.status()`, logged at its start)."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith(_STATUS_LINE):
                return line.removeprefix(_STATUS_LINE).strip()
        return None


_STATUS_LINE = "tollmon worker: detectors "


def check_hot_path(worker: Worker) -> None:
    """Refuse a worker that runs other detector code than the benchmark reports: a source
    edited while a benchmark runs makes its workers run plain Python (tollmon/native.py),
    half as fast, under a report that says compiled."""
    expected, running = native.status(), worker.hot_path()
    if running != expected:
        worker.stop()
        raise RuntimeError(
            f"the worker runs {running!r}, the benchmark {expected!r}:"
            " was the source edited while it ran?"
        )


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return (total - idle) / _CLOCK_TICKS, total / _CLOCK_TICKS


def busy_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Share of the machine's CPU capacity in use between two `machine_cpu` readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


def start_worker(
    bootstrap: str,
    prefix: str,
    network_file: Path,
    directory: Path,
    port: int,
    time_mode: str,
    timeout_s: float = 180.0,
) -> Worker:
    """Start a worker on `prefix` (its own consumer group); wait until it serves /metrics."""
    directory.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TOLLMON_KAFKA_BOOTSTRAP": bootstrap,
        "TOLLMON_TOPIC_PREFIX": prefix,
        "TOLLMON_WEB_PORT": str(port),
        "TOLLMON_DATA_DIR": str(directory / f"data-{port}"),
        "TOLLMON_NETWORK_FILE": str(network_file),
        "TOLLMON_TIME_MODE": time_mode,
        # Benchmark plazas must not reach the shared Alertmanager.
        "TOLLMON_ALERTMANAGER_URL": "",
        "TOLLMON_LOG_LEVEL": "warning",
    }
    log_path = directory / f"worker-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tollmon", "worker"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, port, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited at start:\n{worker.log_tail()}")
        try:
            # Any answer, not /metrics: rendering 10^4 plazas' metrics costs the worker.
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code < 500:
                check_hot_path(worker)
                return worker
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    worker.stop()
    raise RuntimeError(f"worker not serving after {timeout_s:.0f} s:\n{worker.log_tail()}")


def consumer_group(prefix: str, app_id: str = "tollmon") -> str:
    """The input topics' consumer group (Settings.consumer_group)."""
    return f"{prefix}{app_id}".replace(".", "-")
