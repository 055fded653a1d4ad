"""A worker against a SASL_SSL (SCRAM-SHA-512) broker: it reads events, a wrong password is refused.

The shared stack's broker is PLAINTEXT, so this module runs its own single-node
KRaft broker from the same jars, on free ports in a temporary directory, with a
throw-away CA made by `openssl`. The SCRAM user is written into the metadata log at
format time (`--add-scram`), as KRaft has no ZooKeeper to hold credentials.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from pydantic import SecretStr

from tests.integration.conftest import REPO, WorkerProcess, wait_until
from tollmon.events import encode
from tollmon.kafka_security import KafkaSecurity
from tollmon.network import load_network
from tollmon.publish import topic_for
from tollmon.settings import INPUT_TOPICS
from tollmon.simulate import TrafficProfile, generate

pytestmark = pytest.mark.integration

USER = "tollmon"
PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]
LIBS = REPO / ".cache" / "kafka" / "libs"


@dataclass(frozen=True)
class SecureBroker:
    bootstrap: str
    ca_file: Path
    log_path: Path

    def env(self, password: str = PASSWORD) -> dict[str, str]:
        return {
            "TOLLMON_KAFKA_BOOTSTRAP": self.bootstrap,
            "TOLLMON_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "TOLLMON_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "TOLLMON_KAFKA_USERNAME": USER,
            "TOLLMON_KAFKA_PASSWORD": password,
            "TOLLMON_KAFKA_CA_FILE": str(self.ca_file),
        }

    def security(self) -> KafkaSecurity:
        return KafkaSecurity(
            security_protocol="SASL_SSL",
            username=USER,
            password=SecretStr(PASSWORD),
            ca_file=self.ca_file,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path, keystore_password: str) -> None:
    """A CA, and a broker certificate it signs for localhost, packed into PKCS#12."""
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=tollmon test CA", "-keyout", "ca.key", "-out", "ca.crt",
        cwd=directory,
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "broker.key", "-out", "broker.csr",
        cwd=directory,
    )  # fmt: skip
    # Clients verify the host name, so the certificate names what they connect to.
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "broker.crt",
        cwd=directory,
    )  # fmt: skip
    openssl(
        "pkcs12", "-export", "-in", "broker.crt", "-inkey", "broker.key",
        "-certfile", "ca.crt", "-name", "broker", "-out", "broker.p12",
        "-passout", f"pass:{keystore_password}",
        cwd=directory,
    )  # fmt: skip


