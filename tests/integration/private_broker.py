"""A single-node KRaft broker of a test's own, for tests the shared broker cannot serve.

Tests that stop and restart a broker, or that need a listener the shared stack does
not have (SASL_SSL), run this one: the same jars `tools/stack.sh` fetched, free ports,
data and log in a temporary directory. `stop()` and `start()` again keep the data, as
a broker restarted by its operator would.
"""

from __future__ import annotations

import base64
import signal
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, wait_until

LIBS = REPO / ".cache" / "kafka" / "libs"

LOG4J = """\
status = warn
name = tollmon-private-broker
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cluster_id() -> str:
    # The form `kafka-storage random-uuid` prints, without starting another JVM.
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def skip_without_kafka_jars() -> None:
    if not any(LIBS.glob("kafka_*.jar")):
        pytest.skip("Kafka jars not fetched yet (tools/stack.sh up fetches them)")


@dataclass
class PrivateBroker:
    """One broker+controller node; clients connect to `bootstrap` over `protocol`.

    `extra_properties` adds server.properties lines (TLS key store, SASL settings).
    The broker's own connections (inter-broker, KRaft controller) stay PLAINTEXT on
    loopback: they are never what a test is about.
    """

    directory: Path
    protocol: str = "PLAINTEXT"
    extra_properties: str = ""
    port: int = field(default_factory=free_port)
    internal: int = field(default_factory=free_port)
    controller: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "broker.log"

    @property
    def config_path(self) -> Path:
        return self.directory / "server.properties"

    def java(self) -> list[str]:
        return [
            "java",
            "-Xmx384m",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
            "-cp",
            f"{LIBS}/*",
        ]

    def format(self, *storage_args: str) -> None:
        """Write the configuration and format the data directory (once, before `start`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.server_properties())
        (self.directory / "log4j2.properties").write_text(LOG4J)
        subprocess.run(
            [
                *self.java(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id(),
                "-c",
                str(self.config_path),
                *storage_args,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self, timeout: float = 60) -> None:
        """Start the broker and wait until it says it has started."""
        already = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                [*self.java(), "kafka.Kafka", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.process = process

        def started() -> bool:
            assert process.poll() is None, f"broker exited:\n{self.log_tail()}"
            with self.log_path.open("rb") as log:
                log.seek(already)
                return b"Kafka Server started" in log.read()

        wait_until(started, timeout, f"the private broker on port {self.port} to start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker (SIGTERM: a clean shutdown; SIGKILL: a crash)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def server_properties(self) -> str:
        name = self.protocol
        return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{self.controller}
listeners={name}://127.0.0.1:{self.port},INTERNAL://127.0.0.1:{self.internal},\
CONTROLLER://127.0.0.1:{self.controller}
advertised.listeners={name}://localhost:{self.port},INTERNAL://127.0.0.1:{self.internal}
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
listener.security.protocol.map={name}:{name},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={self.directory / "data"}
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
{self.extra_properties}"""
