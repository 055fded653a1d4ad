"""Integration fixtures: the real local stack and real worker processes.

The stack (Kafka, Prometheus, Alertmanager) is started by `tools/stack.sh up`,
which is idempotent; workers run as `tollmon worker` subprocesses on the ports
Prometheus scrapes, each under its own topic prefix so tests never share state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from tollmon.settings import INPUT_TOPICS

REPO = Path(__file__).resolve().parents[2]
# The ports Prometheus scrapes (config/prometheus.yml; tools/stack.sh substitutes these).
WORKER_PORTS = tuple(int(p) for p in os.environ.get("TOLLMON_WORKER_PORTS", "6066,6067").split(","))


@dataclass(frozen=True)
class Stack:
    bootstrap: str
    prometheus_url: str
    alertmanager_url: str


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    subprocess.run([str(REPO / "tools" / "stack.sh"), "up"], check=True, cwd=REPO)
    stack = Stack(
        bootstrap=f"localhost:{os.environ.get('TOLLMON_KAFKA_PORT', '9092')}",
        prometheus_url=f"http://127.0.0.1:{os.environ.get('TOLLMON_PROMETHEUS_PORT', '9090')}",
        alertmanager_url=f"http://127.0.0.1:{os.environ.get('TOLLMON_ALERTMANAGER_PORT', '9093')}",
    )
    before = topic_names(stack.bootstrap)
    yield stack
    delete_topics_since(stack.bootstrap, before)


def topic_names(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def delete_topics_since(bootstrap: str, before: set[str]) -> None:
    """Delete the topics the session made (each test's worker has a prefix of its own),
    so that repeated runs do not fill the broker: some 1,200 partitions a run otherwise.

    A local demo's topics (`toll.`, `tollmon`) are left alone, as is everything if the
    broker is not reachable (a fault test may leave it down)."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    except KafkaError:
        return
    try:
        names = [
            name
            for name in admin.list_topics()
            if name not in before and not name.startswith(("__", "toll.", "tollmon"))
        ]
        if names:
            admin.delete_topics(names, timeout_ms=60_000)
    except KafkaError:
        pass
    finally:
        admin.close()


@dataclass
class WorkerProcess:
    prefix: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample the worker exposes, keyed by (name, sorted labels)."""
        text = httpx.get(self.metrics_url, timeout=5).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def total(self, name: str, **labels: str) -> float:
        return sum(
            value
            for (sample, sample_labels), value in self.metrics().items()
            if sample == name and set(labels.items()) <= set(sample_labels)
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def create_topics(bootstrap: str, names: list[str], partitions: int = 4) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if new:
            admin.create_topics(new)
    finally:
        admin.close()


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    state: Callable[[], object] | None = None,
) -> None:
    """Poll `condition` until true; on time-out, fail saying what and (`state`) where it was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.5)
    seen = f"; last state: {state()!r}" if state is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{seen}")


def launch_worker(
    stack: Stack,
    directory: Path,
    prefix: str | None = None,
    port: int = WORKER_PORTS[0],
    **env: str,
) -> WorkerProcess:
    """Start `tollmon worker` on fresh topics under `prefix`; wait for its /metrics."""
    prefix = prefix if prefix is not None else f"t{uuid.uuid4().hex[:8]}."
    create_topics(
        stack.bootstrap,
        [
            prefix + t
            for t in (*INPUT_TOPICS, "toll.deadletter", "toll.alerts", "toll.queue.estimates")
        ],
    )
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / f"worker-{port}-{uuid.uuid4().hex[:6]}.log"
    worker_env = {
        **os.environ,
        "TOLLMON_KAFKA_BOOTSTRAP": stack.bootstrap,
        "TOLLMON_TOPIC_PREFIX": prefix,
        "TOLLMON_WEB_PORT": str(port),
        "TOLLMON_DATA_DIR": str(directory / f"data-{port}"),
        "TOLLMON_NETWORK_FILE": str(REPO / "config" / "network.yaml"),
        "TOLLMON_ALERTMANAGER_URL": stack.alertmanager_url,
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tollmon", "worker"],
            cwd=REPO,
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(prefix, port, log_path, process, env)

    def ready() -> bool:
        assert process.poll() is None, f"worker exited:\n{worker.log_tail()}"
        return httpx.get(worker.metrics_url, timeout=2).status_code == 200

    try:
        wait_until(ready, 90, "the worker's /metrics endpoint")
    except BaseException:
        worker.stop()
        raise
    return worker


@pytest.fixture
def start_worker(stack: Stack, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(prefix: str | None = None, port: int = WORKER_PORTS[0], **env: str) -> WorkerProcess:
        worker = launch_worker(stack, tmp_path, prefix, port, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def read_topic(bootstrap: str, topic: str, idle_ms: int = 1500) -> list[tuple[bytes | None, bytes]]:
    """Every message of a topic from the beginning, as (key, value)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=idle_ms,
    )
    try:
        return [(m.key, m.value) for m in consumer]
    finally:
        consumer.close()


def wait_for_stable_group(stack: Stack, prefix: str, members: int, timeout: float = 90) -> None:
    """Wait until the workers of `prefix` form one stable consumer group.

    Faust can skip events fetched while a rebalance is under way (see the operations
    notes), so tests that start several workers produce only once the group is stable.
    """
    group = f"{prefix}tollmon".replace(".", "-")
    admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap)

    def stable() -> bool:
        info = admin.describe_groups([group])[group]
        return info["group_state"] == "Stable" and len(info["members"]) == members

    try:
        wait_until(stable, timeout, f"consumer group {group} stable with {members} members")
    finally:
        admin.close()
    time.sleep(3)  # table recovery after the assignment


def prometheus_value(stack: Stack, query: str) -> float | None:
    """The single value of an instant query, or None when it returns nothing."""
    response = httpx.get(f"{stack.prometheus_url}/api/v1/query", params={"query": query}, timeout=5)
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def network_with_unpaired_horizon(directory: Path, horizon_s: float) -> Path:
    """The sample network, with trips left unpaired expiring after `horizon_s`."""
    data = yaml.safe_load((REPO / "config" / "network.yaml").read_text(encoding="utf-8"))
    defaults = data.setdefault("defaults", {})
    defaults["thresholds"] = {**(defaults.get("thresholds") or {}), "unpaired_horizon_s": horizon_s}
    path = directory / "network.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path