def cluster_id() -> str:
    # The form `kafka-storage random-uuid` prints, without starting another JVM.
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def server_properties(directory: Path, port: int, internal: int, controller: int, pw: str) -> str:
    # Clients get SASL_SSL only. The broker's own connections (inter-broker and the
    # KRaft controller) stay PLAINTEXT on loopback: they are not what is under test.
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=SASL_SSL://localhost:{port},INTERNAL://127.0.0.1:{internal}
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location={directory / "broker.p12"}
ssl.keystore.password={pw}
ssl.key.password={pw}
log.dirs={directory / "data"}
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
"""


LOG4J = """\
status = warn
name = tollmon-sasl-test
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
"""


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    if not any(LIBS.glob("kafka_*.jar")):
        pytest.skip("Kafka jars not fetched yet (tools/stack.sh up fetches them)")
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes the test CA; install openssl")
    directory = tmp_path_factory.mktemp("sasl-broker")
    keystore_password = uuid.uuid4().hex
    make_certificates(directory, keystore_password)
    port, internal, controller = free_port(), free_port(), free_port()
    config = directory / "server.properties"
    config.write_text(server_properties(directory, port, internal, controller, keystore_password))
    (directory / "log4j2.properties").write_text(LOG4J)
    java = [
        "java",
        "-Xmx384m",
        "-XX:TieredStopAtLevel=1",
        f"-Dlog4j2.configurationFile={directory / 'log4j2.properties'}",
        "-cp",
        f"{LIBS}/*",
    ]
    subprocess.run(
        [
            *java,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id(),
            "-c",
            str(config),
            "--add-scram",
            f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    log_path = directory / "broker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*java, "kafka.Kafka", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    broker = SecureBroker(f"localhost:{port}", directory / "ca.crt", log_path)
    try:

        def started() -> bool:
            assert process.poll() is None, f"broker exited:\n{log_tail(log_path)}"
            return "Kafka Server started" in log_path.read_text(errors="replace")

        wait_until(started, 60, "the SASL_SSL broker to start")
        yield broker
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start_worker(
    broker: SecureBroker, directory: Path, password: str, prefix: str = "sasl."
) -> WorkerProcess:
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / f"worker-{port}.log"
    env = {
        **os.environ,
        **broker.env(password),
        "TOLLMON_TOPIC_PREFIX": prefix,
        "TOLLMON_WEB_PORT": str(port),
        "TOLLMON_DATA_DIR": str(directory / "data"),
        "TOLLMON_NETWORK_FILE": str(REPO / "config" / "network.yaml"),
        # No Alertmanager beside this broker; pushes would only fail and retry.
        "TOLLMON_ALERTMANAGER_URL": "",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tollmon", "worker"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return WorkerProcess(prefix, port, log_path, process)


def test_worker_reads_events_over_sasl_ssl(secure_broker: SecureBroker, tmp_path: Path) -> None:
    options = secure_broker.security().kafka_python_options()
    prefix = f"s{uuid.uuid4().hex[:8]}."
    admin = KafkaAdminClient(bootstrap_servers=secure_broker.bootstrap, **options)
    try:
        admin.create_topics(
            [
                NewTopic(prefix + t, 4, 1)
                for t in (*INPUT_TOPICS, "toll.deadletter", "toll.alerts", "toll.queue.estimates")
            ]
        )
    finally:
        admin.close()
    worker = start_worker(secure_broker, tmp_path, PASSWORD, prefix)
    try:

        def ready() -> bool:
            assert worker.process.poll() is None, f"worker exited:\n{worker.log_tail()}"
            return httpx.get(worker.metrics_url, timeout=2).status_code == 200

        wait_until(ready, 60, "the worker's /metrics endpoint")

        network = load_network(REPO / "config" / "network.yaml")
        now_ms = int(time.time() * 1000)
        events = list(
            generate(network, now_ms - 60_000, 30, TrafficProfile(1200), seed=3, plazas=["URC-E01"])
        )
        producer = KafkaProducer(bootstrap_servers=secure_broker.bootstrap, **options)
        for event in events:
            producer.send(
                topic_for(event, worker.prefix), key=event.plaza_id.encode(), value=encode(event)
            )
        producer.flush()
        producer.close()

        wait_until(
            lambda: worker.total("tollmon_events_total") == len(events),
            60,
            f"{len(events)} events counted over SASL_SSL",
            state=lambda: worker.total("tollmon_events_total"),
        )
        # The password never reaches the worker's log, whatever Faust prints at start.
        assert PASSWORD not in worker.log_path.read_text(errors="replace")
    finally:
        worker.stop()


def test_wrong_password_is_refused(secure_broker: SecureBroker, tmp_path: Path) -> None:
    wrong = "not-the-password"
    worker = start_worker(secure_broker, tmp_path, wrong)
    refusal = "SaslAuthenticationFailed"
    try:

        def refused() -> bool:
            return refusal in worker.log_path.read_text(errors="replace")

        wait_until(refused, 45, f"{refusal} in the worker's log", state=worker.log_tail)
        log = worker.log_path.read_text(errors="replace")
        assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in log
        assert wrong not in log
        # The broker, not the client, made the decision.
        assert "Failed authentication" in secure_broker.log_path.read_text(errors="replace")
    finally:
        worker.stop()
