"""A worker against a SASL_SSL (SCRAM-SHA-512) broker: it reads events, a wrong password is refused.

The shared stack's broker is PLAINTEXT, so this module runs its own single-node
KRaft broker from the same jars, on free ports in a temporary directory, with a
throw-away CA made by `openssl`. The SCRAM user is written into the metadata log at
format time (`--add-scram`), as KRaft has no ZooKeeper to hold credentials.
"""

from __future__ import annotations

import os
import re
import shutil
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
from tests.integration.private_broker import PrivateBroker, free_port, skip_without_kafka_jars
from tollmon.events import encode
from tollmon.kafka_security import KafkaSecurity
from tollmon.network import load_network
from tollmon.publish import topic_for
from tollmon.settings import INPUT_TOPICS
from tollmon.simulate import TrafficProfile, generate

pytestmark = pytest.mark.integration

USER = "tollmon"
PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]


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


def sasl_properties(directory: Path, keystore_password: str) -> str:
    # Clients get SASL_SSL only; SCRAM credentials live in the KRaft metadata log.
    return f"""\
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\\
org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location={directory / "broker.p12"}
ssl.keystore.password={keystore_password}
ssl.key.password={keystore_password}
"""


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    skip_without_kafka_jars()
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes the test CA; install openssl")
    directory = tmp_path_factory.mktemp("sasl-broker")
    keystore_password = uuid.uuid4().hex
    make_certificates(directory, keystore_password)
    broker = PrivateBroker(directory, "SASL_SSL", sasl_properties(directory, keystore_password))
    # KRaft has no ZooKeeper to hold credentials: the user is written at format time.
    broker.format("--add-scram", f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]")
    try:
        broker.start()
        yield SecureBroker(broker.bootstrap, directory / "ca.crt", broker.log_path)
    finally:
        broker.stop()


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


def tollmon(*args: str, env: dict[str, str]) -> str:
    """Run a `tollmon` command; its stderr, where it reports what it did."""
    done = subprocess.run(
        [sys.executable, "-m", "tollmon", *args],
        check=False,  # the assertion below shows stderr
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def reported_count(output: str, what: str) -> int:
    match = re.search(rf"(\d+) {what}", output)
    assert match is not None, output
    return int(match.group(1))


def test_simulate_record_and_replay_speak_sasl_ssl(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    source, copy = f"s{uuid.uuid4().hex[:8]}.", f"r{uuid.uuid4().hex[:8]}."
    admin = KafkaAdminClient(
        bootstrap_servers=secure_broker.bootstrap, **secure_broker.security().kafka_python_options()
    )
    try:
        admin.create_topics([NewTopic(p + t, 4, 1) for p in (source, copy) for t in INPUT_TOPICS])
    finally:
        admin.close()
    env = secure_broker.env()
    since_ms = int(time.time() * 1000) - 1000

    simulated = tollmon(
        "simulate", "--duration", "20", "--rate", "1200", "--plaza", "URC-E01", "--speed", "0",
        "--topic-prefix", source,
        env=env,
    )  # fmt: skip
    sent = reported_count(simulated, "events")
    assert sent > 0

    def record(prefix: str, out: Path) -> int:
        topics = [arg for t in INPUT_TOPICS for arg in ("--topics", prefix + t)]
        until = str(int(time.time() * 1000) + 1000)
        output = tollmon("record", *topics, "--from", str(since_ms), "--to", until,
                         "--out", str(out), env=env)  # fmt: skip
        return reported_count(output, "messages")

    recording = tmp_path / "recorded.jsonl"
    assert record(source, recording) == sent
    replayed = tollmon("replay", str(recording), "--prefix", copy, "--fast", env=env)
    assert reported_count(replayed, "events") == sent
    assert record(copy, tmp_path / "replayed.jsonl") == sent
