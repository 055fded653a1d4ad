"""Kafka security settings: what each client gets, and that the password stays hidden."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from pydantic import SecretStr, ValidationError

import streams.agents
from streams.app import create_app
from streams.inputs import InputConsumer
from tollmon.kafka_security import KafkaSecurity
from tollmon.network import Network
from tollmon.settings import Settings


def test_plaintext_by_default_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SECURITY_PROTOCOL", "USERNAME", "PASSWORD", "PASSWORD_FILE", "CA_FILE"):
        monkeypatch.delenv(f"TOLLMON_KAFKA_{name}", raising=False)
    security = KafkaSecurity()
    assert security.faust_credentials() is None
    assert security.kafka_python_options() == {"security_protocol": "PLAINTEXT"}
    assert security.librdkafka_config() == {"security.protocol": "plaintext"}


def test_sasl_ssl_from_the_environment_hides_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOLLMON_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TOLLMON_KAFKA_USERNAME", "tollmon")
    monkeypatch.setenv("TOLLMON_KAFKA_PASSWORD", "hunter2")
    security = KafkaSecurity()
    assert "hunter2" not in repr(security)
    assert "hunter2" not in str(security)
    credentials = security.faust_credentials()
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL"
    assert "hunter2" not in repr(credentials)
    options = security.kafka_python_options()
    assert options["sasl_plain_password"] == "hunter2"
    assert options["ssl_context"].check_hostname
    assert security.librdkafka_config()["sasl.password"] == "hunter2"


def test_password_read_from_a_file_without_its_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    security = KafkaSecurity(security_protocol="SASL_SSL", username="u", password_file=secret)
    assert security.secret() == "from-a-file"


@pytest.mark.parametrize(
    "fields",
    [
        {"security_protocol": "SASL_SSL", "username": "u"},
        {"security_protocol": "SASL_SSL", "password": "p"},
        {"password": "p", "password_file": "x"},
        {"security_protocol": "SSL", "cert_file": "c.pem"},
        {"security_protocol": "SASL_PLAINTEXT"},
    ],
)
def test_incomplete_or_unsafe_settings_are_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        KafkaSecurity(**fields)  # type: ignore[arg-type]


SASL_SSL = KafkaSecurity(
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-256",
    username="tollmon",
    password=SecretStr("hunter2"),
)


@pytest.mark.parametrize(
    "client",
    [KafkaProducer, KafkaConsumer, KafkaAdminClient],
    ids=["producer (simulate)", "consumer (record)", "admin"],
)
@pytest.mark.parametrize(
    "security",
    [
        KafkaSecurity(security_protocol="PLAINTEXT"),
        KafkaSecurity(security_protocol="SSL"),
        SASL_SSL,
    ],
    ids=["plaintext", "ssl", "sasl_ssl"],
)
def test_kafka_python_options_are_settings_each_client_knows(
    client: type[Any], security: KafkaSecurity
) -> None:
    # kafka-python rejects unknown keyword arguments only once it connects, so the
    # names are checked against the configuration the client documents.
    assert set(security.kafka_python_options()) <= set(client.DEFAULT_CONFIG)


def test_kafka_python_options_carry_protocol_mechanism_and_credentials() -> None:
    options = SASL_SSL.kafka_python_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "tollmon",
        "hunter2",
    )
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_librdkafka_config_maps_files_and_credentials_to_its_keys(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key"))
    security = KafkaSecurity(
        security_protocol="SASL_SSL",
        username="tollmon",
        password=SecretStr("hunter2"),
        ca_file=ca,
        cert_file=cert,
        key_file=key,
    )
    assert security.librdkafka_config() == {
        "security.protocol": "sasl_ssl",
        "ssl.ca.location": str(ca),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "tollmon",
        "sasl.password": "hunter2",
    }


@pytest.mark.parametrize(
    "security",
    [
        KafkaSecurity(security_protocol="PLAINTEXT"),
        KafkaSecurity(security_protocol="SSL"),
        SASL_SSL,
    ],
    ids=["plaintext", "ssl", "sasl_ssl"],
)
def test_librdkafka_accepts_the_config_replay_produces_with(security: KafkaSecurity) -> None:
    # librdkafka validates every property when the client is made, before connecting.
    producer = Producer({"bootstrap.servers": "localhost:1", **security.librdkafka_config()})
    assert producer.flush(0) == 0


def test_a_worker_builds_the_options_of_its_own_clients_once(
    monkeypatch: pytest.MonkeyPatch, network: Network
) -> None:
    """One TLS context for the changelog producer, the log reader, the input consumer
    and the admin client that creates the topics when the input consumer starts."""
    built: list[dict[str, Any]] = []
    build = KafkaSecurity.kafka_python_options

    def counted(security: KafkaSecurity) -> dict[str, Any]:
        built.append(build(security))
        return built[-1]

    admin_options: list[Mapping[str, Any]] = []

    async def ensure_topics(_: str, options: Mapping[str, Any], __: object) -> None:
        admin_options.append(options)

    monkeypatch.setattr(KafkaSecurity, "kafka_python_options", counted)
    monkeypatch.setattr(streams.agents, "ensure_topics", ensure_topics)
    app = create_app(Settings(), network)
    # Faust keeps the services it starts with the app in `_extra_services`.
    [consumer] = [s for s in app._extra_services if isinstance(s, InputConsumer)]
    asyncio.run(consumer._prepare())

    assert len(built) == 1
    assert admin_options == built
    assert admin_options[0] is built[0]
